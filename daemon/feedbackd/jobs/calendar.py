"""Business time: when deadlines fall, counted in working hours of a time zone, minus public holidays.

Without a ``[calendar]`` section every duration is plain calendar time (``add`` is ``start + d``).
With one, time counts only inside ``working_hours`` (local wall-clock ranges, e.g. a lunch break
between "09:00-12:00" and "13:30-18:00") on working days:

- a working day is Monday to Friday, minus the country's public holidays, plus its adjusted working
  days (China's 调休 Saturdays and Sundays), both from the ``holidays`` package;
- the ``overrides`` YAML (``holidays: [2028-01-01, …]``, ``workdays: [2028-02-05, …]``) wins over
  the package, for every year;
- a year the package has no announced arrangement for (for China: no State Council notice in the
  package yet) counts weekends only plus the overrides: the package's projections for such a
  year guess lunar dates and apply an "observed" rule China does not use, so they would be wrong
  both ways.  Each such year gives one warning (in ``warnings``, logged once), never an error.

How durations count (a ``timedelta`` cannot tell "3d" from "72h", so the rule goes by its value):
its whole days count **working days**, the rest **working hours**.  One working day is the length
of the working hours of one day (7.5 h with the default), so "3d" from Monday 10:00 ends on
Thursday 10:00, "1d" from Friday 17:00 ends on Monday at 17:00, "4h" from 16:00 ends at 11:00 the
next working day, and "1d4h" is one working day then four working hours.  A deadline is the
earliest instant at which that much working time has passed, so it may fall at the end of a
working period (18:00) rather than the start of the next (09:00).  Times are aware; naive times
are taken as UTC (how the store keeps them).

``add`` walks day by day (O(days spanned)); each year's holiday sets are built once per calendar.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feedbackd.config import CalendarSettings, ConfigError, Settings

log = logging.getLogger("feedbackd.calendar")

# Countries whose holidays are announced year by year (the package knows a year only once the notice is in it).
ANNOUNCED = frozenset({"CN"})
MAX_IDLE_DAYS = 400  # consecutive days without working time: a misconfiguration, not a calendar
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DAY_CACHE = 4096  # local days whose working periods are kept
LOOKAHEAD = timedelta(days=60)  # how far ahead start-up looks for a year without holiday data


class BusinessCalendar:
    """Plain calendar time: the calendar without a ``[calendar]`` section (and the interface of all)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The deadline: ``start`` plus ``duration`` of working time (days as working days, see the module)."""
        return _aware(start) + duration

    def working_amount(self, duration: timedelta) -> timedelta:
        """Working time a configured duration stands for (plain time: the duration itself)."""
        return duration

    def add_working(self, start: datetime, amount: timedelta) -> datetime:
        """``start`` plus exactly ``amount`` of working time (no day rule: for what ``working_time`` measured)."""
        return _aware(start) + amount

    def working_time(self, start: datetime, end: datetime) -> timedelta:
        """Working time between two instants; negative when ``end`` is before ``start``."""
        return _aware(end) - _aware(start)

    def is_working_day(self, day: date) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Overrides:
    """The admin's extra holidays and working days (the ``overrides`` YAML)."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def count(self, year: int) -> tuple[int, int]:
        return (sum(d.year == year for d in self.holidays), sum(d.year == year for d in self.workdays))


@dataclass(frozen=True, slots=True)
class _Year:
    holidays: frozenset[date]  # weekdays off
    workdays: frozenset[date]  # weekend days worked (调休)


