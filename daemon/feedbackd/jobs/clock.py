"""The one clock of the jobs, and when each schedule is due.

Jobs never read the wall clock: a pass takes ``now`` (aware UTC) once and hands it to every job,
so tests move time with ``jobs run --at`` instead of sleeping.

Schedules, in the local time zone (``[calendar] timezone``; its default, Asia/Shanghai, when there
is no ``[calendar]`` section):

- ``pass``: every pass; the occurrence is the pass's minute (``2026-12-01T08:31+08:00``).
- ``daily``: from ``jobs.digest_at`` until local midnight; the occurrence is the local date
  (``2026-12-01``).  A daemon that was down at 08:30 runs it once when it comes back the same day;
  a day it was down throughout is not made up the next morning (its digest would be stale).
- ``weekly``: from ``digest_at`` on ``jobs.report_weekday`` until the end of that ISO week; the
  occurrence is the ISO week (``2026-W49``).
A pass claims at most one occurrence per job, so catching up after downtime runs it once, not once
per missed minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from feedbackd.config import CalendarSettings, Settings

Schedule = Literal["pass", "daily", "weekly"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Occurrence:
    key: str  # stored in job_run.occurrence: which run of the job this is
    at: datetime  # when it was scheduled (aware UTC): the pass's minute, or digest_at of its day


def utcnow() -> datetime:
    """The wall clock, read only where a pass begins."""
    return datetime.now(UTC)


def local_zone(settings: Settings) -> tzinfo:
    name = settings.calendar.timezone if settings.calendar else CalendarSettings.model_fields["timezone"].default
    return ZoneInfo(str(name))


def parse_at(text: str, zone: tzinfo) -> datetime:
    """``--at``: an ISO 8601 time; one without an offset is local time.  Raises ValueError."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def occurrence(schedule: Schedule, now: datetime, settings: Settings) -> Occurrence | None:
    """The occurrence of ``schedule`` due at ``now``, or None when none is (before digest_at)."""
    zone = local_zone(settings)
    local = now.astimezone(zone)
    if schedule == "pass":
        minute = local.replace(second=0, microsecond=0)
        return Occurrence(minute.isoformat(timespec="minutes"), minute.astimezone(UTC))
    day = local.date()
    if schedule == "weekly":
        behind = local.weekday() - WEEKDAYS.index(settings.jobs.report_weekday)
        if behind < 0:
            return None
        day -= timedelta(days=behind)
    at = _at(day, settings.jobs.digest_at, zone)
    if local < at:
        return None
    if schedule == "daily":
        return Occurrence(day.isoformat(), at.astimezone(UTC))
    year, week, _ = day.isocalendar()
    return Occurrence(f"{year}-W{week:02d}", at.astimezone(UTC))


def _at(day: date, hhmm: str, zone: tzinfo) -> datetime:
    hours, minutes = (int(part) for part in hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=zone)
