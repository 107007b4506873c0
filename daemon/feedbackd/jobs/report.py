"""Statistics of a period: ``feedbackd report`` and the weekly report mail to ``jobs.admins``.

Every figure is about the cases *created* in the period ``[from, to)`` (a cohort), measured as of
the report's clock ``now``; ``previous`` is the same for the period of equal length just before.

- ``first_response``: hours from a case's creation to the first answer the citizen got from staff:
  its first outgoing message of kind ``progress`` or ``result`` (a relayed answer, a status notice a
  staff action triggered, the final result).  Acknowledgements, the jobs' "still being handled"
  notes and a ``staff-reply`` event alone do not count: a ``#note`` or a refused reply reaches no
  citizen.  Cases without one yet are left out of the median and p90.
- ``resolution``: hours from creation to the *first* resolution: the earliest ``status`` event to
  ``resolved`` or ``closed`` (``case.resolved_at`` only holds the last one and is cleared on
  reopening), else ``case.resolved_at``.
- Hours are elapsed (calendar) hours, not working hours; percentiles interpolate linearly between
  the two closest ranks (PostgreSQL's ``percentile_cont``), rounded to 0.01 h.
- ``breaches``: cases whose first response (resolution) came after its due time, or has not come
  while the due time passed (for a waiting case: passed before it began to wait).
- ``reopened``: cases with a ``reopened`` event or a ``status`` event from resolved/closed to open.
- ``satisfaction``: cases with a satisfaction answer (``case.satisfaction.score``, the latest one),
  and their mean score, rounded to 0.01.

The case row holds all of it: the moments are noted on the case when its messages and events are
written (``store.records.note_answered``/``note_milestones``, revision 0006: ``first_answered_at``,
``first_resolved_at`` with the hours from creation to each, and ``reopened``), so the report reads
the case table alone, and only non-personal columns of it (created_at, kind, department, priority,
tags, due times, paused_at, resolved_at, the milestones, satisfaction.score): purging personal data
leaves the report as it was.

Everything is aggregated in the database through indexes made for it (models.py); the only rows
fetched are groups, distinct tag lists and the two values around each percentile's rank.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Text,
    TextClause,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine

from feedbackd.store.db import SQLITE_BEGIN
from feedbackd.store.models import SATISFACTION_SCORE
from feedbackd.store.records import CASES

if TYPE_CHECKING:
    from feedbackd.jobs.base import JobContext

log = logging.getLogger(__name__)

NO_DEPARTMENT = "-"
CHART_WEEKS = 8


@dataclass(frozen=True)
class Period:
    """``[start, end)``, aware; shown in the local zone ``zone``."""

    start: datetime
    end: datetime
    zone: tzinfo = UTC

    def before(self) -> Period:
        """The period of equal length that ends where this one starts."""
        return Period(self.start - (self.end - self.start), self.start, self.zone)

    def as_dict(self) -> dict[str, str]:
        return {"from": self.start.astimezone(self.zone).isoformat(),
                "to": self.end.astimezone(self.zone).isoformat()}


def since(now: datetime, length: timedelta, zone: tzinfo = UTC) -> Period:
    """``--since 7d``: the last ``length`` up to ``now``."""
    return Period(now - length, now, zone)


def between(first: date, last: date, zone: tzinfo) -> Period:
    """``--from DATE --to DATE``: whole local days, both included."""
    start = datetime.combine(first, time(), tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone)
    return Period(start, end, zone)


def week_before(day: date, zone: tzinfo) -> Period:
    """The seven whole local days before ``day`` (on a Monday: last Monday to Sunday)."""
    return between(day - timedelta(days=7), day - timedelta(days=1), zone)


# -- the figures ------------------------------------------------------------------------------------


def build(engine: Engine, period: Period, now: datetime) -> dict[str, Any]:
    """The report of ``period`` with ``previous``, in one read transaction."""
    with reading(engine) as conn:
        return with_previous(conn, period, now)


def with_previous(conn: Connection, period: Period, now: datetime) -> dict[str, Any]:
    report = figures(conn, period, now)
    report["previous"] = figures(conn, period.before(), now)
    return report


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read transaction that never holds SQLite's write lock, whatever the engine: the daemon's
    engine begins IMMEDIATE (store.db), which would keep intake and the outbox waiting for as long
    as the weekly report reads; DEFERRED reads the last commit (WAL) and lets writers go on."""
    with engine.connect() as conn:
        conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        with conn.begin():
            yield conn


