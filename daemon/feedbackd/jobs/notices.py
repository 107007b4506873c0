"""The pass jobs that watch deadlines: reminders, two-level escalation, progress notes, auto-close.

Each notice goes once: it inserts a ``case_notice`` row (unique case, kind, key) in the same
transaction as its outbox rows and its case event (actor "system"); a row that is already there
means another pass or daemon sent it, and the transaction stops.  The queries select only what is
due, by indexed conditions (status, a due time in a range, ``NOT EXISTS`` a notice by the unique
index), so a pass stays short however many cases the database holds.

- **Which deadline**: a case has two, first response and resolution.  The first-response deadline
  is met once staff answered the citizen (an outgoing ``progress`` or ``result`` mail); the
  resolution deadline once the case is resolved.  A waiting case (``paused_at``) has no running
  deadline; resolved, closed and purged cases none at all.
- **Notice key**: ``first_response:<priority>:<department>`` (or ``resolution:…``): one promise is
  one priority's deadline in one department.  A pause that moves the due time keeps the key (nobody
  hears twice of the same promise); a new priority or a move to another department is a new promise,
  so its staff and lead hear of it.
- **Reminder** when what is left of a deadline is at most ``1 - jobs.reminder_at`` of the time the
  rules allot it (``RuleSet.deadlines``), in working time when a calendar is configured; to the
  assignee, else the department's staff.
- **Escalation** level 1 to the department's lead (the admins when there is none) once the due time
  passed; level 2 to ``jobs.admins`` ``escalate_after`` (working time) after level 1 went.
- **Progress** ("still being handled", to the citizen) when an open, running case had no news for
  ``progress_every`` (calendar time): no answer or progress mail from staff, no earlier note.  Key
  ``progress@N``, N the number of whole periods since the case opened, so at most one per period.
  None while waiting, none for an opinion (反映) case without a resolution deadline.
- **Auto-close**: resolved ``auto_close_after`` ago and no citizen mail since → closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, exists, func, literal, or_, select, update
from sqlalchemy.engine import Connection, RowMapping

from feedbackd.jobs.notice_mail import NoticeMail
from feedbackd.routing import RuleSet
from feedbackd.store import records
from feedbackd.store.records import CASES, MESSAGES

if TYPE_CHECKING:
    from feedbackd.jobs.base import JobContext

log = logging.getLogger(__name__)

RUNNING = ("new", "open", "in-progress")  # active and not waiting: deadlines run
ANSWERS = ("progress", "result")  # outgoing mail by which staff answered the citizen
DEADLINES: tuple[tuple[str, str], ...] = (("first_response", "first_response_due"), ("resolution", "resolution_due"))
NOTICES = records.CASE_NOTICES


# -- once-only --------------------------------------------------------------------------------------


def claim_notice(conn: Connection, case_id: int, kind: str, key: str, at: datetime) -> bool:
    """Insert the notice's row unless it is there (then someone sent it: False)."""
    return records.insert_if_new(conn, NOTICES, {"case_id": case_id, "kind": kind, "key": key, "at": at})


def add_event(conn: Connection, case_id: int, kind: str, detail: dict[str, Any], at: datetime) -> None:
    """An event by "system" at the pass's time (the one clock), not the wall clock's (auto-close's
    status change is noted on the case as a resolution, like every event)."""
    records.add_events_by(conn, case_id, [(kind, detail, "system")], at)


def once(ctx: JobContext, case: RowMapping, kind: str, key: str, event: tuple[str, dict[str, Any]],
         send: Callable[[Connection], int]) -> int:
    """Claim, send and record one notice in one transaction: 1 when it went now, 0 when it had gone before."""
    try:
        with ctx.engine.begin() as conn:
            if not claim_notice(conn, int(case["id"]), kind, key, ctx.now):
                return 0
            queued = send(conn)
            add_event(conn, int(case["id"]), event[0], {**event[1], "mails": queued}, ctx.now)
    except Exception as exc:  # noqa: BLE001 - one case's bad template or data must not stop the others; retried next pass
        log.warning("%s for case %s not sent: %s", kind, case["id"], type(exc).__name__)
        return 0
    return 1


def notice_key(name: str, case: Mapping[Any, Any]) -> str:
    return f"{name}:{case['priority']}:{case['department'] or '-'}"


def _key_sql(name: str) -> ColumnElement[str]:
    """``notice_key`` of the case row, in SQL (``||`` on both databases)."""
    return literal(f"{name}:") + CASES.c.priority + literal(":") + func.coalesce(CASES.c.department, "-")


def _noticed(kind: str, name: str) -> ColumnElement[bool]:
    sent = NOTICES.alias(f"sent_{kind.replace('-', '_')}")  # apart from a joined notice row (level 2)
    return exists().where(sent.c.case_id == CASES.c.id, sent.c.kind == kind, sent.c.key == _key_sql(name))


