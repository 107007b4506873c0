"""The daemon's jobs pass: APScheduler 3.x runs ``run_due`` at the start of every minute.

APScheduler only says *when*; which occurrence runs, and that it runs once across daemons and cron,
is decided by the claims in ``job_run`` (see ``runner``), so no job store is shared or persisted.
The scheduler is started paused, given its job, then resumed (a 3.11 job added to a running
scheduler can fire with stale arguments, see NOTES-mail-stack.md).  A pass never raises into the
daemon: a failing job is recorded by the runner, anything else (the database away) is logged and
the next minute tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from feedbackd.config import Settings
from feedbackd.jobs.base import JobSpec, make_context
from feedbackd.jobs.clock import utcnow
from feedbackd.jobs.runner import run_due
from feedbackd.routing import RuleSet
from feedbackd.templates import Templates

log = logging.getLogger(__name__)

JOB_ID = "feedbackd-jobs-pass"


class JobsScheduler:
    def __init__(self, settings: Settings, engine: Engine, rules: Callable[[], RuleSet],
                 outbox_wake: threading.Event, clock: Callable[[], datetime] = utcnow,
                 jobs: Sequence[JobSpec] | None = None) -> None:
        """``jobs``: what a pass runs (default: the registry, ``runner.JOBS``)."""
        self.settings = settings
        self.engine = engine
        self.rules = rules
        self.outbox_wake = outbox_wake  # set after a pass that ran something: it may have queued mail
        self.clock = clock
        self.jobs = jobs
        self.templates = Templates(settings.paths.templates)
        self.passes = 0
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        """A pass now (catching up after downtime), then at second 0 of every minute."""
        scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
        scheduler.start(paused=True)
        scheduler.add_job(self.run_pass, CronTrigger(second=0, timezone=UTC), id=JOB_ID, replace_existing=True,
                          next_run_time=datetime.now(UTC), misfire_grace_time=30)
        scheduler.resume()
        self._scheduler = scheduler
        log.info("jobs: a pass every minute")

    def stop(self) -> None:
        """Waits for a pass under way to finish (its claims are then recorded as finished)."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        self._scheduler = None

    def run_pass(self) -> dict[str, dict[str, int]]:
        """One pass at the clock's time; never raises."""
        try:
            ran = run_due(make_context(self.engine, self.settings, self.clock(), self.rules, self.templates),
                          self.jobs)
        except DBAPIError as exc:
            log.error("jobs pass: database unavailable (%s); the next minute tries again", type(exc.orig).__name__)
            return {}
        except Exception:
            log.exception("jobs pass failed; the next minute tries again")
            return {}
        finally:
            self.passes += 1
        if ran:
            self.outbox_wake.set()
        return ran