def figures(conn: Connection, period: Period, now: datetime) -> dict[str, Any]:
    """The figures of one period (without ``previous``)."""
    bounds = {"start": period.start.astimezone(UTC), "end": period.end.astimezone(UTC)}
    plan = _sqlite_plan(conn, bounds) if conn.dialect.name == "sqlite" else None
    if not plan:  # the counts from ix_case_groups and ix_case_tags alone (see _PG_INDEX_ONLY)
        conn.execute(_PG_INDEX_ONLY)
    groups = _groups(conn, bounds, plan)
    tags = _tags(conn, bounds, plan)
    if not plan:
        conn.execute(_PG_ANY_SCAN)
    return {
        "period": period.as_dict(),
        "cases": sum(groups["kind"].values()),
        "by_kind": groups["kind"],
        "by_department": groups["department"],
        "by_priority": groups["priority"],
        "by_tag": tags,
        **_times(conn, bounds, now.astimezone(UTC), plan),
    }


# PostgreSQL's planner reads a year of cases for the groups and the tags by a sequential scan of the
# table (its cost model sees the table's pages in cache); an index-only scan of ix_case_groups or of
# ix_case_tags (revision 0007) reads a third of that: at a million cases 0.4-0.55 s each instead of
# 0.7-1.0 s (bench/bench_scale.py).  Switched off for those two statements of the read transaction.
_PG_INDEX_ONLY = text("SET LOCAL enable_seqscan = off")
_PG_ANY_SCAN = text("SET LOCAL enable_seqscan = on")


# SQLite's statements name the index that serves each (SQLAlchemy renders no hints for SQLite; the
# planner has no statistics).  Two plans (PostgreSQL's planner has statistics and chooses alike):
# - "walk": along the report's own indexes (models.py), each in the order its figure needs (groups,
#   tag lists, durations), skipping the cases outside the period: no sort, but every case is read;
# - "range": along ix_case_created_at over the period's cases alone, sorted for groups and ranks.
# A period holding under 1/RANGE_SHARE of the cases takes the range: at a million cases the walks
# for the "previous" of a year (33 cases on the bench) took 1.4 s; the range takes milliseconds.
RANGE_SHARE = 10
_IN_PERIOD = "created_at >= :start AND created_at < :end"
_PLAN_INDEX = {"walk": {"groups": "ix_case_groups", "tags": "ix_case_tags",
                        "first_response_hours": "ix_case_first_response_hours",
                        "resolution_hours": "ix_case_resolution_hours"},
               "range": {}}


def _sqlite(statement: str) -> TextClause:
    times = CASES.c.created_at.type
    return text(statement).bindparams(bindparam("start", type_=times), bindparam("end", type_=times))


def _statements(plan: str) -> dict[str, TextClause]:
    def by(what: str) -> str:
        return f'"case" INDEXED BY {_PLAN_INDEX[plan].get(what, "ix_case_created_at")}'

    out = {
        "groups": _sqlite(f"SELECT kind, department, priority, count(*) FROM {by('groups')} "
                          f"WHERE {_IN_PERIOD} GROUP BY kind, department, priority"),
        "tags": _sqlite(f"SELECT tags, count(*) FROM {by('tags')} WHERE {_IN_PERIOD} GROUP BY tags"),
    }
    for hours in ("first_response_hours", "resolution_hours"):
        for order in ("ASC", "DESC"):
            out[f"{hours} {order}"] = _sqlite(
                f"SELECT {hours} FROM {by(hours)} WHERE {_IN_PERIOD} AND {hours} IS NOT NULL "
                f"ORDER BY {hours} {order} LIMIT :take OFFSET :skip")
    return out


