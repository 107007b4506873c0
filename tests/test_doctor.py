"""``feedbackd doctor`` against the real Dovecot and SMTP sink: all in order, then one broken part at a time."""

from __future__ import annotations

import io
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import mails
from conftest import REPO, Env, run_once
from feedbackd import doctor
from feedbackd.devstack import Certificate, Dovecot, SmtpSink, local_config
from feedbackd.devstack import write_config as write_sections

KNOWN_DAY = date(2026, 6, 1)  # the holidays package knows China's 2026 arrangement
UNKNOWN_DAY = date(2031, 1, 1)  # and not 2031's


def configure(env: Env, *, rules: Path = REPO / "rules", templates: Path = REPO / "templates",
              **more: dict[str, Any]) -> str:
    sections: dict[str, dict[str, Any]] = {"imap": {"timeout": "10s"}, "smtp": {"timeout": "10s"},
                                           "calendar": {"country": "CN"}}
    for name, values in more.items():
        sections[name] = {**sections.get(name, {}), **values}
    path = write_sections(env.config_path, local_config(
        imap=env.mailbox.server, smtp=env.sink, db_url=env.db_url, rules=rules, templates=templates,
        data=env.tmp / "data", user=env.mailbox.user, more=sections))
    path.chmod(0o600)
    return str(path)


def checks(config: str, today: date = KNOWN_DAY) -> tuple[int, dict[str, tuple[str, str]], str]:
    out = io.StringIO()
    status = doctor.command(config, out, today=today)
    lines = out.getvalue().splitlines()
    found = {line.split()[1]: (line.split()[0], line) for line in lines[:-1]}
    return status, found, lines[-1]


def test_a_working_set_up_is_all_ok_one_line_per_part(env: Env) -> None:
    config = configure(env)
    env.mailbox.append(mails.with_attachment())
    run_once(env)  # the database and the data directory exist, made private by feedbackd
    status, found, last = checks(config)
    assert list(found) == list(doctor.PARTS)
    assert {part: s for part, (s, _) in found.items()} == dict.fromkeys(doctor.PARTS, "ok"), found
    assert status == 0 and last.startswith("doctor: everything checked is in order")
    imap_line = found["imap"][1]
    assert imap_line.startswith(f"ok    imap        127.0.0.1:{env.mailbox.server.port} ")
    assert "login ok" in imap_line and "IDLE supported" in imap_line
    assert "EHLO ok" in found["smtp"][1]
    assert "(the newest)" in found["database"][1]
    assert "2026" in found["calendar"][1]

    out = io.StringIO()
    assert doctor.command(config, out, as_json=True, today=KNOWN_DAY) == 0
    rows = json.loads(out.getvalue())
    assert [r["part"] for r in rows] == list(doctor.PARTS) and {r["status"] for r in rows} == {"ok"}


def test_wrong_imap_password_and_smtp_down_fail_and_name_the_parts(env: Env) -> None:
    # A Dovecot of its own: a failed login makes Dovecot slow down every later login from 127.0.0.1,
    # which would slow the rest of the suite on the shared one.
    with Dovecot(users={"feedback": "secret"}) as private:
        config = configure(env, imap={"port": private.port, "username": "feedback", "password": "N0t-the-Passw0rd"})
        env.sink.stop()  # nothing listens on the SMTP port any more
        out = io.StringIO()
        status = doctor.command(config, out, today=KNOWN_DAY)
    lines = out.getvalue().splitlines()
    imap = next(line for line in lines if line.split()[1] == "imap")
    smtp = next(line for line in lines if line.split()[1] == "smtp")
    assert imap.startswith("FAIL") and "login" in imap and "failed" in imap
    assert smtp.startswith("FAIL") and f"127.0.0.1:{env.sink.port}" in smtp
    assert status == 1 and lines[-1] == "doctor: 2 check(s) failed: imap, smtp"
    assert "N0t-the-Passw0rd" not in out.getvalue()  # the password is never shown


def test_bad_rules_fail_with_their_count_and_templates_are_skipped(env: Env, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    with (rules / "rules.yaml").open("a", encoding="utf-8") as f:
        f.write("\n  - name: [unclosed\n")
    status, found, last = checks(configure(env, rules=rules))
    assert status == 1 and last == "doctor: 1 check(s) failed: rules"
    state, line = found["rules"]
    assert state == "FAIL" and "problem(s)" in line and "feedbackd rules check" in line
    assert found["templates"][0] == "skip"


def test_a_template_missing_in_one_language_fails(env: Env, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    (templates / "en" / "acknowledgement-opinion.subject.j2").unlink()
    status, found, last = checks(configure(env, templates=templates))
    assert status == 1 and last == "doctor: 1 check(s) failed: templates"
    state, line = found["templates"]
    assert state == "FAIL" and "en/acknowledgement-opinion" in line


def test_a_year_without_holiday_data_warns_and_does_not_fail(env: Env) -> None:
    status, found, last = checks(configure(env), today=UNKNOWN_DAY)
    state, line = found["calendar"]
    assert state == "WARN" and "2031" in line and "weekends only" in line
    assert status == 0 and "1 warning(s): calendar" in last


def test_a_group_readable_database_fails(env: Env) -> None:
    config = configure(env)
    run_once(env)
    database = env.tmp / "feedbackd.db"
    database.chmod(0o640)
    status, found, last = checks(config)
    state, line = found["permissions"]
    assert state == "FAIL" and str(database) in line and "0o640" in line
    assert status == 1 and last == "doctor: 1 check(s) failed: permissions"


def test_a_bad_configuration_names_the_key_and_skips_the_rest(env: Env) -> None:
    config = configure(env, cases={"digits": 99})
    result = env.cli("doctor", env={"FEEDBACKD_CONFIG": config})  # the command itself: its lines and exit status
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL  config ") and "'cases.digits'" in lines[0]
    assert [line.split()[:2] for line in lines[1:-1]] == [["skip", part] for part in doctor.PARTS[1:]]
    assert lines[-1] == "doctor: 1 check(s) failed: config"


def test_an_untrusted_smtp_certificate_is_named(env: Env, tmp_path: Path) -> None:
    certificate = Certificate.make(tmp_path / "tls")
    with SmtpSink(tls=certificate) as sink:
        smtp = {"port": sink.port, "security": "starttls"}
        status, found, _ = checks(configure(env, smtp=smtp))  # the system's CAs do not know ours
        assert status == 1 and found["smtp"][0] == "FAIL"
        assert "TLS certificate problem" in found["smtp"][1] and "smtp.ca_file" in found["smtp"][1]
        status, found, _ = checks(configure(env, smtp={**smtp, "ca_file": str(certificate.ca)}))
        assert status == 0 and found["smtp"][0] == "ok" and "STARTTLS ok (TLSv1." in found["smtp"][1]
