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

Only non-personal columns are read (case: id, created_at, kind, department, priority, tags, due
times, paused_at, resolved_at, satisfaction.score; message: case_id, direction, kind, received_at;
case_event: case_id, kind, at, detail.from/to), so purging personal data leaves the report as it was.

Everything is aggregated in the database; the only rows fetched are groups and, on SQLite (which
has no ``percentile_cont``), the sorted durations column.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Float, Integer, and_, case, cast, func, literal, or_, select, text, true
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.selectable import CTE, Subquery

from feedbackd.store.records import CASES, EVENTS, MESSAGES

if TYPE_CHECKING:
    from feedbackd.jobs.base import JobContext

log = logging.getLogger(__name__)

ANSWER_KINDS = ("progress", "result")  # outgoing message kinds that answer the citizen
DONE = ("resolved", "closed")
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
    with engine.connect() as conn:
        report = figures(conn, period, now)
        report["previous"] = figures(conn, period.before(), now)
    return report


def figures(conn: Connection, period: Period, now: datetime) -> dict[str, Any]:
    """The figures of one period (without ``previous``)."""
    start, end = period.start.astimezone(UTC), period.end.astimezone(UTC)
    in_period = and_(CASES.c.created_at >= start, CASES.c.created_at < end)
    groups = _groups(conn, in_period)
    return {
        "period": period.as_dict(),
        "cases": sum(groups["kind"].values()),
        "by_kind": groups["kind"],
        "by_department": groups["department"],
        "by_priority": groups["priority"],
        "by_tag": _tags(conn, in_period),
        **_times(conn, in_period, now.astimezone(UTC)),
    }


def _groups(conn: Connection, in_period: ColumnElement[bool]) -> dict[str, dict[str, int]]:
    """Counts by kind, department and priority from one GROUP BY over the three (a few dozen rows)."""
    department = func.coalesce(CASES.c.department, NO_DEPARTMENT)
    query = (select(CASES.c.kind, department, CASES.c.priority, func.count())
             .where(in_period).group_by(CASES.c.kind, department, CASES.c.priority))
    out: dict[str, dict[str, int]] = {"kind": {}, "department": {}, "priority": {}}
    for kind, dept, priority, count in conn.execute(query):
        for name, key in (("kind", kind), ("department", dept), ("priority", priority)):
            out[name][str(key)] = out[name].get(str(key), 0) + int(count)
    return {name: dict(sorted(counts.items())) for name, counts in out.items()}


def _tags(conn: Connection, in_period: ColumnElement[bool]) -> dict[str, int]:
    """Cases per tag: the JSON array unnested in the database."""
    if conn.dialect.name == "postgresql":  # a set-returning function, named with its column
        tag = func.json_array_elements_text(CASES.c.tags).table_valued("value").render_derived()
    else:  # SQLite's table-valued json_each has a "value" column of its own
        tag = func.json_each(CASES.c.tags).table_valued("value")
    query = (select(tag.c.value, func.count()).select_from(CASES).join(tag, true())
             .where(in_period).group_by(tag.c.value).order_by(tag.c.value))
    return {str(value): int(count) for value, count in conn.execute(query)}


def _milestones(in_period: ColumnElement[bool], now: datetime) -> CTE:
    """Per case of the period: when it was first answered and first resolved, and whether it reopened.

    Joined from three grouped subqueries over the period's cases, not correlated per case: at a
    million cases, one grouped pass over messages and one over events beat a million index probes
    each (bench/bench_scale.py, 1,000,000 cases on PostgreSQL: 5.9 s → 4 s; on SQLite 28 s → 9 s).
    """
    c, m, e = CASES, MESSAGES, EVENTS
    cohort = select(c.c.id).where(in_period)
    answered = (select(m.c.case_id, func.min(m.c.received_at).label("at"))
                .where(m.c.case_id.in_(cohort), m.c.direction == "out", m.c.kind.in_(ANSWER_KINDS))
                .group_by(m.c.case_id).subquery("answered"))
    status_to = e.c.detail["to"].as_string()
    resolved_event = (select(e.c.case_id, func.min(e.c.at).label("at"))
                      .where(e.c.case_id.in_(cohort), e.c.kind == "status", status_to.in_(DONE))
                      .group_by(e.c.case_id).subquery("resolved_event"))
    reopened = (select(e.c.case_id).distinct()
                .where(e.c.case_id.in_(cohort))
                .where(or_(e.c.kind == "reopened",
                           and_(e.c.kind == "status", status_to == "open",
                                e.c.detail["from"].as_string().in_(DONE))))
                .subquery("reopened"))
    joined = (c.outerjoin(answered, answered.c.case_id == c.c.id)
              .outerjoin(resolved_event, resolved_event.c.case_id == c.c.id)
              .outerjoin(reopened, reopened.c.case_id == c.c.id))
    return (select(c.c.id, c.c.created_at, c.c.first_response_due, c.c.resolution_due,
                   func.coalesce(c.c.paused_at, now).label("clock"),
                   answered.c.at.label("answered_at"),
                   func.coalesce(resolved_event.c.at, c.c.resolved_at).label("resolved_at"),
                   case((reopened.c.case_id.is_not(None), 1), else_=0).label("reopened"),
                   c.c.satisfaction["score"].as_float().label("score"))
            .select_from(joined).where(in_period).cte("milestones").prefix_with("MATERIALIZED"))