_SQLITE = {plan: _statements(plan) for plan in _PLAN_INDEX}
_SQLITE_SATISFACTION = _sqlite(f'SELECT count(*), avg({SATISFACTION_SCORE}) FROM "case" INDEXED BY '
                               f"ix_case_satisfaction WHERE {_IN_PERIOD} AND {SATISFACTION_SCORE} IS NOT NULL")
_SQLITE_CASES = text('SELECT max(id) FROM "case"')  # ids only grow: the number of cases (purge keeps the rows)
_SQLITE_SOME = _sqlite(f'SELECT count(*) FROM (SELECT 1 FROM "case" INDEXED BY ix_case_created_at '
                       f"WHERE {_IN_PERIOD} LIMIT :cap)")


def _sqlite_plan(conn: Connection, bounds: Mapping[str, datetime]) -> str:
    """``range`` when the period holds under 1/RANGE_SHARE of the cases (counted up to that, no further)."""
    cap = int(conn.execute(_SQLITE_CASES).scalar() or 0) // RANGE_SHARE
    found = int(conn.execute(_SQLITE_SOME, {**bounds, "cap": cap}).scalar() or 0)
    return "range" if found < cap else "walk"


def _in_period(bounds: Mapping[str, datetime]) -> ColumnElement[bool]:
    return and_(CASES.c.created_at >= bounds["start"], CASES.c.created_at < bounds["end"])


def _groups(conn: Connection, bounds: Mapping[str, datetime], plan: str | None) -> dict[str, dict[str, int]]:
    """Counts by kind, department and priority from one GROUP BY over the three (a few dozen rows)."""
    if plan:
        found = conn.execute(_SQLITE[plan]["groups"], dict(bounds))
    else:
        found = conn.execute(select(CASES.c.kind, CASES.c.department, CASES.c.priority, func.count())
                             .where(_in_period(bounds)).group_by(CASES.c.kind, CASES.c.department, CASES.c.priority))
    out: dict[str, dict[str, int]] = {"kind": {}, "department": {}, "priority": {}}
    for kind, dept, priority, count in found:
        for name, key in (("kind", kind), ("department", dept or NO_DEPARTMENT), ("priority", priority)):
            out[name][str(key)] = out[name].get(str(key), 0) + int(count)
    return {name: dict(sorted(counts.items())) for name, counts in out.items()}


def _tags(conn: Connection, bounds: Mapping[str, datetime], plan: str | None) -> dict[str, int]:
    """Cases per tag: cases per distinct tag list grouped in the database (on SQLite in index order),
    the few thousand lists unpacked here.  Unnesting every case's array in the database (json_each,
    json_array_elements_text) took longer than the rest of the report at a million cases."""
    if plan:
        found = conn.execute(_SQLITE[plan]["tags"], dict(bounds))
    else:
        tags = cast(CASES.c.tags, Text)  # json has no equality; its text is what was stored
        found = conn.execute(select(tags, func.count()).where(_in_period(bounds)).group_by(tags))
    counts: dict[str, int] = {}
    for listed, count in found:
        for tag in json.loads(listed) if isinstance(listed, str) else listed or ():
            counts[str(tag)] = counts.get(str(tag), 0) + int(count)
    return dict(sorted(counts.items()))


def _late(done: ColumnElement[Any], due: ColumnElement[Any], clock: ColumnElement[Any]) -> ColumnElement[int]:
    """1 when ``done`` came after ``due``, or has not come and ``clock`` is past it."""
    return case((and_(due.is_not(None), or_(done > due, and_(done.is_(None), clock > due))), 1), else_=0)


