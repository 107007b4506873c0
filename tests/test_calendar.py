"""The business calendar (jobs/calendar.py) and the deadlines counted in it (casework, staff actions).

Pure logic, no servers.  Local times are Asia/Shanghai unless a test says otherwise; working hours
are the default "09:00-12:00,13:30-18:00" (7.5 h, so one working day is 7.5 working hours).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedbackd.config import CalendarSettings, ConfigError, Settings
from feedbackd.jobs.calendar import BusinessCalendar, WorkingCalendar, build, calendar_for, parse_working_hours
from feedbackd.staff.actions import apply, resume_deadlines
from feedbackd.stages.casework import tighter_deadlines
from test_staff_actions import RULES, case, cmd

SH = ZoneInfo("Asia/Shanghai")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

OVERRIDES_2027 = """\
# What the admin writes once the State Council publishes the arrangement the package does not have yet.
holidays:
  - 2027-02-05   # 春节
  - 2027-02-08
  - 2027-02-09
  - 2027-02-10
  - 2027-02-11
  - 2027-10-01   # 国庆节
  - 2027-10-04
  - 2027-10-05
  - 2027-10-06
  - 2027-10-07
workdays: [2027-02-20, 2027-09-26, 2027-10-09, 2028-02-05]
"""


def sh(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SH)  # type: ignore[misc]


def cal(tmp_path: Path | None = None, overrides: str | None = None, **values: str) -> WorkingCalendar:
    path = None
    if overrides is not None:
        assert tmp_path is not None
        path = tmp_path / "calendar.yaml"
        path.write_text(overrides, encoding="utf-8")
    return build(CalendarSettings(overrides=path, **values))


@pytest.fixture(scope="module")
def cn() -> WorkingCalendar:
    return cal()


# -- working hours, weekends, the day rule ----------------------------------------------------------


def test_hours_skip_the_lunch_break(cn: WorkingCalendar) -> None:
    assert cn.add(sh(2026, 3, 10, 11, 0), 2 * HOUR) == sh(2026, 3, 10, 14, 30)
    assert cn.add(sh(2026, 3, 10, 12, 30), HOUR) == sh(2026, 3, 10, 14, 30)  # sent at lunch: counts from 13:30
    assert cn.working_time(sh(2026, 3, 10, 11, 0), sh(2026, 3, 10, 14, 30)) == 2 * HOUR


def test_a_deadline_is_the_earliest_instant_the_time_is_reached(cn: WorkingCalendar) -> None:
    assert cn.add(sh(2026, 3, 10, 9, 0), 3 * HOUR) == sh(2026, 3, 10, 12, 0)  # not 13:30
    assert cn.add(sh(2026, 3, 10, 13, 30), 4.5 * HOUR) == sh(2026, 3, 10, 18, 0)  # not 09:00 the next day


def test_hours_cross_midnight_and_the_weekend(cn: WorkingCalendar) -> None:
    friday = sh(2026, 3, 6, 17, 0)
    assert cn.add(friday, 4 * HOUR) == sh(2026, 3, 9, 12, 0)  # 1 h on Friday, 3 h on Monday
    assert cn.add(sh(2026, 3, 7, 11, 0), HOUR) == sh(2026, 3, 9, 10, 0)  # written on Saturday
    assert cn.working_time(friday, sh(2026, 3, 9, 12, 0)) == 4 * HOUR
    assert cn.working_time(sh(2026, 3, 7, 0, 0), sh(2026, 3, 8, 23, 59)) == timedelta(0)


def test_whole_days_count_working_days_the_rest_working_hours(cn: WorkingCalendar) -> None:
    assert cn.day_length == 7.5 * HOUR
    assert cn.add(sh(2026, 3, 9, 10, 0), 3 * DAY) == sh(2026, 3, 12, 10, 0)  # Monday → Thursday, same time
    assert cn.add(sh(2026, 3, 6, 17, 0), DAY) == sh(2026, 3, 9, 17, 0)  # Friday → Monday
    assert cn.add(sh(2026, 3, 7, 11, 0), DAY) == sh(2026, 3, 9, 18, 0)  # Saturday → the end of Monday
    assert cn.add(sh(2026, 3, 9, 10, 0), DAY + 4 * HOUR) == sh(2026, 3, 10, 15, 30)
    assert cn.add(sh(2026, 3, 9, 10, 0), 72 * HOUR) == cn.add(sh(2026, 3, 9, 10, 0), 3 * DAY)  # one value
    assert cn.working_amount(5 * DAY) == 37.5 * HOUR


def test_working_time_is_signed(cn: WorkingCalendar) -> None:
    a, b = sh(2026, 3, 9, 10, 0), sh(2026, 3, 10, 10, 0)
    assert cn.working_time(a, b) == 7.5 * HOUR and cn.working_time(b, a) == -7.5 * HOUR


# -- Chinese public holidays and 调休 from the package (2026) -----------------------------------------


def test_spring_festival_2026_with_its_adjusted_saturdays(cn: WorkingCalendar) -> None:
    # 2026: off 15-23 February; Saturday 14 and Saturday 28 February are working days.
    assert cn.is_working_day(date(2026, 2, 14)) and cn.is_working_day(date(2026, 2, 28))
    assert not any(cn.is_working_day(date(2026, 2, d)) for d in range(15, 24))
    assert cn.add(sh(2026, 2, 13, 17, 0), DAY) == sh(2026, 2, 14, 17, 0)  # Friday → the working Saturday
    # From the working Saturday across midnight and the whole festival: 1 h, then Tuesday 24th.
    due = cn.add(sh(2026, 2, 14, 17, 0), 4 * HOUR)
    assert due == sh(2026, 2, 24, 12, 0) and due.tzinfo is UTC and due == datetime(2026, 2, 24, 4, 0, tzinfo=UTC)
    assert cn.working_time(sh(2026, 2, 13, 9, 0), sh(2026, 2, 24, 18, 0)) == 3 * 7.5 * HOUR


def test_national_day_2026_with_its_adjusted_weekend_days(cn: WorkingCalendar) -> None:
    # 2026: off 1-7 October; Sunday 20 September and Saturday 10 October are working days.
    assert cn.is_working_day(date(2026, 9, 20)) and cn.is_working_day(date(2026, 10, 10))
    assert not any(cn.is_working_day(date(2026, 10, d)) for d in range(1, 8))
    assert cn.add(sh(2026, 9, 30, 17, 0), 2 * HOUR) == sh(2026, 10, 8, 10, 0)
    assert cn.add(sh(2026, 9, 19, 10, 0), HOUR) == sh(2026, 9, 20, 10, 0)  # Saturday → the working Sunday


# -- a year the package has no arrangement for: weekends only + overrides, one warning ---------------------


def test_2027_without_overrides_counts_weekends_only_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    calendar = cal()
    with caplog.at_level(logging.WARNING, logger="feedbackd.calendar"):
        assert calendar.add(sh(2027, 9, 30, 17, 0), 4 * HOUR) == sh(2027, 10, 1, 12, 0)  # National Day not known
        for day in range(1, 28):
            calendar.add(sh(2027, 2, day, 10, 0), 3 * DAY)
    assert len(calendar.warnings) == 1
    assert "no CN holiday arrangement for 2027" in calendar.warnings[0]
    assert "weekends only (no overrides file configured)" in calendar.warnings[0]
    assert [r.getMessage() for r in caplog.records] == calendar.warnings


def test_2027_and_2028_from_the_overrides_file(tmp_path: Path) -> None:
    calendar = cal(tmp_path, OVERRIDES_2027)
    # National Day 2027: Thursday 30 September 17:00 + 4 h → 1 h, then Friday 8 October (1-7 off).
    assert calendar.add(sh(2027, 9, 30, 17, 0), 4 * HOUR) == sh(2027, 10, 8, 12, 0)
    assert calendar.add(sh(2027, 9, 25, 10, 0), HOUR) == sh(2027, 9, 26, 10, 0)  # the working Sunday
    assert calendar.is_working_day(date(2027, 10, 9))
    # Spring Festival 2027: Thursday 4 February 17:00 + 1 working day → Friday 12 February 17:00.
    assert calendar.add(sh(2027, 2, 4, 17, 0), DAY) == sh(2027, 2, 12, 17, 0)
    assert calendar.warnings == [
        f"calendar: the holidays package has no CN holiday arrangement for 2027; 2027 counts weekends only "
        f"plus 10 holidays and 3 working days from {tmp_path / 'calendar.yaml'}"]
    assert calendar.add(sh(2028, 2, 4, 17, 0), 2 * HOUR) == sh(2028, 2, 5, 10, 0)  # a working Saturday of 2028
    assert len(calendar.warnings) == 2 and "for 2028" in calendar.warnings[1]


def test_overrides_win_over_the_package_in_a_known_year(tmp_path: Path) -> None:
    calendar = cal(tmp_path, "holidays: [2026-03-10]\nworkdays: [2026-10-08, 2026-03-14]\n")
    assert not calendar.is_working_day(date(2026, 3, 10)) and calendar.is_working_day(date(2026, 3, 14))
    assert calendar.warnings == []


def test_start_up_warns_only_for_a_year_a_deadline_can_soon_reach() -> None:
    assert build(CalendarSettings(), today=date(2026, 6, 1)).warnings == []
    late = build(CalendarSettings(), today=date(2026, 12, 1))
    assert len(late.warnings) == 1 and "for 2027" in late.warnings[0]


def test_a_country_without_announced_arrangements_knows_its_years() -> None:
    german = build(CalendarSettings(country="DE", timezone="Europe/Berlin"), today=date(2031, 12, 20))
    assert german.warnings == [] and not german.is_working_day(date(2031, 12, 25))


def test_no_country_counts_weekends_only() -> None:
    plain_days = cal(country="")
    assert plain_days.is_working_day(date(2026, 10, 1)) and not plain_days.is_working_day(date(2026, 10, 3))
    assert plain_days.warnings == []


# -- time zones: stored in UTC, counted in local working hours ---------------------------------------------


def test_utc_in_and_out_local_hours_between(cn: WorkingCalendar) -> None:
    start = datetime(2026, 3, 9, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    assert cn.add(start, HOUR) == datetime(2026, 3, 9, 2, 0, tzinfo=UTC)
    assert cn.add(start.replace(tzinfo=None), HOUR) == datetime(2026, 3, 9, 2, 0, tzinfo=UTC)  # naive is UTC
    in_utc = cal(timezone="UTC")
    assert in_utc.add(start, HOUR) == datetime(2026, 3, 9, 10, 0, tzinfo=UTC)  # before 09:00 UTC: waits
    assert cn.add(start, HOUR).tzinfo is UTC


def test_working_hours_follow_the_wall_clock_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    calendar = cal(timezone="Europe/Berlin", country="")
    due = calendar.add(datetime(2026, 3, 27, 17, 0, tzinfo=berlin), 2 * HOUR)  # Friday CET → Monday CEST
    assert due == datetime(2026, 3, 30, 10, 0, tzinfo=berlin) == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(start=st.datetimes(min_value=datetime(2025, 12, 1), max_value=datetime(2026, 12, 31)),
       minutes=st.integers(min_value=1, max_value=60 * 24 * 20))
def test_add_and_working_time_agree(start: datetime, minutes: int) -> None:
    calendar = _SHARED
    amount = timedelta(minutes=minutes)
    due = calendar.add_working(start, amount)
    assert calendar.working_time(start, due) == amount
    assert calendar.working_time(start, due - timedelta(seconds=1)) < amount  # the earliest such instant
    assert calendar.add(start, amount) == calendar.add_working(start, calendar.working_amount(amount))


_SHARED = build(CalendarSettings())


# -- settings and their errors ------------------------------------------------------------------------------


def test_without_a_calendar_section_time_is_calendar_time() -> None:
    plain = calendar_for(Settings.model_construct(calendar=None))
    start = datetime(2026, 2, 14, 17, 0, tzinfo=UTC)
    assert type(plain) is BusinessCalendar and plain.add(start, 3 * DAY) == start + 3 * DAY
    assert plain.working_time(start, start + DAY) == DAY and plain.warnings == []


def test_one_calendar_per_configuration() -> None:
    section = CalendarSettings(country="")
    first = calendar_for(Settings.model_construct(calendar=section))
    assert calendar_for(Settings.model_construct(calendar=section.model_copy())) is first


@pytest.mark.parametrize(("hours", "error"), [
    ("9-12", "'9-12' is not HH:MM-HH:MM"),
    ("12:00-09:00", "'12:00-09:00' ends before it begins"),
    ("09:00-12:00, 11:00-18:00", "'11:00-18:00' overlaps or precedes the period before it"),
    ("25:00-26:00", "'25:00-26:00' is not a time of day"),
])
def test_working_hours_errors_name_the_part(hours: str, error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("calendar.working_hours: " + error)):
        parse_working_hours(hours)


def test_working_hours_up_to_midnight() -> None:
    assert parse_working_hours("00:00-24:00") == [(0, 1440)]
    around = cal(working_hours="00:00-24:00", country="")
    assert around.add(sh(2026, 3, 6, 23, 0), 2 * HOUR) == sh(2026, 3, 9, 1, 0)


def test_unknown_time_zone_or_country_is_named() -> None:
    with pytest.raises(ConfigError, match=re.escape("calendar.timezone: unknown time zone 'Asia/Shanghi'")):
        build(CalendarSettings(timezone="Asia/Shanghi"))
    with pytest.raises(ConfigError, match=re.escape("calendar.country: the holidays package has no country 'XX'")):
        build(CalendarSettings(country="XX"))


@pytest.mark.parametrize(("text", "error"), [
    ("holidays: [2028-01-01\n", ":2: not valid YAML"),
    ("- 2028-01-01\n", ":1: expected a mapping with 'holidays' and/or 'workdays' lists of dates"),
    ("holidays: []\nholiday: [2028-01-01]\n", ":2: unknown key 'holiday' (expected holidays, workdays)"),
    ("workdays: 2028-02-05\n", ":1: workdays: expected a list of dates (YYYY-MM-DD)"),
    ("holidays:\n  - 2028-01-01\n  - 2028-02-30\n", ":3: holidays[1]: '2028-02-30' is not a date (YYYY-MM-DD)"),
    ("holidays:\n  - 1 May\n", ":2: holidays[0]: '1 May' is not a date (YYYY-MM-DD)"),
    ("holidays:\n  - [2028-01-01]\n", ":2: holidays[0]: expected a date (YYYY-MM-DD), found a list or mapping"),
    ("holidays: [2028-02-05]\nworkdays: [2028-02-05]\n", ": 2028-02-05 is listed both under holidays and under"),
])
def test_overrides_errors_name_file_line_and_entry(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cal(tmp_path, text)
    assert str(caught.value).startswith(str(tmp_path / "calendar.yaml") + error)


def test_overrides_file_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="calendar overrides file not found"):
        build(CalendarSettings(overrides=tmp_path / "nope.yaml"))
    assert cal(tmp_path, "").overrides.holidays == frozenset()
    assert cal(tmp_path, "holidays:\nworkdays: ['2028-02-05']\n").overrides.workdays == {date(2028, 2, 5)}


# -- deadlines counted in the calendar: new cases, priority changes, waiting ---------------------------------


def test_a_raised_priority_counts_its_deadlines_in_working_hours(cn: WorkingCalendar,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    now = sh(2026, 2, 13, 17, 30)  # Friday before the Spring Festival
    current = case(first_response_due=now + 10 * DAY, resolution_due=now + 20 * DAY)
    expected = {"first_response_due": sh(2026, 2, 14, 9, 30),  # 30 min Friday, 30 min the working Saturday
                "resolution_due": sh(2026, 2, 14, 17, 30)}  # "1d": the same time one working day on
    applied = apply(current, [cmd("#priority urgent")], RULES, has_text=False, now=now, calendar=cn)
    assert {k: applied.changes[k] for k in expected} == expected
    monkeypatch.setattr("feedbackd.stages.casework.utcnow", lambda: now)  # a follow-up mail's raised priority
    assert tighter_deadlines({**current, "priority": "urgent"}, RULES, cn) == expected
    assert tighter_deadlines({**current, "priority": "urgent"}, RULES) == {"first_response_due": now + HOUR,
                                                                          "resolution_due": now + DAY}


def test_a_move_counts_from_the_pause_in_working_hours(cn: WorkingCalendar) -> None:
    paused = sh(2026, 9, 30, 17, 0)
    current = case(status="waiting", paused_at=paused, first_response_due=paused + 30 * DAY,
                   resolution_due=paused + 30 * DAY)
    applied = apply(current, [cmd("#move safety"), cmd("#priority urgent")], RULES, has_text=False,
                    now=sh(2026, 10, 9, 10, 0), calendar=cn)
    assert applied.changes["first_response_due"] == sh(2026, 9, 30, 17, 30)  # safety's 30 min
    assert applied.changes["resolution_due"] == sh(2026, 10, 9, 14, 0)  # 12 working hours: 1 + 7.5 + 3.5


def test_resuming_keeps_the_working_time_that_was_left(cn: WorkingCalendar) -> None:
    paused = sh(2026, 2, 13, 11, 0)  # Friday; 2 working hours and 1 working day left
    waiting = case(status="waiting", paused_at=paused, first_response_due=sh(2026, 2, 13, 14, 30),
                   resolution_due=sh(2026, 2, 14, 11, 0))
    resumed = resume_deadlines(waiting, sh(2026, 3, 2, 16, 0), calendar=cn)  # the citizen answers on a Monday
    assert resumed == {"first_response_due": sh(2026, 3, 2, 18, 0), "resolution_due": sh(2026, 3, 3, 16, 0),
                       "paused_at": None}
    overdue = case(status="waiting", paused_at=paused, first_response_due=paused - HOUR, resolution_due=None)
    assert resume_deadlines(overdue, paused + 5 * HOUR, calendar=cn)["first_response_due"] == paused + 4 * HOUR
    answered = apply(waiting, [], RULES, has_text=True, now=sh(2026, 3, 2, 16, 0), calendar=cn)
    assert answered.changes["first_response_due"] == sh(2026, 3, 2, 18, 0)