def _late(done: ColumnElement[Any], due: ColumnElement[Any], clock: ColumnElement[Any]) -> ColumnElement[int]:
    """1 when ``done`` came after ``due``, or has not come and ``clock`` is past it."""
    return case((and_(due.is_not(None), or_(done > due, and_(done.is_(None), clock > due))), 1), else_=0)


def _hours(conn: Connection, start: ColumnElement[Any], end: ColumnElement[Any]) -> ColumnElement[Any]:
    if conn.dialect.name == "postgresql":
        return cast(func.extract("epoch", end - start), Float) / 3600.0
    return (func.julianday(end) - func.julianday(start)) * 24.0


def _times(conn: Connection, in_period: ColumnElement[bool], now: datetime) -> dict[str, Any]:
    """Response and resolution times, breaches, reopened cases and satisfaction."""
    ms = _milestones(in_period, now)
    first = _hours(conn, ms.c.created_at, ms.c.answered_at)
    resolved = _hours(conn, ms.c.created_at, ms.c.resolved_at)
    columns: list[ColumnElement[Any]] = [
        func.coalesce(func.sum(_late(ms.c.answered_at, ms.c.first_response_due, ms.c.clock)), 0),
        func.coalesce(func.sum(_late(ms.c.resolved_at, ms.c.resolution_due, ms.c.clock)), 0),
        func.coalesce(func.sum(ms.c.reopened), 0),
        func.count(ms.c.score),
        func.avg(ms.c.score),
    ]
    postgres = conn.dialect.name == "postgresql"
    query = select(*columns).select_from(ms)
    if postgres:  # the percentiles in the same pass
        query = query.add_columns(*(func.percentile_cont(q).within_group(hours)
                                    for hours in (first, resolved) for q in (0.5, 0.9)))
        conn.execute(text("SET LOCAL jit = off"))  # compiling this plan took longer than running it
    else:  # the ranks around each percentile, in the same statement (the milestones are computed once)
        ranks = [_sqlite_ranks(ms, first, "first"), _sqlite_ranks(ms, resolved, "resolved")]
        query = query.join(ranks[0], true()).join(ranks[1], true()).add_columns(
            *(c for r in ranks for c in r.c))
    row = conn.execute(query).one()
    if postgres:
        spread = [_round(v) for v in row[5:9]]
    else:
        spread = [_interpolate(row[5 + 5 * i:10 + 5 * i], q) for i in (0, 1) for q in (0.5, 0.9)]
    return {
        "first_response": {"median_hours": spread[0], "p90_hours": spread[1]},
        "resolution": {"median_hours": spread[2], "p90_hours": spread[3]},
        "breaches": {"first_response": int(row[0]), "resolution": int(row[1])},
        "reopened": int(row[2]),
        "satisfaction": {"answers": int(row[3]), "mean": _round(row[4])},
    }


def _sqlite_ranks(ms: CTE, hours: ColumnElement[Any], name: str) -> Subquery:
    """One row: the values at the two ranks around the median and the p90, and how many there are.

    SQLite has no percentile_cont; a window over the sorted durations finds them in the database,
    so the report's memory does not grow with the number of cases."""
    ranked = (select(hours.label("v"), (func.row_number().over(order_by=hours) - 1).label("r"),
                     func.count().over().label("n"))
              .select_from(ms).where(hours.is_not(None)).subquery(f"{name}_ranked"))
    around: list[ColumnElement[Any]] = []
    for q in (0.5, 0.9):
        low = cast(cast(ranked.c.n - 1, Float) * q, Integer)
        around += [func.max(case((ranked.c.r == low, ranked.c.v))), func.max(case((ranked.c.r == low + 1, ranked.c.v)))]
    return select(*around, func.max(ranked.c.n)).subquery(f"{name}_ranks")


def _interpolate(ranks: Sequence[Any], q: float) -> float | None:
    """``percentile_cont`` from (median low, high, p90 low, high, count) of ``_sqlite_ranks``."""
    count = ranks[4]
    if not count:
        return None
    position = q * (int(count) - 1)
    low, high = ranks[0:2] if q == 0.5 else ranks[2:4]
    high = low if high is None else high
    return _round(float(low) + (float(high) - float(low)) * (position - math.floor(position)))


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
    report = build(ctx.engine, period, ctx.now)
    with ctx.engine.connect() as conn:
        volumes = weekly_volumes(conn, period.end)
    queued = queue_report(ctx, report, volumes, admins)
    log.info("weekly report for %s: %d cases, mailed to %d admins", period.as_dict()["from"][:10],
             report["cases"], queued)
    return {"cases": int(report["cases"]), "mailed": queued}