def _times(conn: Connection, bounds: Mapping[str, datetime], now: datetime, plan: str | None) -> dict[str, Any]:
    """Response and resolution times, breaches, reopened cases and satisfaction, from the case rows alone.

    The milestones are written on the case when they happen (revision 0006, ``store.records``);
    joining them from the message and event tables took 9.8 s (SQLite) and 4.6 s (PostgreSQL) for a
    year of 1,000,000 cases (bench/bench_scale.py).  One aggregate pass (on SQLite over the covering
    index ix_case_report, with the satisfaction answers from their partial index), then the two
    values around each percentile's rank from the duration's index.
    """
    c = CASES.c
    answered, resolved = c.first_answered_at, func.coalesce(c.first_resolved_at, c.resolved_at)
    clock = func.coalesce(c.paused_at, now)
    columns: list[ColumnElement[Any]] = [
        func.coalesce(func.sum(_late(answered, c.first_response_due, clock)), 0),
        func.coalesce(func.sum(_late(resolved, c.resolution_due, clock)), 0),
        func.coalesce(func.sum(case((c.reopened > 0, 1), else_=0)), 0),
        func.count(c.first_response_hours),
        func.count(c.resolution_hours),
    ]
    if plan:
        row = conn.execute(select(*columns).where(_in_period(bounds))).one()
        answers, mean = conn.execute(_SQLITE_SATISFACTION, dict(bounds)).one()
    else:
        score = c.satisfaction["score"].as_float()
        conn.execute(text("SET LOCAL jit = off"))  # compiling the plan took longer than running it
        row = conn.execute(select(*columns, func.count(score), func.avg(score)).where(_in_period(bounds))).one()
        answers, mean = row[5], row[6]
    spread = [*_percentiles(conn, c.first_response_hours, bounds, int(row[3]), plan),
              *_percentiles(conn, c.resolution_hours, bounds, int(row[4]), plan)]
    return {
        "first_response": {"median_hours": spread[0], "p90_hours": spread[1]},
        "resolution": {"median_hours": spread[2], "p90_hours": spread[3]},
        "breaches": {"first_response": int(row[0]), "resolution": int(row[1])},
        "reopened": int(row[2]),
        "satisfaction": {"answers": int(answers), "mean": _round(mean)},
    }


