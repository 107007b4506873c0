"""systemd/feedbackd.service: verified by systemd-analyze, scored by its offline security review, and
its MemoryDenyWriteExecute= checked against the real daemon with the kernel's own W^X switch."""

from __future__ import annotations

import configparser
import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mails
from conftest import REPO, Env
from feedbackd.config import ImapSettings, SmtpSettings

UNIT = REPO / "systemd" / "feedbackd.service"
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze") or ("/usr/bin/systemd-analyze"
                                               if os.access("/usr/bin/systemd-analyze", os.X_OK) else None)
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")


def service() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive in units
    unit.read(UNIT)
    return unit["Service"]


def installed_copy(tmp: Path) -> Path:
    """The unit with ExecStart= pointing at this checkout's feedbackd (verify checks it is executable)."""
    command = Path(sys.executable).parent / "feedbackd"
    assert os.access(command, os.X_OK), f"{command}: run scripts/bootstrap"
    text = UNIT.read_text(encoding="utf-8")
    assert "ExecStart=/opt/feedbackd/.venv/bin/feedbackd " in text
    copy = tmp / "feedbackd.service"
    copy.write_text(text.replace("ExecStart=/opt/feedbackd/.venv/bin/feedbackd ", f"ExecStart={command} "),
                    encoding="utf-8")
    return copy


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    assert ANALYZE is not None
    result = subprocess.run([ANALYZE, "verify", str(installed_copy(tmp_path))], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


@needs_analyze
def test_the_offline_security_review_scores_the_unit_at_most_2(tmp_path: Path) -> None:
    assert ANALYZE is not None
    result = subprocess.run([ANALYZE, "security", "--offline=true", str(installed_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    found = re.search(r"Overall exposure level for feedbackd\.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    score = float(found[1])
    assert score <= MAX_EXPOSURE, result.stdout
    # What is left open is what a mail daemon needs: its network, and nothing else of weight.
    open_items = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("✗")]
    assert all(item.split("=")[0] in {"RootDirectory", "RestrictAddressFamilies", "PrivateNetwork", "DeviceAllow",
                                      "IPAddressDeny"} for item in open_items), open_items


def test_the_unit_is_notify_with_a_watchdog_and_least_privilege() -> None:
    s = service()
    assert (s["Type"], s["NotifyAccess"], s["Restart"]) == ("notify", "main", "on-failure")
    watchdog = int(s["WatchdogSec"])
    slowest = max(ImapSettings.model_fields["timeout"].default, SmtpSettings.model_fields["timeout"].default)
    assert watchdog >= 2 * slowest.total_seconds()  # one slow IMAP step never trips it
    assert s["User"] == "feedbackd"
    assert s["StateDirectory"] == s["ConfigurationDirectory"] == "feedbackd"
    assert s["UMask"] == "0077" and s["CapabilityBoundingSet"] == ""
    assert s["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "MemoryDenyWriteExecute",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
                "RestrictNamespaces", "LockPersonality", "RestrictRealtime", "RestrictSUIDSGID", "ProtectClock",
                "ProtectHostname"):
        assert s[key] == "yes", key
    assert s["ProtectSystem"] == "strict" and s["SystemCallArchitectures"] == "native"
    assert "IPAddressDeny" not in s  # the daemon talks to IMAP, SMTP and database servers
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"  # SIGHUP reloads (tests/test_signals.py)


# -- MemoryDenyWriteExecute=: the daemon under the kernel's W^X (prctl PR_SET_MDWE) ---------------

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def _deny_write_execute() -> None:
    """In the child before exec: no mapping may become writable and executable (inherited by exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def _mdwe_available() -> str | None:
    probe = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"
    try:
        result = subprocess.run([sys.executable, "-c", probe], preexec_fn=_deny_write_execute,
                                capture_output=True, text=True, timeout=30)
    except subprocess.SubprocessError as exc:
        return f"this kernel has no PR_SET_MDWE (Linux 6.3+): {exc}"
    if "PermissionError" not in result.stderr:
        return "PR_SET_MDWE did not refuse a writable and executable mapping here"
    return None


def test_the_daemon_runs_without_writable_executable_memory(env: Env) -> None:
    """What MemoryDenyWriteExecute=yes forbids, the kernel forbids here too (PR_MDWE_REFUSE_EXEC_GAIN: no
    W+X mapping, no mprotect adding PROT_EXEC): a run over HTML and attachment mail through Dovecot and
    SMTP, the learned routing's scikit-learn/numpy, lxml and psycopg all work without it."""
    reason = _mdwe_available()
    if reason is not None:
        pytest.skip(reason)
    env.mailbox.append(mails.html_only(), mails.with_attachment(), mails.plain())
    # One interpreter (starting two costs seconds): the learned routing's stack, then a real run --once.
    code = ("import sys, lxml.html, psycopg, numpy, sklearn.linear_model, sklearn.feature_extraction.text as t\n"
            "v = t.TfidfVectorizer(analyzer='char_wb', ngram_range=(1, 2)).fit_transform(['路灯', '噪音', 'a', 'b'])\n"
            "print(sklearn.linear_model.LogisticRegression().fit(v, [0, 1, 0, 1]).predict(v))\n"
            "from feedbackd.cli import main\n"
            "sys.exit(main(['run', '--once']))\n")
    run = subprocess.run([sys.executable, "-c", code], preexec_fn=_deny_write_execute,
                         env={**os.environ, "FEEDBACKD_CONFIG": str(env.config_path)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("[0 1 0 1]\n"), run.stdout
    assert "processed 3 message(s)" in run.stdout and "sent 3," in run.stdout, run.stdout
