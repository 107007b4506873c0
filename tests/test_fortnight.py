"""A simulated fortnight of the timed jobs, end to end: ``feedbackd jobs run --at T`` (the command, a new process
each time) through the real Dovecot and SMTP sink, with the business calendar of Asia/Shanghai.

The clock moves only by ``--at``; cases are opened by mail with intake's clock set to the simulated time (so
their deadlines come from the product's own calendar wiring).  Every tick states what it must send: nothing
early, each notice once at its moment, nothing twice after a "restart" (a new process at the same time).

- National Day 2026 (the holidays package's data): 1-7 October off, Saturday 10 October an adjusted working
  day (调休), Sunday 11 October off; reminders, both escalation levels, progress notes, digests and two
  weekly reports.
- February 2027 (beyond the package's data): weekends only plus the overrides file (Friday 5 February off,
  Sunday 7 February worked).
- Two processes on one PostgreSQL database running the same ``jobs run --at`` at once.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import Env, Mailbox, release_together
from feedbackd.devstack import SmtpSink
from feedbackd.stages import casework
from test_intake import case_json
from test_jobs_notices import ADMIN, CITIZEN, DESK, LEAD, SECRET
from test_jobs_notices import open_case as open_case_now
from test_staff_loop import parsed, run_once, to

ZONE = ZoneInfo("Asia/Shanghai")
OFFICIAL = "xinfang@gov.cn"  # the rules raise government mail to priority high (4h first response)
OVERRIDES = "holidays: [2027-02-05]\nworkdays: [2027-02-07]\n"
Expected = dict[str, int]
# what a tick sends, by the counts the command prints ("report" = weekly report mails)
WATCHED = {"reminders", "escalations-1", "escalations-2", "progress", "digests", "closed"}


def local(text: str) -> datetime:
    """A wall-clock time in Shanghai (the tests write times as the desk reads them)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


def calendar_env(env: Env) -> Env:
    overrides = env.tmp / "calendar.yaml"
    overrides.write_text(OVERRIDES, encoding="utf-8")
    env.reconfigure(extra=(
        f'[staff]\nsecret = "{SECRET}"\n\n'
        '[calendar]\ntimezone = "Asia/Shanghai"\nworking_hours = "09:00-12:00,13:30-18:00"\ncountry = "CN"\n'
        f'overrides = "{overrides}"\n\n'
        f'[jobs]\nadmins = ["{ADMIN}"]\ndigest_at = "08:30"\nreport_weekday = "mon"\n'
        'escalate_after = "4h"\nprogress_every = "3d"\nreminder_at = 0.75\n'))
    return env


@pytest.fixture
def fortnight_env(env: Env) -> Env:
    return calendar_env(env)


def open_case_at(env: Env, monkeypatch: pytest.MonkeyPatch, when: str, **mail: object) -> dict[str, Any]:
    """Open a case by mail as if intake ran at ``when`` (local time); returns ``cases show --json``."""
    instant = local(when)
    with monkeypatch.context() as patch:
        patch.setattr(casework, "utcnow", lambda: instant.astimezone(UTC))
        row = open_case_now(env, date=instant, **mail)
    shown = case_json(env, str(row["id"]))
    assert datetime.fromisoformat(shown["created_at"]) == instant
    return shown


def parse_ran(stdout: str) -> dict[str, dict[str, int]]:
    """``jobs run`` output (``name: key n, key n``) → {job: counts}; the "nothing to run" line → {}."""
    ran: dict[str, dict[str, int]] = {}
    for line in stdout.splitlines():
        if line.startswith("nothing to run"):
            continue
        name, _, rest = line.partition(": ")
        pairs = [part.rsplit(" ", 1) for part in rest.split(", ")] if rest != "done" else []
        ran[name] = {key: int(value) for key, value in pairs}
    return ran


def sent(ran: dict[str, dict[str, int]]) -> Expected:
    """What went out in a pass: the non-zero notice counts, the weekly report as "report"."""
    found = {key: n for counts in ran.values() for key, n in counts.items() if key in WATCHED and n}
    if ran.get("report", {}).get("mailed"):
        found["report"] = ran["report"]["mailed"]
    return found


