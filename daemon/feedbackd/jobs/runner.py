"""The registry of jobs and the pass that runs what is due, each occurrence once.

A due occurrence is claimed by inserting its ``job_run`` row (``INSERT … ON CONFLICT DO NOTHING``)
and committing before the job runs: whoever inserted it runs it, everyone else (a second daemon,
cron, the same pass repeated) skips it.  A claim whose holder died on this host before finishing
is taken over (``feedbackd.holder``); one held on another host stays, and each job's own once-only
rows (``case_notice``) keep a re-run harmless anyway.  A failing job is logged and its error stored
in ``job_run.result``; the other jobs of the pass still run.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col, select

from feedbackd.holder import Holder
from feedbackd.jobs.base import JobContext, JobSpec
from feedbackd.jobs.clock import Occurrence, Schedule, occurrence, utcnow
from feedbackd.store import records
from feedbackd.store.models import JobRun

log = logging.getLogger(__name__)

# name, module, function, schedule: in the order a pass runs them
REGISTRY: tuple[tuple[str, str, str, Schedule], ...] = (
    ("reminders", "feedbackd.jobs.notices", "reminders", "pass"),
    ("escalations", "feedbackd.jobs.notices", "escalations", "pass"),
    ("progress", "feedbackd.jobs.notices", "progress", "pass"),
    ("auto-close", "feedbackd.jobs.notices", "auto_close", "pass"),
    ("digest", "feedbackd.jobs.digest", "digest", "daily"),
    ("purge", "feedbackd.jobs.purge", "purge", "daily"),
    ("report", "feedbackd.jobs.report", "weekly_report", "weekly"),
)

JOBS: list[JobSpec] = []  # the registry, resolved by ``registry()`` on first use
_loaded = threading.Lock()
_resolved = False
ERROR_CHARS = 500  # of an error's text kept in job_run.result


def registry() -> list[JobSpec]:
    """``JOBS``, its functions imported by name the first time; a job whose module or function is
    missing is left out with one log line (so a partial install still runs the others)."""
    global _resolved
    with _loaded:
        if not _resolved:
            JOBS.extend(spec for spec in (_resolve(*entry) for entry in REGISTRY) if spec is not None)
            _resolved = True
    return JOBS


def _resolve(name: str, module_name: str, function: str, schedule: Schedule) -> JobSpec | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            log.exception("job %s: its module %s failed to import; skipped", name, module_name)
        else:
            log.warning("job %s: module %s is not installed; skipped", name, module_name)
        return None
    except Exception:
        log.exception("job %s: its module %s failed to import; skipped", name, module_name)
        return None
    run = getattr(module, function, None)
    if not callable(run):
        log.warning("job %s: %s has no function %s; skipped", name, module_name, function)
        return None
    return JobSpec(name, run, schedule)


def run_due(ctx: JobContext, jobs: Sequence[JobSpec] | None = None) -> dict[str, dict[str, int]]:
    """Run every job due at ``ctx.now`` whose occurrence nobody has claimed; returns what ran here."""
    ran: dict[str, dict[str, int]] = {}
    for spec in registry() if jobs is None else jobs:
        due = occurrence(spec.schedule, ctx.now, ctx.settings)
        if due is None or not claim(ctx.engine, spec.name, due.key):
            continue
        ran[spec.name] = _run(spec, ctx, due)
    return ran


def _run(spec: JobSpec, ctx: JobContext, due: Occurrence) -> dict[str, int]:
    try:
        counts = dict(spec.run(dataclasses.replace(ctx, occurrence=due.key, scheduled_at=due.at)))
        result: dict[str, Any] = {"counts": counts}
        log.info("job %s %s: %s", spec.name, due.key, ", ".join(f"{k} {v}" for k, v in counts.items()) or "done")
    except Exception as exc:
        log.exception("job %s %s failed; the other jobs go on", spec.name, due.key)
        counts = {"failed": 1}
        result = {"error": f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]}
    with ctx.engine.begin() as conn:
        conn.execute(update(JobRun).where(col(JobRun.job) == spec.name, col(JobRun.occurrence) == due.key)
                     .values(finished_at=utcnow(), result=result))
    return counts


def claim(engine: Engine, job: str, key: str) -> bool:
    """True if this process now holds the occurrence (committed before the job runs)."""
    holder = str(Holder.current())
    with engine.begin() as conn:
        if _insert(conn, job, key, holder):
            return True
        return _take_over(conn, job, key, holder)


def _insert(conn: Connection, job: str, key: str, holder: str) -> bool:
    return records.insert_if_new(conn, records.JOB_RUNS, {"job": job, "occurrence": key, "claimed_by": holder,
                                                          "claimed_at": utcnow(), "result": {}})


def _take_over(conn: Connection, job: str, key: str, holder: str) -> bool:
    """An unfinished claim whose holder certainly died (on this host) passes to us."""
    row = conn.execute(select(JobRun.claimed_by, JobRun.finished_at)
                       .where(col(JobRun.job) == job, col(JobRun.occurrence) == key)).first()
    if row is None or row.finished_at is not None:
        return False
    old = Holder.parse(row.claimed_by)
    if old is None or not old.gone():
        return False
    taken = conn.execute(update(JobRun).where(col(JobRun.job) == job, col(JobRun.occurrence) == key,
                                              col(JobRun.claimed_by) == row.claimed_by)
                         .values(claimed_by=holder, claimed_at=utcnow()))
    if taken.rowcount == 1:
        log.warning("job %s %s: its holder died before finishing; running it again", job, key)
    return taken.rowcount == 1