def _answered() -> ColumnElement[bool]:
    return exists().where(MESSAGES.c.case_id == CASES.c.id, MESSAGES.c.direction == "out",
                          MESSAGES.c.kind.in_(ANSWERS))


def _pending(name: str, column: str) -> list[ColumnElement[bool]]:
    """The case's ``name`` deadline runs and is not met."""
    conditions: list[ColumnElement[bool]] = [
        CASES.c.status.in_(RUNNING), CASES.c.paused_at.is_(None), CASES.c.purged_at.is_(None),
        CASES.c[column].is_not(None)]
    if name == "first_response":
        conditions.append(~_answered())
    return conditions


def _rows(ctx: JobContext, query: Any) -> Sequence[RowMapping]:
    with ctx.engine.connect() as conn:
        return conn.execute(query).mappings().all()


# -- who hears --------------------------------------------------------------------------------------


def staff_of(ruleset: RuleSet, case: Mapping[Any, Any]) -> list[str]:
    """The assignee, else the department's staff."""
    if case.get("assignee"):
        return [str(case["assignee"])]
    department = ruleset.departments.get(str(case["department"])) if case.get("department") else None
    return list(department.staff) if department else []


def lead_of(ctx: JobContext, ruleset: RuleSet, case: Mapping[Any, Any]) -> list[str]:
    department = ruleset.departments.get(str(case["department"])) if case.get("department") else None
    return [department.lead] if department else list(ctx.settings.jobs.admins)


# -- how long a deadline is -------------------------------------------------------------------------


def allotted(ctx: JobContext, ruleset: RuleSet, case: Mapping[Any, Any], name: str, column: str) -> timedelta:
    """The working time the rules give this deadline (their "1d" is one working day, as ``calendar.add`` counts
    it, not 24 working hours); for a priority or kind they no longer know, the time from opening to the due time."""
    try:
        found: timedelta | None = getattr(ruleset.deadlines(case["priority"], case["department"], case["kind"]),
                                          name)
    except KeyError:
        found = None
    if found is not None:
        return ctx.calendar.working_amount(found)
    return ctx.calendar.working_time(case["created_at"], case[column])


def longest(ruleset: RuleSet, name: str) -> timedelta:
    """The longest ``name`` deadline any priority, department and kind can get (the reminder horizon)."""
    found = [getattr(ruleset.deadlines(p, d, k), name) for p in ruleset.priorities
             for d in (None, *ruleset.departments) for k in ruleset.kinds]
    return max((f for f in found if f is not None), default=timedelta(0))


# -- the jobs ---------------------------------------------------------------------------------------


def reminders(ctx: JobContext) -> dict[str, int]:
    """Remind the assignee or the department of each deadline at ``reminder_at`` of it."""
    if ctx.settings.staff_mail is None:  # mail to staff goes only when [staff] switches it on
        return {}
    ruleset, mail = ctx.rules(), NoticeMail(ctx)
    share = 1 - ctx.settings.jobs.reminder_at
    sent = 0
    for name, column in DEADLINES:
        horizon = ctx.calendar.add(ctx.now, longest(ruleset, name) * share)
        query = (select(CASES).where(*_pending(name, column), CASES.c[column] > ctx.now,
                                     CASES.c[column] <= horizon, ~_noticed("reminder", name))
                 .order_by(CASES.c[column]))
        for case in _rows(ctx, query):
            if ctx.calendar.working_time(ctx.now, case[column]) > allotted(ctx, ruleset, case, name, column) * share:
                continue
            sent += _staff_notice(ctx, mail, case, "reminder", name, column, staff_of(ruleset, case),
                                  "staff-reminder", {})
    return {"reminders": sent}


def escalations(ctx: JobContext) -> dict[str, int]:
    """Level 1 to the lead when a deadline passed; level 2 to the admins ``escalate_after`` later."""
    if ctx.settings.staff_mail is None:  # mail to staff goes only when [staff] switches it on
        return {}
    ruleset, mail = ctx.rules(), NoticeMail(ctx)
    counts = {"escalations-1": 0, "escalations-2": 0}
    for name, column in DEADLINES:
        query = (select(CASES).where(*_pending(name, column), CASES.c[column] <= ctx.now,
                                     ~_noticed("escalation-1", name)).order_by(CASES.c[column]))
        for case in _rows(ctx, query):
            counts["escalations-1"] += _staff_notice(ctx, mail, case, "escalation-1", name, column,
                                                     lead_of(ctx, ruleset, case), "escalation", {"level": 1})
        if ctx.settings.jobs.admins:
            counts["escalations-2"] += _second_level(ctx, mail, name, column)
    return counts


