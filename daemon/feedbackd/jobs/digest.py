"""The daily staff digest: each staff member's open cases, most urgent first.

A member's cases are those assigned to them and the unassigned ones of every department they are
staff of (as the staff loop notifies them).  Order: overdue first, then by priority rank, then by
the next due time; waiting cases last (their deadlines stand still).  The next due time is the
first-response deadline until staff answered the citizen, then the resolution deadline.  Members
with nothing open get no mail.  The runner claims the day's occurrence, so a digest goes once a day;
all digests of a day are queued in one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from feedbackd.jobs.notice_mail import NoticeMail
from feedbackd.jobs.notices import ANSWERS, RUNNING
from feedbackd.routing import RuleSet
from feedbackd.store.records import CASES, MESSAGES

if TYPE_CHECKING:
    from feedbackd.jobs.base import JobContext

LISTED = 100  # cases listed in one digest; the rest are counted
OPEN = (*RUNNING, "waiting")
_COLUMNS = (CASES.c.id, CASES.c.subject, CASES.c.status, CASES.c.kind, CASES.c.priority, CASES.c.department,
            CASES.c.assignee, CASES.c.first_response_due, CASES.c.resolution_due, CASES.c.created_at)


def digest(ctx: JobContext) -> dict[str, int]:
    """Queue one digest per staff member with open cases; returns how many went and how many cases they list."""
    if ctx.settings.staff_mail is None:  # mail to staff goes only when [staff] switches it on
        return {}
    ruleset = ctx.rules()
    answered = (select(MESSAGES.c.id).where(MESSAGES.c.case_id == CASES.c.id, MESSAGES.c.direction == "out",
                                            MESSAGES.c.kind.in_(ANSWERS)).exists().label("answered"))
    query = select(*_COLUMNS, answered).where(CASES.c.status.in_(OPEN), CASES.c.purged_at.is_(None))
    mine: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = defaultdict(list)
    mail = NoticeMail(ctx)
    with ctx.engine.connect() as conn:
        for case in conn.execute(query.execution_options(yield_per=1000)).mappings():
            entry = _entry(ctx, mail, ruleset, case)
            for member in _holders(ruleset, case):
                mine[member].append(entry)
    counts = {"digests": 0, "listed": 0}
    with ctx.engine.begin() as conn:
        for member in sorted(mine):
            entries = [e for _, e in sorted(mine[member], key=lambda pair: pair[0])]
            context = {"recipient": member, "date": ctx.now.astimezone(mail.zone).strftime("%Y-%m-%d"),
                       "count": len(entries), "overdue": sum(1 for e in entries if e["overdue"]),
                       "cases": entries[:LISTED], "more": max(0, len(entries) - LISTED)}
            counts["digests"] += mail.digest(conn, member, context)
            counts["listed"] += len(entries)
    return counts


def _holders(ruleset: RuleSet, case: Mapping[Any, Any]) -> list[str]:
    if case["assignee"]:
        return [str(case["assignee"]).lower()]
    department = ruleset.departments.get(str(case["department"])) if case["department"] else None
    return [a.lower() for a in department.staff] if department else []


def _entry(ctx: JobContext, mail: NoticeMail, ruleset: RuleSet,
           case: Mapping[Any, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The sort key and the template's view of one case."""
    deadline = "resolution" if case["answered"] or case["first_response_due"] is None else "first_response"
    due: datetime | None = case[f"{deadline}_due"]
    waiting = case["status"] == "waiting"
    overdue = not waiting and due is not None and due <= ctx.now
    info = mail.case_context(case)
    view = {**{k: info[k] for k in ("number", "token", "subject", "status", "priority_name", "department_name")},
            "due": mail.local(due), "deadline": deadline,
            "overdue": overdue, "waiting": waiting}
    latest = datetime.max.replace(tzinfo=ctx.now.tzinfo)
    key = (waiting, not overdue, ruleset.rank(str(case["priority"])), due or latest, case["id"])
    return key, view