def _percentiles(conn: Connection, hours: Column[Any], bounds: Mapping[str, datetime], count: int,
                 plan: str | None) -> list[float | None]:
    """Median and p90 of the period's ``count`` durations in ``hours``, as percentile_cont interpolates.

    The one or two values around each rank are read from the column's index (``ix_case_<column>``:
    duration, created_at) with ``LIMIT OFFSET``, from whichever end is nearer: a walk along the index,
    no sort, memory flat, and for the p90 a tenth of the durations instead of nine tenths.  Sorting
    the year's durations (percentile_cont on PostgreSQL, window ranks on SQLite) took seconds."""
    out: list[float | None] = []
    for q in (0.5, 0.9):
        if not count:
            out.append(None)
            continue
        position = q * (count - 1)
        low = math.floor(position)
        high = min(low + 1, count - 1)
        descending = count - 1 - high < low
        skip = count - 1 - high if descending else low
        if plan:
            found = conn.execute(_SQLITE[plan][f"{hours.name} {'DESC' if descending else 'ASC'}"],
                                 {**bounds, "take": high - low + 1, "skip": skip})
        else:
            found = conn.execute(select(hours).where(_in_period(bounds), hours.is_not(None))
                                 .order_by(hours.desc() if descending else hours).limit(high - low + 1).offset(skip))
        values = sorted(float(v) for (v,) in found)
        out.append(_round(values[0] + (values[-1] - values[0]) * (position - low)))
    return out


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """``percentile_cont``: linear interpolation between the closest ranks of sorted values."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


# -- the weekly volumes for the chart ---------------------------------------------------------------


def weekly_volumes(conn: Connection, end: datetime, weeks: int = CHART_WEEKS) -> dict[str, list[int]]:
    """Cases per kind in each of the ``weeks`` weeks before ``end`` (oldest first), in one GROUP BY."""
    bounds = [(end - timedelta(weeks=weeks - i)).astimezone(UTC) for i in range(weeks + 1)]
    week = case(*((CASES.c.created_at < bound, literal(i)) for i, bound in enumerate(bounds[1:])),
                else_=literal(weeks))
    query = (select(week.label("week"), CASES.c.kind, func.count())
             .where(CASES.c.created_at >= bounds[0], CASES.c.created_at < bounds[-1])
             .group_by(week, CASES.c.kind))
    volumes: dict[str, list[int]] = {}
    for index, kind, count in conn.execute(query):
        volumes.setdefault(str(kind), [0] * weeks)[int(index)] = int(count)
    return dict(sorted(volumes.items()))


# -- output -----------------------------------------------------------------------------------------

_SECTIONS = ("by_kind", "by_department", "by_priority", "by_tag")
_NESTED = ("first_response", "resolution", "breaches", "satisfaction")


def rows(report: Mapping[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """The report as (section, key, value, previous value) rows: the CSV and the HTML table."""
    previous: Mapping[str, Any] = report.get("previous") or {}
    out: list[tuple[str, str, Any, Any]] = [
        ("period", "from", report["period"]["from"], previous.get("period", {}).get("from")),
        ("period", "to", report["period"]["to"], previous.get("period", {}).get("to")),
        ("cases", "total", report["cases"], previous.get("cases")),
    ]
    for section in _SECTIONS:
        keys = sorted({*report[section], *previous.get(section, {})})
        out += [(section, k, report[section].get(k, 0), previous.get(section, {}).get(k, 0)) for k in keys]
    for section in _NESTED[:2]:
        out += [(section, k, v, previous.get(section, {}).get(k)) for k, v in report[section].items()]
    out += [("breaches", k, v, previous.get("breaches", {}).get(k)) for k, v in report["breaches"].items()]
    out.append(("reopened", "total", report["reopened"], previous.get("reopened")))
    out += [("satisfaction", k, v, previous.get("satisfaction", {}).get(k))
            for k, v in report["satisfaction"].items()]
    return out


def to_csv(report: Mapping[str, Any]) -> str:
    """``section,key,value,previous``: one figure a line, empty for none."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("section", "key", "value", "previous"))
    for section, key, value, before in rows(report):
        writer.writerow((section, key, "" if value is None else value, "" if before is None else before))
    return buffer.getvalue()


def to_text(report: Mapping[str, Any]) -> str:
    """A terminal's view: one figure a line with the previous period's beside it."""
    lines = [f"Cases created {report['period']['from']} – {report['period']['to']}"]
    section = ""
    for name, key, value, before in rows(report)[2:]:
        if name != section:
            section = name
            lines.append(f"{name.replace('_', ' ')}:")
        lines.append(f"  {key:<24} {_show(value):>10}   (before: {_show(before)})")
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    return "-" if value is None else str(value)


# -- the weekly mail --------------------------------------------------------------------------------


def weekly_report(ctx: JobContext) -> dict[str, int]:
    """Mail the last seven local days' report, with an 8-week chart, to ``jobs.admins``."""
    from feedbackd.jobs.clock import local_zone  # the mail's parts load only when the job runs
    from feedbackd.jobs.report_mail import queue_report

    admins = ctx.settings.jobs.admins
    if not admins:
        return {"admins": 0}
    zone = local_zone(ctx.settings)
    period = week_before((ctx.scheduled_at or ctx.now).astimezone(zone).date(), zone)
    with reading(ctx.engine) as conn:  # the figures and the chart from one snapshot, not blocking intake
        report = with_previous(conn, period, ctx.now)
        volumes = weekly_volumes(conn, period.end)
    queued = queue_report(ctx, report, volumes, admins)
    log.info("weekly report for %s: %d cases, mailed to %d admins", period.as_dict()["from"][:10],
             report["cases"], queued)
    return {"cases": int(report["cases"]), "mailed": queued}
