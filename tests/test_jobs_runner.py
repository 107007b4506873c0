"""The jobs framework: claims, schedules in local time, failure isolation, ``jobs run --at``, the
daemon's scheduler, and two processes on one PostgreSQL database running each occurrence once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from conftest import Env, release_together
from feedbackd import config as config_mod
from feedbackd.config import Settings
from feedbackd.devstack import write_config
from feedbackd.holder import Holder
from feedbackd.jobs.base import JobContext, JobSpec, make_context
from feedbackd.jobs.clock import Schedule, occurrence, parse_at
from feedbackd.jobs.runner import claim, run_due
from feedbackd.jobs.scheduler import JobsScheduler
from feedbackd.routing import load_ruleset
from feedbackd.store.db import connect, session
from feedbackd.store.models import JobRun

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "jobs_probe.py"
CALENDAR = '[calendar]\ntimezone = "Asia/Shanghai"\n'


def configure(tmp: Path, db_url: str, extra: str = CALENDAR) -> Path:
    """A configuration for jobs alone: the mail servers named in it are never contacted."""
    sections = {
        "mailbox": {"address": "feedback@city.example"},
        "imap": {"host": "127.0.0.1", "port": 9, "security": "none", "username": "nobody"},
        "smtp": {"host": "127.0.0.1", "port": 9, "security": "none"},
        "database": {"url": db_url},
        "paths": {"rules": str(REPO / "rules"), "templates": str(REPO / "templates"), "data": str(tmp / "data")},
        "jobs": {"digest_at": "08:30", "report_weekday": "mon"},
    }
    path = write_config(tmp / "feedbackd.toml", sections)
    path.write_text(path.read_text(encoding="utf-8") + "\n" + extra, encoding="utf-8")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return config_mod.load(configure(tmp_path, f"sqlite:///{tmp_path / 'feedbackd.db'}"))


def at(text: str) -> datetime:
    return parse_at(text, UTC)


def key(schedule: Schedule, when: str, settings: Settings) -> str | None:
    due = occurrence(schedule, at(when), settings)
    return due.key if due else None


class Counting:
    """Jobs that record each run (job name, occurrence) in memory."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []

    def job(self, name: str, schedule: Schedule) -> JobSpec:
        def run(ctx: JobContext) -> dict[str, int]:
            self.runs.append((name, ctx.occurrence))
            return {"counted": 1}
        return JobSpec(name, run, schedule)


def context(engine: Engine, settings: Settings, when: str) -> JobContext:
    rules = load_ruleset(settings.paths.rules)
    return make_context(engine, settings, at(when), lambda: rules)


def job_runs(engine: Engine) -> list[JobRun]:
    with session(engine) as db:
        return list(db.exec(select(JobRun).order_by(JobRun.job, JobRun.occurrence)))


# -- schedules ------------------------------------------------------------------------------------


def test_pass_occurrence_is_the_local_minute(settings: Settings) -> None:
    assert key("pass", "2026-12-01T00:30:45+00:00", settings) == "2026-12-01T08:30+08:00"
    assert key("pass", "2026-12-01T00:30:59.9+00:00", settings) == "2026-12-01T08:30+08:00"
    assert key("pass", "2026-12-01T00:31:00+00:00", settings) == "2026-12-01T08:31+08:00"


def test_daily_from_digest_at_in_the_configured_zone_and_across_midnight(settings: Settings) -> None:
    assert key("daily", "2026-12-01T08:29:59+08:00", settings) is None
    assert key("daily", "2026-12-01T08:30+08:00", settings) == "2026-12-01"
    assert key("daily", "2026-12-01T23:59:59+08:00", settings) == "2026-12-01"
    # 00:30 local on the 2nd is 16:30 UTC on the 1st: after 08:30 UTC, but not after 08:30 local
    assert key("daily", "2026-12-01T16:30+00:00", settings) is None
    assert key("daily", "2026-12-02T00:29+00:00", settings) is None  # 08:29 local
    assert key("daily", "2026-12-02T00:30+00:00", settings) == "2026-12-02"


