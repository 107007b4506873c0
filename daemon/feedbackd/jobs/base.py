"""What every job shares: the context of a pass, the job's signature and its registry entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from feedbackd.cases import CaseNumbers
from feedbackd.config import Settings
from feedbackd.jobs.clock import Schedule
from feedbackd.routing import RuleSet
from feedbackd.templates import Templates

if TYPE_CHECKING:
    from feedbackd.jobs.calendar import BusinessCalendar


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
    """The business calendar of the settings (imported here: the calendar is not needed to import a job)."""
    from feedbackd.jobs.calendar import calendar_for

    return calendar_for(settings)