def tick(env: Env, when: str) -> dict[str, dict[str, int]]:
    """``feedbackd jobs run --at WHEN`` in a process of its own (``when`` without offset: the [calendar] zone)."""
    result = env.cli("jobs", "run", "--at", when)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "failed" not in result.stdout, result.stderr
    return parse_ran(result.stdout)


def play(env: Env, script: Iterable[tuple[str, Expected]]) -> None:
    for when, expected in script:
        assert sent(tick(env, when)) == expected, when


def words(env: Env, address: str, word: str) -> list[str]:
    return [str(parsed(m)["Subject"]) for m in to(env, address) if word in str(parsed(m)["Subject"])]


def timed_events(env: Env, case_id: int) -> list[tuple[str, Any, datetime]]:
    """The case's reminder, escalation and progress events: (kind, level or period, when)."""
    shown = case_json(env, str(case_id))
    return [(e["kind"], e["detail"].get("level", e["detail"].get("period")), datetime.fromisoformat(e["at"]))
            for e in shown["events"] if e["kind"] in ("reminder", "escalation", "still-handling")
            and e["actor"] == "system"]


DIGEST = {"digests": 2}  # desk and desk2: the general department's staff, no assignee
DIGEST_DAYS = ["2026-09-30", "2026-10-01", "2026-10-03", "2026-10-05", "2026-10-06", "2026-10-08", "2026-10-09",
               "2026-10-10", "2026-10-11", "2026-10-12"]  # the days a pass ran after 08:30