def test_daily_in_another_zone(tmp_path: Path) -> None:
    settings = config_mod.load(configure(tmp_path, f"sqlite:///{tmp_path / 'f.db'}",
                                         '[calendar]\ntimezone = "Europe/Berlin"\n'))
    assert key("daily", "2026-12-01T07:29+00:00", settings) is None  # 08:29 in Berlin
    assert key("daily", "2026-12-01T07:30+00:00", settings) == "2026-12-01"


def test_weekly_on_the_weekday_from_digest_at_until_the_week_ends(settings: Settings) -> None:
    # 2026-11-30 is the Monday of ISO week 49; 2026-12-07 the Monday of week 50
    assert key("weekly", "2026-11-29T23:59+08:00", settings) == "2026-W48"  # Sunday: week 48's still stands
    assert key("weekly", "2026-11-30T08:29+08:00", settings) is None  # a new week, before its Monday 08:30
    assert key("weekly", "2026-11-30T08:30+08:00", settings) == "2026-W49"
    assert key("weekly", "2026-12-03T12:00+08:00", settings) == "2026-W49"  # caught up later in the week
    assert key("weekly", "2026-12-06T23:59+08:00", settings) == "2026-W49"
    assert key("weekly", "2026-12-07T00:01+08:00", settings) is None  # a new week, before its Monday 08:30
    assert key("weekly", "2026-12-07T08:30+08:00", settings) == "2026-W50"


def test_at_without_offset_is_local_time(settings: Settings) -> None:
    from feedbackd.jobs.clock import local_zone

    assert parse_at("2026-12-01T08:30", local_zone(settings)) == datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_at("next tuesday", local_zone(settings))


# -- claims and passes ----------------------------------------------------------------------------


def test_an_occurrence_is_claimed_once(settings: Settings) -> None:
    engine = connect(settings.database.url)
    assert claim(engine, "digest", "2026-12-01")
    assert not claim(engine, "digest", "2026-12-01")
    assert claim(engine, "digest", "2026-12-02")
    assert claim(engine, "report", "2026-12-01")


def test_the_same_pass_twice_runs_each_occurrence_once(settings: Settings) -> None:
    engine = connect(settings.database.url)
    counting = Counting()
    jobs = [counting.job("p", "pass"), counting.job("d", "daily"), counting.job("w", "weekly")]
    ran = run_due(context(engine, settings, "2026-11-30T09:00+08:00"), jobs)
    assert ran == {"p": {"counted": 1}, "d": {"counted": 1}, "w": {"counted": 1}}
    assert run_due(context(engine, settings, "2026-11-30T09:00:30+08:00"), jobs) == {}
    assert counting.runs == [("p", "2026-11-30T09:00+08:00"), ("d", "2026-11-30"), ("w", "2026-W49")]
    rows = job_runs(engine)
    assert [(r.job, r.occurrence, r.result) for r in rows] == [
        ("d", "2026-11-30", {"counts": {"counted": 1}}),
        ("p", "2026-11-30T09:00+08:00", {"counts": {"counted": 1}}),
        ("w", "2026-W49", {"counts": {"counted": 1}})]
    assert all(r.finished_at is not None and r.claimed_by.split(" ")[2] == str(os.getpid()) for r in rows)


def test_catch_up_after_downtime_runs_the_missed_daily_occurrence_once(settings: Settings) -> None:
    engine = connect(settings.database.url)
    counting = Counting()
    jobs = [counting.job("p", "pass"), counting.job("d", "daily")]
    run_due(context(engine, settings, "2026-12-01T08:00+08:00"), jobs)  # then down from 08:01 to 14:00
    start = at("2026-12-01T14:00+08:00")
    for minute in range(5):
        when = (start + timedelta(minutes=minute)).isoformat()
        run_due(context(engine, settings, when), jobs)
    run_due(context(engine, settings, "2026-12-02T00:05+08:00"), jobs)  # after midnight, before 08:30
    run_due(context(engine, settings, "2026-12-02T08:30+08:00"), jobs)
    daily = [occ for name, occ in counting.runs if name == "d"]
    assert daily == ["2026-12-01", "2026-12-02"]
    passes = [occ for name, occ in counting.runs if name == "p"]
    assert passes == ["2026-12-01T08:00+08:00", *(f"2026-12-01T14:0{m}+08:00" for m in range(5)),
                      "2026-12-02T00:05+08:00", "2026-12-02T08:30+08:00"]


