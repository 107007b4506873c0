"""What every job shares: the context of a pass, the job's signature and its registry entry."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from sqlalchemy.engine import Engine

from feedbackd.cases import CaseNumbers
from feedbackd.config import Settings
from feedbackd.jobs.clock import Schedule
from feedbackd.routing import RuleSet
from feedbackd.templates import Templates

if TYPE_CHECKING:
    from feedbackd.jobs.calendar import BusinessCalendar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    """One pass: every job of it reads the time from ``now`` (aware UTC), never from the wall clock."""

    engine: Engine
    settings: Settings
    now: datetime
    calendar: BusinessCalendar
    rules: Callable[[], RuleSet]
    templates: Templates
    numbers: CaseNumbers
    occurrence: str = ""  # set by the runner for each job: the occurrence it runs (job_run.occurrence)
    scheduled_at: datetime | None = None  # and when that occurrence was due (e.g. digest_at of the day)


Job = Callable[[JobContext], dict[str, int]]  # runs once for an occurrence; returns counts for the log/CLI


@dataclass(frozen=True)
class JobSpec:
    name: str
    run: Job
    schedule: Schedule


def make_context(engine: Engine, settings: Settings, now: datetime, rules: Callable[[], RuleSet],
                 templates: Templates | None = None) -> JobContext:
    """The context of one pass at ``now``, with the business calendar of the settings."""
    return JobContext(engine=engine, settings=settings, now=now, calendar=calendar_of(settings), rules=rules,
                      templates=templates or Templates(settings.paths.templates),
                      numbers=CaseNumbers(settings.cases))


def calendar_of(settings: Settings) -> BusinessCalendar:
    """``jobs.calendar.calendar_for``, imported lazily; plain calendar time until that module exists."""
    try:
        module = importlib.import_module("feedbackd.jobs.calendar")
    except ModuleNotFoundError as exc:
        if exc.name != "feedbackd.jobs.calendar":
            raise
        log.debug("feedbackd.jobs.calendar is not there: deadlines count calendar time")
        return cast("BusinessCalendar", _PlainCalendar())
    calendar: BusinessCalendar = module.calendar_for(settings)
    return calendar


class _PlainCalendar:
    """Stand-in until jobs/calendar.py lands: every instant is working time."""

    warnings: list[str] = []

    def add(self, start: datetime, duration: timedelta) -> datetime:
        return start + duration

    def working_time(self, start: datetime, end: datetime) -> timedelta:
        return max(end - start, timedelta(0))