class WorkingCalendar(BusinessCalendar):
    """Working hours in a time zone, on the working days of a country (see the module for the rules)."""

    def __init__(self, zone: ZoneInfo, hours: list[tuple[int, int]], country: str | None,
                 overrides: Overrides = Overrides(), overrides_name: str = "") -> None:
        super().__init__()
        self.zone = zone
        self.hours = hours  # (begin, end) minutes after local midnight
        self.country = country
        self.overrides = overrides
        self.overrides_name = overrides_name
        self.day_length = timedelta(minutes=sum(end - begin for begin, end in hours))
        self._years: dict[int, _Year] = {}
        self._days: dict[date, tuple[tuple[datetime, datetime], ...]] = {}

    # -- durations -------------------------------------------------------------------------------

    def add(self, start: datetime, duration: timedelta) -> datetime:
        return self.add_working(start, self.working_amount(duration))

    def working_amount(self, duration: timedelta) -> timedelta:
        """Working time a configured duration stands for: whole days are working days, the rest hours."""
        if duration < timedelta(0):
            raise ValueError(f"a deadline cannot be negative: {duration}")
        return duration.days * self.day_length + (duration - timedelta(days=duration.days))

    def add_working(self, start: datetime, amount: timedelta) -> datetime:
        start = _aware(start)
        if amount <= timedelta(0):
            return start + amount
        remaining = amount
        for periods in self._periods_from(self._local_day(start)):
            for begin, end in periods:
                if end <= start:
                    continue
                begin = max(begin, start)
                if remaining <= end - begin:
                    return begin + remaining
                remaining -= end - begin
        raise AssertionError("unreachable: _periods_from never ends")  # pragma: no cover

    def working_time(self, start: datetime, end: datetime) -> timedelta:
        start, end = _aware(start), _aware(end)
        if end < start:
            return -self.working_time(end, start)
        total = timedelta(0)
        day, last = self._local_day(start), self._local_day(end)
        while day <= last:
            for begin, finish in self.periods(day):
                overlap = min(finish, end) - max(begin, start)
                if overlap > timedelta(0):
                    total += overlap
            day += timedelta(days=1)
        return total

    # -- days --------------------------------------------------------------------------------------

    def periods(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The working periods of a local day, as UTC instants (empty on a day off)."""
        cached = self._days.get(day)
        if cached is not None:
            return cached
        if len(self._days) >= _DAY_CACHE:
            self._days.clear()
        found: tuple[tuple[datetime, datetime], ...] = ()
        if self.is_working_day(day):
            found = tuple((self._instant(day, a), self._instant(day, b)) for a, b in self.hours)
        self._days[day] = found
        return found

    def is_working_day(self, day: date) -> bool:
        if day in self.overrides.workdays:
            return True
        if day in self.overrides.holidays:
            return False
        year = self._year(day.year)
        if day in year.workdays:
            return True
        return day.weekday() < 5 and day not in year.holidays

    def _periods_from(self, day: date) -> Iterator[tuple[tuple[datetime, datetime], ...]]:
        idle = 0
        while True:
            periods = self.periods(day)
            idle = 0 if periods else idle + 1
            if idle > MAX_IDLE_DAYS:
                raise ValueError(f"no working day in the {MAX_IDLE_DAYS} days before {day}: check the overrides")
            yield periods
            day += timedelta(days=1)

    def _instant(self, day: date, minutes: int) -> datetime:
        """A local wall-clock time of ``day`` (aware arithmetic is wall-clock arithmetic) as UTC."""
        return (datetime.combine(day, time(0), self.zone) + timedelta(minutes=minutes)).astimezone(UTC)

    def _local_day(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()

    # -- years -------------------------------------------------------------------------------------

    def _year(self, year: int) -> _Year:
        found = self._years.get(year)
        if found is None:
            found = self._years[year] = self._load_year(year)
        return found

    def _load_year(self, year: int) -> _Year:
        if self.country is None:
            return _Year(frozenset(), frozenset())
        if not known_year(self.country, year):
            self._warn_unknown(year)
            return _Year(frozenset(), frozenset())
        return _package_year(self.country, year)

    def _warn_unknown(self, year: int) -> None:
        holidays, workdays = self.overrides.count(year)
        source = (f"plus {holidays} holidays and {workdays} working days from {self.overrides_name}"
                  if self.overrides_name else "(no overrides file configured)")
        message = (f"calendar: the holidays package has no {self.country} holiday arrangement for {year}; "
                   f"{year} counts weekends only {source}")
        self.warnings.append(message)
        log.warning("%s", message)

    def check_years(self, *years: int) -> list[str]:
        """Load these years now (at start-up and in ``doctor``); the warnings so far."""
        for year in years:
            self._year(year)
        return list(self.warnings)


# -- the holidays package --------------------------------------------------------------------------------------


def known_year(country: str, year: int) -> bool:
    """Whether the package holds the real arrangement of ``year`` (announced countries: its notice is in it)."""
    cls = type(_country(country, None))
    start, end = getattr(cls, "start_year", 1), getattr(cls, "end_year", 9999)
    if not start <= year <= end:
        return False
    if country in ANNOUNCED:
        return year <= _last_announced(country)
    return True


@lru_cache(maxsize=8)
def _last_announced(country: str) -> int:
    special: dict[int, Any] = getattr(_country(country, None), "special_public_holidays", {}) or {}
    return max(special, default=0)


@lru_cache(maxsize=64)
def _package_year(country: str, year: int) -> _Year:
    """One year's days off and weekend working days (those of a year may come from the next year's notice)."""
    days = _country(country, [year, year + 1])
    off = frozenset(d for d in days if d.year == year and d.weekday() < 5)
    worked: set[date] = getattr(days, "weekend_workdays", set()) or set()
    return _Year(off, frozenset(d for d in worked if d.year == year))


def _country(country: str, years: list[int] | None) -> Any:
    import holidays  # loads only with a [calendar] section

    try:
        return holidays.country_holidays(country, years=years, categories=(holidays.PUBLIC,))
    except NotImplementedError:
        raise ConfigError(f"calendar.country: the holidays package has no country {country!r}") from None


# -- settings -----------------------------------------------------------------------------------------------


def calendar_for(settings: Settings) -> BusinessCalendar:
    """The calendar deadlines count in: plain time without ``[calendar]``; one instance per configuration.

    A changed overrides file gives a new calendar (its modification time is part of the key).
    Raises ConfigError naming the setting or the file's line at fault.
    """
    section = settings.calendar
    if section is None:
        return _PLAIN
    stamp = _mtime(section.overrides)
    return _cached(section.timezone, section.working_hours, section.country, section.overrides, stamp)


_PLAIN = BusinessCalendar()


@lru_cache(maxsize=8)
def _cached(timezone: str, working_hours: str, country: str, overrides: Path | None,
            _stamp: int | None) -> BusinessCalendar:
    return build(CalendarSettings(timezone=timezone, working_hours=working_hours, country=country,
                                  overrides=overrides), today=datetime.now(UTC).date())


def build(section: CalendarSettings, *, today: date | None = None) -> WorkingCalendar:
    """A calendar from its settings; with ``today``, the years of the coming LOOKAHEAD are checked now (start-up
    warnings: next year's missing arrangement is news only in its last weeks)."""
    try:
        zone = ZoneInfo(section.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"calendar.timezone: unknown time zone {section.timezone!r}") from None
    country = section.country.strip().upper() or None
    if country is not None:
        _country(country, None)  # an unknown country fails now, not at the first deadline
    overrides = load_overrides(section.overrides) if section.overrides is not None else Overrides()
    calendar = WorkingCalendar(zone, parse_working_hours(section.working_hours), country, overrides,
                               str(section.overrides) if section.overrides is not None else "")
    if today is not None:
        calendar.check_years(today.year, (today + LOOKAHEAD).year)
    return calendar


def _mtime(path: Path | None) -> int | None:
    try:
        return path.stat().st_mtime_ns if path is not None else None
    except OSError:
        return None  # load_overrides names the problem


def parse_working_hours(text: str) -> list[tuple[int, int]]:
    """ "09:00-12:00,13:30-18:00" → ordered, non-overlapping periods; ConfigError naming the bad part."""
    periods: list[tuple[int, int]] = []
    for part in text.split(","):
        match = _RANGE.match(part)
        if not match:
            raise ConfigError(f"calendar.working_hours: {part.strip()!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ConfigError(f"calendar.working_hours: {part.strip()!r} is not a time of day")
        begin, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= begin:
            raise ConfigError(f"calendar.working_hours: {part.strip()!r} ends before it begins")
        if periods and begin < periods[-1][1]:
            raise ConfigError(f"calendar.working_hours: {part.strip()!r} overlaps or precedes the period before it")
        periods.append((begin, end))
    return periods


def _aware(instant: datetime) -> datetime:
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


# -- the overrides file -------------------------------------------------------------------------------------


def load_overrides(path: Path) -> Overrides:
    """Read ``holidays:`` and ``workdays:`` lists of dates; ConfigError naming the file, line and entry at fault."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: calendar overrides file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read calendar overrides: {exc}") from None
    try:
        root = YAML(typ="safe").compose(text)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else 0
        raise ConfigError(f"{path}:{line}: not valid YAML: {exc.problem}") from None
    except YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None

    def where(node: Node) -> str:
        return f"{path}:{node.start_mark.line + 1}"

    if root is None:
        return Overrides()
    if not isinstance(root, MappingNode):
        raise ConfigError(f"{where(root)}: expected a mapping with 'holidays' and/or 'workdays' lists of dates")
    lists: dict[str, set[date]] = {"holidays": set(), "workdays": set()}
    for key, value in root.value:
        name = key.value if isinstance(key, ScalarNode) else str(key)
        if name not in lists:
            raise ConfigError(f"{where(key)}: unknown key {name!r} (expected holidays, workdays)")
        if isinstance(value, ScalarNode) and value.value in ("", "~", "null"):
            continue  # an empty list written as "holidays:"
        if not isinstance(value, SequenceNode):
            raise ConfigError(f"{where(value)}: {name}: expected a list of dates (YYYY-MM-DD)")
        for index, item in enumerate(value.value):
            lists[name].add(_date(item, f"{where(item)}: {name}[{index}]"))
    both = sorted(lists["holidays"] & lists["workdays"])
    if both:
        raise ConfigError(f"{path}: {both[0]} is listed both under holidays and under workdays")
    return Overrides(frozenset(lists["holidays"]), frozenset(lists["workdays"]))


def _date(node: Any, where: str) -> date:
    value = getattr(node, "value", None)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a date (YYYY-MM-DD), found a list or mapping")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            raise ValueError
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None