def test_a_failing_job_is_recorded_and_the_others_still_run(settings: Settings,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    engine = connect(settings.database.url)
    counting = Counting()

    def boom(ctx: JobContext) -> dict[str, int]:
        raise RuntimeError("the digest template is broken")

    jobs = [counting.job("before", "pass"), JobSpec("boom", boom, "pass"), counting.job("after", "pass")]
    ran = run_due(context(engine, settings, "2026-12-01T10:00+08:00"), jobs)
    assert ran == {"before": {"counted": 1}, "boom": {"failed": 1}, "after": {"counted": 1}}
    failed = next(r for r in job_runs(engine) if r.job == "boom")
    assert failed.result == {"error": "RuntimeError: the digest template is broken"}
    assert failed.finished_at is not None
    assert "job boom 2026-12-01T10:00+08:00 failed" in caplog.text
    assert run_due(context(engine, settings, "2026-12-01T10:00+08:00"), jobs) == {}  # not retried in the minute


def test_a_claim_whose_holder_died_here_is_taken_over(settings: Settings) -> None:
    engine = connect(settings.database.url)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = Holder.current()
    ghost = Holder(me.host, me.ns, dead.pid, me.start, "0" * 16)
    with session(engine) as db:
        db.add(JobRun(job="digest", occurrence="2026-12-01", claimed_by=str(ghost)))
        db.add(JobRun(job="report", occurrence="2026-W49", claimed_by=str(me)))  # alive: stays its
        db.commit()
    assert claim(engine, "digest", "2026-12-01")
    assert not claim(engine, "digest", "2026-12-01")
    assert not claim(engine, "report", "2026-W49")


def test_the_registry_skips_jobs_whose_module_is_missing(caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from feedbackd.jobs import runner

    monkeypatch.setattr(runner, "REGISTRY", (("ghost", "feedbackd.jobs.no_such_module", "run", "pass"),
                                             ("clock", "feedbackd.jobs.clock", "no_such_function", "pass"),
                                             ("now", "feedbackd.jobs.clock", "utcnow", "pass")))
    monkeypatch.setattr(runner, "JOBS", [])
    monkeypatch.setattr(runner, "_resolved", False)
    assert [spec.name for spec in runner.registry()] == ["now"]
    assert "job ghost: module feedbackd.jobs.no_such_module is not installed; skipped" in caplog.text
    assert "job clock: feedbackd.jobs.clock has no function no_such_function; skipped" in caplog.text


# -- the daemon's scheduler -----------------------------------------------------------------------


def test_the_scheduler_runs_a_pass_at_start_and_stops(settings: Settings) -> None:
    engine = connect(settings.database.url)
    ran = threading.Event()
    wake = threading.Event()

    def job(ctx: JobContext) -> dict[str, int]:
        ran.set()
        return {"counted": 1}

    def broken(ctx: JobContext) -> dict[str, int]:
        raise RuntimeError("a bug")

    rules = load_ruleset(settings.paths.rules)
    jobs = [JobSpec("broken", broken, "pass"), JobSpec("count", job, "pass")]
    scheduler = JobsScheduler(settings, engine, lambda: rules, wake, jobs=jobs)
    scheduler.start()
    try:
        assert ran.wait(30), "the first pass runs at start (catching up after downtime)"
        assert wake.wait(30), "a pass that ran something wakes the outbox"
    finally:
        scheduler.stop()
    assert scheduler._scheduler is None
    assert {r.job for r in job_runs(engine)} == {"broken", "count"}


def test_a_pass_never_raises_into_the_daemon(settings: Settings, tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'gone' / 'nothing.db'}", create=False)  # cannot be opened
    rules = load_ruleset(settings.paths.rules)
    scheduler = JobsScheduler(settings, engine, lambda: rules, threading.Event(),
                              jobs=[JobSpec("p", lambda ctx: {}, "pass")])
    assert scheduler.run_pass() == {}
    assert scheduler.passes == 1


# -- the command ----------------------------------------------------------------------------------


def probe(config: Path, count_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEEDBACKD_CONFIG": str(config)}
    return subprocess.run([sys.executable, str(PROBE), str(count_file), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def counted(count_file: Path) -> Counter[tuple[str, str]]:
    lines = count_file.read_text(encoding="utf-8").splitlines() if count_file.exists() else []
    return Counter((line.split(" ")[0], line.split(" ")[1]) for line in lines)


EXPECTED_AT_MONDAY = {("count-pass-1", "2026-11-30T09:00+08:00"), ("count-pass-2", "2026-11-30T09:00+08:00"),
                      ("count-daily-1", "2026-11-30"), ("count-daily-2", "2026-11-30"),
                      ("count-weekly-1", "2026-W49"), ("count-weekly-2", "2026-W49")}


def test_jobs_run_at_from_the_command_line(tmp_path: Path) -> None:
    config = configure(tmp_path, f"sqlite:///{tmp_path / 'feedbackd.db'}")
    count_file = tmp_path / "count"
    first = probe(config, count_file, "jobs", "run", "--at", "2026-11-30T09:00")  # local time
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"count-{s}-{i}: counted 1" for s in ("pass", "daily", "weekly")
                                         for i in (1, 2)]
    again = probe(config, count_file, "jobs", "run", "--at", "2026-11-30T01:00:30Z")  # the same minute
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "nothing to run at 2026-11-30T01:00:30+00:00 (not due, or run already)"
    later = probe(config, count_file, "jobs", "run", "--at", "2026-11-30T09:01+08:00")
    assert later.stdout.splitlines() == ["count-pass-1: counted 1", "count-pass-2: counted 1"]
    assert counted(count_file) == Counter(EXPECTED_AT_MONDAY | {("count-pass-1", "2026-11-30T09:01+08:00"),
                                                                ("count-pass-2", "2026-11-30T09:01+08:00")})
    bad = probe(config, count_file, "jobs", "run", "--at", "monday")
    assert bad.returncode == 2
    assert "is not an ISO 8601 time" in bad.stderr


def test_two_processes_on_one_postgresql_database_run_each_occurrence_once(pg_url: str, tmp_path: Path) -> None:
    config = configure(tmp_path, pg_url)
    connect(pg_url).dispose()  # the schema first: the race is on the claims, not the migration
    count_file = tmp_path / "count"
    env = {**os.environ, "FEEDBACKD_CONFIG": str(config)}
    command = [sys.executable, str(PROBE), str(count_file), "--wait", "jobs", "run", "--at",
               "2026-11-30T09:00+08:00"]
    procs, outputs = release_together(command, env)
    assert counted(count_file) == Counter(EXPECTED_AT_MONDAY)  # each occurrence once, by one of the two
    reported = [line.split(":")[0] for out, _ in outputs for line in out.splitlines() if ": counted" in line]
    assert sorted(reported) == sorted(name for name, _ in EXPECTED_AT_MONDAY)
    engine = connect(pg_url)
    rows = job_runs(engine)
    engine.dispose()
    assert {(r.job, r.occurrence) for r in rows} == EXPECTED_AT_MONDAY
    assert all(r.finished_at is not None for r in rows)
    assert {r.claimed_by.split(" ")[2] for r in rows} <= {str(proc.pid) for proc in procs}


def test_the_daemon_runs_the_jobs_and_stops_cleanly_on_sigterm(env: Env) -> None:
    import queue
    import signal

    count_file = env.tmp / "count"
    daemon = subprocess.Popen([sys.executable, str(PROBE), str(count_file), "run"], stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "FEEDBACKD_CONFIG": str(env.config_path)})
    lines: queue.Queue[str] = queue.Queue()
    assert daemon.stderr is not None
    stderr = daemon.stderr
    reader = threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True)
    reader.start()

    def wait_for(text: str) -> str:
        while True:
            line = lines.get(timeout=60)
            if text in line:
                return line

    try:
        wait_for("job count-pass-2 ")  # the first pass runs at start-up (daily/weekly: depends on today)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    reader.join(timeout=10)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert any("stopped" in line for line in rest)
    assert not any("Traceback" in line for line in rest)
    assert {"count-pass-1", "count-pass-2"} <= {name for name, _ in counted(count_file)}