def test_a_fortnight_across_national_day_2026(fortnight_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env = fortnight_env
    # A: normal priority (1d first response, 7d resolution), opened the afternoon before the holiday.
    a = open_case_at(env, monkeypatch, "2026-09-30T16:00")
    assert a["priority"] == "normal" and a["department"] == "general"
    # one working day: the holiday (1-7 Oct, with its weekend) does not count → Thursday 8 October
    assert datetime.fromisoformat(a["first_response_due"]) == local("2026-10-08T16:00")
    # seven working days: 8, 9, 10 (the adjusted Saturday), 12, 13, 14, 15 October
    assert datetime.fromisoformat(a["resolution_due"]) == local("2026-10-15T16:00")
    play(env, [
        # the day's first pass after 08:30 carries its digest, and the week's first after Monday 08:30 its report
        ("2026-09-30T16:05", {**DIGEST, "report": 1}),  # the week 21-27 Sep, caught up on Wednesday
        ("2026-10-01T08:30", DIGEST),  # digests go on holidays too (staff on duty read them)
        ("2026-10-01T16:05", {}),  # a calendar day on: in plain time A would be overdue; a holiday is no working time
        ("2026-10-03T15:59", DIGEST),
        ("2026-10-03T16:01", {"progress": 1}),  # three calendar days without news: the citizen hears
        ("2026-10-05T08:30", {**DIGEST, "report": 1}),  # Monday (a holiday): the week 28 Sep - 4 Oct
        ("2026-10-06T16:01", {**DIGEST, "progress": 1}),
        ("2026-10-08T14:07", DIGEST),  # 1h53m of working time left: more than a quarter of 7.5h
        ("2026-10-08T14:08", {"reminders": 1}),  # desk and desk2 (counted per case)
    ])
    # A daemon restart: a new process at the same time (and later in the same minute) runs nothing again;
    # the next minute's pass runs its jobs and finds every notice sent.
    for again in ("2026-10-08T14:08", "2026-10-08T14:08:30"):
        assert tick(env, again) == {}
    play(env, [
        ("2026-10-08T14:09", {}),
        ("2026-10-08T15:59", {}),
        ("2026-10-08T16:00", {"escalations-1": 1}),  # due: the lead
        ("2026-10-09T10:59", DIGEST),  # 16:00-18:00 and 09:00-10:59: not yet 4 working hours
        ("2026-10-09T11:00", {"escalations-2": 1}),  # the admins
        ("2026-10-09T16:01", {"progress": 1}),
    ])
    # B: high priority (4h first response), opened on the adjusted working Saturday.
    b = open_case_at(env, monkeypatch, "2026-10-10T15:00", sender=OFFICIAL, name="街道办", subject="井盖松动")
    assert b["priority"] == "high" and b["department"] == "general"
    # 15:00-18:00 on Saturday (worked), Sunday off, 09:00-10:00 on Monday
    assert datetime.fromisoformat(b["first_response_due"]) == local("2026-10-12T10:00")
    play(env, [
        ("2026-10-10T17:59", DIGEST),  # 1h01m left
        ("2026-10-10T18:00", {"reminders": 1}),  # one working hour left (Monday 09:00-10:00)
        ("2026-10-11T20:00", DIGEST),  # Sunday: no working time runs down
        ("2026-10-12T09:59", {**DIGEST, "report": 1}),  # the week 5-11 Oct
        ("2026-10-12T10:00", {"escalations-1": 1}),
        ("2026-10-12T15:29", {}),  # 10:00-12:00, 13:30-15:29
        ("2026-10-12T15:30", {"escalations-2": 1}),
        ("2026-10-12T16:01", {"progress": 1}),  # A's fourth period (B's first ends on Tuesday)
    ])
    run_once(env)  # deliver the outbox to the sink

    for staff in DESK:
        reminders = words(env, staff, "期限提醒")
        assert len(reminders) == 2 and {a["id"], b["id"]} == {_number(s) for s in reminders}
        days = [s.split(" ")[0] for s in words(env, staff, "待办案件")]
        assert sorted(days) == DIGEST_DAYS  # one a day, each day a pass ran
    escalated = words(env, LEAD, "逾期升级")
    assert len(escalated) == 2 and {_number(s) for s in escalated} == {a["id"], b["id"]}
    assert all("首次答复" in s for s in escalated)
    second = words(env, ADMIN, "二次升级")
    assert len(second) == 2 and {_number(s) for s in second} == {a["id"], b["id"]}
    reports = words(env, ADMIN, "市民反馈周报")
    assert sorted(reports) == ["市民反馈周报 2026-09-21 至 2026-09-27：新案件 0 件",
                               "市民反馈周报 2026-09-28 至 2026-10-04：新案件 1 件",
                               "市民反馈周报 2026-10-05 至 2026-10-11：新案件 1 件"]
    assert len(words(env, CITIZEN, "仍在办理中")) == 4 and not words(env, OFFICIAL, "仍在办理中")
    assert not words(env, LEAD, "二次升级") and not words(env, ADMIN, "期限提醒")

    assert timed_events(env, a["id"]) == [
        ("still-handling", 1, local("2026-10-03T16:01")), ("still-handling", 2, local("2026-10-06T16:01")),
        ("reminder", None, local("2026-10-08T14:08")), ("escalation", 1, local("2026-10-08T16:00")),
        ("escalation", 2, local("2026-10-09T11:00")), ("still-handling", 3, local("2026-10-09T16:01")),
        ("still-handling", 4, local("2026-10-12T16:01"))]
    assert timed_events(env, b["id"]) == [
        ("reminder", None, local("2026-10-10T18:00")), ("escalation", 1, local("2026-10-12T10:00")),
        ("escalation", 2, local("2026-10-12T15:30"))]


def _number(subject: str) -> str:
    """The case number in a subject's token: "[FB-000001] …" → "FB-000001"."""
    return subject.split("]")[0].lstrip("[").split(".")[0]


def test_a_year_beyond_the_package_counts_weekends_and_the_overrides_file(fortnight_env: Env,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    env = fortnight_env
    c = open_case_at(env, monkeypatch, "2027-02-04T16:00", sender=OFFICIAL, name="街道办", subject="井盖松动")
    # Thursday 16:00-18:00; Friday 5 Feb off and Sunday 7 Feb worked (the overrides file); Saturday off: 09:00-11:00
    assert datetime.fromisoformat(c["first_response_due"]) == local("2027-02-07T11:00")
    first = env.cli("jobs", "run", "--at", "2027-02-05T11:00")  # due now, were Friday a working day
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("the holidays package has no CN holiday arrangement for 2027") == 1
    assert "2027 counts weekends only plus 1 holidays and 1 working days from" in first.stderr
    assert sent(parse_ran(first.stdout)) == {**DIGEST, "report": 1}  # the week 25-31 Jan, caught up on Friday
    play(env, [
        ("2027-02-06T17:00", DIGEST),  # Saturday
        ("2027-02-07T09:59", DIGEST),  # the worked Sunday: 1h01m left
        ("2027-02-07T10:00", {"reminders": 1}),
        ("2027-02-07T11:00", {"escalations-1": 1}),
        ("2027-02-07T16:01", {"progress": 1}),  # three calendar days since Thursday 16:00
        ("2027-02-07T16:29", {}),  # 11:00-12:00, 13:30-16:29
        ("2027-02-07T16:30", {"escalations-2": 1}),
        ("2027-02-08T08:30", {**DIGEST, "report": 1}),  # the week 1-7 Feb
    ])
    assert tick(env, "2027-02-08T08:30") == {}  # restarted at the same time: nothing again
    run_once(env)

    for staff in DESK:
        assert [_number(s) for s in words(env, staff, "期限提醒")] == [c["id"]]
        assert sorted(s.split(" ")[0] for s in words(env, staff, "待办案件")) == [
            "2027-02-05", "2027-02-06", "2027-02-07", "2027-02-08"]
    assert [_number(s) for s in words(env, LEAD, "逾期升级")] == [c["id"]]
    assert [_number(s) for s in words(env, ADMIN, "二次升级")] == [c["id"]]
    assert sorted(words(env, ADMIN, "市民反馈周报")) == ["市民反馈周报 2027-01-25 至 2027-01-31：新案件 0 件",
                                                    "市民反馈周报 2027-02-01 至 2027-02-07：新案件 1 件"]
    assert len(words(env, OFFICIAL, "仍在办理中")) == 1
    assert timed_events(env, c["id"]) == [
        ("reminder", None, local("2027-02-07T10:00")), ("escalation", 1, local("2027-02-07T11:00")),
        ("still-handling", 1, local("2027-02-07T16:01")), ("escalation", 2, local("2027-02-07T16:30"))]


# A process that has imported the command and every job, then waits for a line on stdin: two of them go together.
RACER = ("import sys\nfrom feedbackd import cli\nfrom feedbackd.jobs import runner\nrunner.registry()\n"
         "print('ready', flush=True)\nsys.stdin.readline()\nsys.exit(cli.main(sys.argv[1:]))")


def race(env: Env, when: str) -> list[dict[str, dict[str, int]]]:
    """Two ``jobs run --at WHEN`` processes on one database, released at the same moment."""
    command = [sys.executable, "-c", RACER, "jobs", "run", "--at", when]
    environ = {**os.environ, "FEEDBACKD_CONFIG": str(env.config_path)}
    _, outputs = release_together(command, environ)
    return [parse_ran(out) for out, _ in outputs]


def test_two_processes_on_one_postgresql_database_send_each_notice_once(
        mailbox: Mailbox, smtp_sink: SmtpSink, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = calendar_env(Env(mailbox, smtp_sink, pg_url, tmp_path, tmp_path / "feedbackd.toml"))
    d = open_case_at(env, monkeypatch, "2026-10-12T09:00", sender=OFFICIAL, name="街道办", subject="井盖松动")
    assert datetime.fromisoformat(d["first_response_due"]) == local("2026-10-12T14:30")  # 09:00-12:00, 13:30-14:30
    # when, what goes, how many jobs are due (4 each pass; the day's digest and purge; the week's report)
    script = [("2026-10-12T12:00", {"reminders": 1, **DIGEST, "report": 1}, 7),  # one working hour left
              ("2026-10-12T14:30", {"escalations-1": 1}, 4),
              ("2026-10-13T09:30", {"escalations-2": 1, **DIGEST}, 6)]  # 14:30-18:00, 09:00-09:30
    for when, expected, jobs in script:
        first, second = race(env, when)
        assert not set(first) & set(second), when  # each job's occurrence ran in one process only
        assert len(first) + len(second) == jobs, when
        together = Counter(sent(first)) + Counter(sent(second))
        assert dict(together) == expected, when
    run_once(env)

    for staff in DESK:
        assert [_number(s) for s in words(env, staff, "期限提醒")] == [d["id"]]
        assert sorted(s.split(" ")[0] for s in words(env, staff, "待办案件")) == ["2026-10-12", "2026-10-13"]
    assert [_number(s) for s in words(env, LEAD, "逾期升级")] == [d["id"]]
    assert [_number(s) for s in words(env, ADMIN, "二次升级")] == [d["id"]]
    assert len(words(env, ADMIN, "市民反馈周报")) == 1
    assert timed_events(env, d["id"]) == [
        ("reminder", None, local("2026-10-12T12:00")), ("escalation", 1, local("2026-10-12T14:30")),
        ("escalation", 2, local("2026-10-13T09:30"))]