def _second_level(ctx: JobContext, mail: NoticeMail, name: str, column: str) -> int:
    after = ctx.settings.jobs.escalate_after
    first = and_(NOTICES.c.case_id == CASES.c.id, NOTICES.c.kind == "escalation-1", NOTICES.c.key == _key_sql(name))
    # Working time is never longer than wall time: the wall-time bounds select a superset, checked below.
    query = (select(CASES, NOTICES.c.at.label("escalated_at")).join(NOTICES, first)
             .where(*_pending(name, column), CASES.c[column] <= ctx.now - after, NOTICES.c.at <= ctx.now - after,
                    ~_noticed("escalation-2", name)).order_by(CASES.c[column]))
    sent = 0
    for case in _rows(ctx, query):
        if ctx.calendar.add(case["escalated_at"], after) > ctx.now:
            continue
        sent += _staff_notice(ctx, mail, case, "escalation-2", name, column, list(ctx.settings.jobs.admins),
                              "escalation", {"level": 2, "escalated_at": mail.local(case["escalated_at"])})
    return sent


def _staff_notice(ctx: JobContext, mail: NoticeMail, case: RowMapping, kind: str, name: str, column: str,
                  recipients: list[str], template: str, extra: dict[str, Any]) -> int:
    due = case[column]
    context = {"deadline": name, "due": mail.local(due), "overdue": due <= ctx.now,
               "left": _hours(ctx.calendar.working_time(ctx.now, due)),
               "late": _hours(ctx.calendar.working_time(due, ctx.now)), **extra}
    detail = {"deadline": name, "due": due.isoformat(), "to": recipients[:20]}
    if "level" in extra:
        detail["level"] = extra["level"]
    event = "reminder" if kind == "reminder" else "escalation"
    return once(ctx, case, kind, notice_key(name, case), (event, detail),
                lambda conn: mail.to_staff(conn, case, template, recipients, context))


def _hours(value: timedelta) -> float:
    return round(value.total_seconds() / 3600, 1)


def progress(ctx: JobContext) -> dict[str, int]:
    """"Still being handled" to the citizen of each running case without news for ``progress_every``."""
    every = ctx.settings.jobs.progress_every
    since = ctx.now - every
    news = exists().where(MESSAGES.c.case_id == CASES.c.id, MESSAGES.c.direction == "out",
                          MESSAGES.c.kind.in_(ANSWERS), MESSAGES.c.date > since)
    noted = exists().where(NOTICES.c.case_id == CASES.c.id, NOTICES.c.kind == "progress", NOTICES.c.at > since)
    query = (select(CASES).where(CASES.c.status.in_(RUNNING), CASES.c.paused_at.is_(None),
                                 CASES.c.purged_at.is_(None), CASES.c.created_at <= since,
                                 or_(CASES.c.kind != "opinion", CASES.c.resolution_due.is_not(None)),
                                 ~news, ~noted).order_by(CASES.c.created_at))
    mail = NoticeMail(ctx)
    sent = 0
    for case in _rows(ctx, query):
        period = (ctx.now - case["created_at"]) // every
        sent += once(ctx, case, "progress", f"progress@{period}", ("still-handling", {"period": period}),
                     _still_handling(mail, case))
    return {"progress": sent}


def _still_handling(mail: NoticeMail, case: RowMapping) -> Callable[[Connection], int]:
    def send(conn: Connection) -> int:
        return mail.still_handling(conn, case, _last_from_requester(conn, case))
    return send


def _last_from_requester(conn: Connection, case: Mapping[Any, Any]) -> str | None:
    row = conn.execute(select(MESSAGES.c.message_id).where(
        MESSAGES.c.case_id == case["id"], MESSAGES.c.direction == "in", MESSAGES.c.from_addr == case["requester"],
        MESSAGES.c.message_id.is_not(None)).order_by(MESSAGES.c.id.desc()).limit(1)).first()
    return str(row[0]) if row else None


def auto_close(ctx: JobContext) -> dict[str, int]:
    """Close resolved cases the citizen has not written to for ``auto_close_after``."""
    since = ctx.now - ctx.settings.jobs.auto_close_after
    replied = exists().where(MESSAGES.c.case_id == CASES.c.id, MESSAGES.c.direction == "in",
                             MESSAGES.c.kind == "mail", MESSAGES.c.received_at > since)
    resolved_long_ago = or_(CASES.c.resolved_at <= since,
                            and_(CASES.c.resolved_at.is_(None), CASES.c.updated_at <= since))
    query = select(CASES.c.id).where(CASES.c.status == "resolved", CASES.c.purged_at.is_(None),
                                     resolved_long_ago, ~replied).order_by(CASES.c.id)
    closed = 0
    for row in _rows(ctx, query):
        with ctx.engine.begin() as conn:
            done = conn.execute(update(CASES).where(CASES.c.id == row["id"], CASES.c.status == "resolved")
                                .values(status="closed", closed_at=ctx.now, updated_at=ctx.now))
            if done.rowcount == 1:
                add_event(conn, int(row["id"]), "status",
                          {"from": "resolved", "to": "closed", "reason": "auto-close"}, ctx.now)
                closed += 1
    return {"closed": closed}
