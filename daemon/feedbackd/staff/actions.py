"""What staff commands do to a case: decided here (pure), written by ``commit``.

Mail commands (``#status waiting``, ``#转办 roads``) and the admin's shell (``feedbackd cases …``)
share this one decision, so both behave the same.  ``apply`` reads the case and the rules and
returns an ``Applied``; it touches nothing.  Any error (an unknown priority, an assignee who is
staff nowhere, a status change the case cannot make) refuses the whole reply: nothing is applied
and nothing reaches the citizen, so a typo never half-runs.

Statuses: new → open → in-progress ⇄ waiting → resolved → closed; ``#reopen`` brings a resolved
or closed case back to open.  A relayed answer without a status command makes an active case
in-progress; on a resolved or closed case it is relayed and the status stays (``#reopen`` first to
work on it again).

Waiting pauses deadlines: entering ``waiting`` stores ``paused_at``; leaving it (any other status,
by a command, the CLI or ``resume_deadlines`` when the citizen answers) moves both due times later
by the time spent waiting and clears ``paused_at``.  So the time left when the case began to wait
(working time, in the business calendar) is what is left when it stops: the citizen's time to
answer is not counted against staff.  While
a case waits its due times are not meaningful (jobs skip cases whose ``paused_at`` is set), and a
priority or department change in the meantime counts from ``paused_at``, the moment the clock
stopped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from feedbackd.jobs.calendar import BusinessCalendar
from feedbackd.routing import RuleSet
from feedbackd.staff.commands import Command
from feedbackd.store import records
from feedbackd.store.models import utcnow

STATUSES = ("new", "open", "in-progress", "waiting", "resolved", "closed")
ACTIVE = frozenset({"new", "open", "in-progress", "waiting"})
DONE = frozenset({"resolved", "closed"})
UNSATISFIED = 2  # a satisfaction score at or below this reopens the case
NOTE_LIMIT = 20_000  # characters of a note's text kept in its event
_DEADLINES = ("first_response_due", "resolution_due")
_STATUS_COMMANDS = frozenset({"status", "resolve", "close", "reopen"})
Events = list[tuple[str, dict[str, Any]]]


@dataclass
class Applied:
    """What a reply's commands do to its case; with ``errors`` nothing is applied and nothing relayed."""

    changes: dict[str, Any] = field(default_factory=dict)  # columns updated on the case
    events: Events = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line each, naming the command line
    status: tuple[str, str] | None = None  # (old, new) when the status changed
    relay: bool = False  # the reply's text goes to the citizen (False for #note and on errors)
    final: bool = False  # #resolve: the text is the final result (result mail + satisfaction question)
    moved_to: str | None = None  # department key after #move (its staff are notified)


def refused(errors: list[str]) -> Applied:
    return Applied(errors=errors)


def apply(case: Mapping[str, Any], commands: list[Command], ruleset: RuleSet, *, has_text: bool,
          now: datetime | None = None, note_text: str | None = None,
          calendar: BusinessCalendar | None = None) -> Applied:
    """Decide what ``commands`` (and a text, when ``has_text``) do to ``case``; touches nothing.

    ``note_text``: the text of a ``#note`` given without a stored message (the shell), kept in the
    note's event; a mail reply is stored as a message and needs no copy.  Deadlines count in
    ``calendar`` (``jobs.calendar.calendar_for(settings)``; plain calendar time without one).
    """
    now = now or utcnow()
    commands = [_canonical(c) for c in commands]
    errors = _conflicts(commands, has_text)
    plan = _Plan(case, ruleset, now, calendar or BusinessCalendar())
    for command in commands:
        problem = plan.run(command)
        if problem:
            errors.append(f"{command.line.strip()}: {problem}")
    if errors:
        return refused(errors)
    names = {c.name for c in commands}
    relay = has_text and "note" not in names
    if relay and not names & _STATUS_COMMANDS and case["status"] in ACTIVE:
        plan.set_status("in-progress")  # an answer to the citizen: the case is being worked on
    plan.finish(explicit_assignee="assign" in names)
    if "note" in names:
        plan.events.append(("note", {"text": note_text[:NOTE_LIMIT]} if note_text else {}))
    if relay:
        plan.events.append(("answered", {"final": "resolve" in names}))
    return Applied(changes=plan.changes(), events=plan.events, status=plan.status_change(), relay=relay,
                   final="resolve" in names, moved_to=plan.moved_to)


def _canonical(command: Command) -> Command:
    """``#status resolved`` is ``#resolve``, ``#status closed`` is ``#close``: one meaning, one path."""
    same = {"resolved": "resolve", "closed": "close"}.get(command.argument.strip().lower())
    if command.name == "status" and same:
        return Command(same, "", command.line)
    return command


def _conflicts(commands: list[Command], has_text: bool) -> list[str]:
    """Combinations that cannot mean one thing: refused before anything is looked at."""
    names = [c.name for c in commands]
    errors = [f"{c.line.strip()}: given more than once" for i, c in enumerate(commands) if c.name in names[:i]]
    changing = [c.line.strip() for c in commands if c.name in _STATUS_COMMANDS]
    if len(changing) > 1:
        errors.append(f"{', '.join(changing)}: more than one status change in one reply")
    if "note" in names and "resolve" in names:
        errors.append("#note, #resolve: a result cannot be an internal note")
    if "resolve" in names and not has_text:
        errors.append("#resolve: the final result for the citizen must follow the command lines")
    if not commands and not has_text:
        errors.append("the reply has neither text nor a command: nothing to do")
    return errors


class _Plan:
    """The case as the commands change it, one command at a time."""

    def __init__(self, case: Mapping[str, Any], ruleset: RuleSet, now: datetime,
                 calendar: BusinessCalendar) -> None:
        self.calendar = calendar
        self.before = case
        self.case = dict(case)
        self.ruleset = ruleset
        self.now = now
        self.events: Events = []
        self.moved_to: str | None = None

    def run(self, command: Command) -> str | None:
        """Apply one command; the problem with it, if any."""
        handler = getattr(self, f"_do_{command.name}", None)
        if handler is None:
            return "unknown command"
        problem: str | None = handler(command.argument.strip())
        return problem

    # -- the commands ------------------------------------------------------------------------------

    def _do_status(self, target: str) -> str | None:
        if target not in ("in-progress", "waiting", "open"):
            return "no such status (use in-progress, waiting, open, resolved or closed)"
        if self.case["status"] in DONE:
            return self._do_reopen("") if target == "open" else f"the case is {self.case['status']}: #reopen it first"
        self.set_status(target)
        return None

    def _do_resolve(self, _argument: str) -> str | None:
        if self.case["status"] == "closed":
            return "the case is closed: #reopen it first"
        self.set_status("resolved")
        self.case.update(resolved_at=self.now, awaiting_satisfaction=True)
        return None

    def _do_close(self, _argument: str) -> str | None:
        self.set_status("closed")
        return None

    def _do_reopen(self, _argument: str) -> str | None:
        if self.case["status"] not in DONE:
            return f"the case is {self.case['status']}, not resolved or closed"
        self.set_status("open")
        self.case.update(resolved_at=None, awaiting_satisfaction=False)
        return None

    def _do_note(self, _argument: str) -> str | None:
        return None  # the reply stays internal (see apply)

    def _do_priority(self, wanted: str) -> str | None:
        key = _find(wanted, {k: p.name for k, p in self.ruleset.priorities.items()})
        if key is None:
            return f"no such priority (one of: {', '.join(self.ruleset.priorities)})"
        if key != self.case["priority"]:
            self.events.append(("priority", {"from": self.case["priority"], "to": key}))
            self.case["priority"] = key
            self._tighten()
        return None

    def _do_move(self, wanted: str) -> str | None:
        key = _find(wanted, {k: d.name for k, d in self.ruleset.departments.items()})
        if key is None:
            return f"no such department (one of: {', '.join(self.ruleset.departments)})"
        if key != self.case["department"]:
            self.events.append(("moved", {"from": self.case["department"], "to": key}))
            self.case["department"] = key
            self.moved_to = key
            self._tighten()
        return None

    def _do_assign(self, address: str) -> str | None:
        address = address.lower()
        if address not in staff_addresses(self.ruleset):
            return "not staff or lead of any department"
        if address != self.case["assignee"]:
            self.events.append(("assigned", {"from": self.case["assignee"], "to": address}))
            self.case["assignee"] = address
        return None

    # -- effects -------------------------------------------------------------------------------------

    def set_status(self, target: str) -> None:
        current = self.case["status"]
        if target == current:
            return
        detail: dict[str, Any] = {"from": current, "to": target}
        if target == "waiting":
            self.case["paused_at"] = self.now
            detail["deadlines"] = "paused"
        elif current == "waiting":
            resumed = resume_deadlines(self.case, self.now, calendar=self.calendar)
            if resumed:
                detail["deadlines"] = "resumed"
            self.case.update(resumed)
        self.case["status"] = target
        self.events.append(("status", detail))

    def finish(self, *, explicit_assignee: bool) -> None:
        """A moved case keeps its assignee only if they work for the new department (or were just named)."""
        if self.moved_to is None or explicit_assignee or not self.case["assignee"]:
            return
        department = self.ruleset.departments[self.moved_to]
        if self.case["assignee"] not in {a.lower() for a in (*department.staff, department.lead)}:
            self.events.append(("assigned", {"from": self.case["assignee"], "to": None,
                                             "reason": f"moved to {self.moved_to}"}))
            self.case["assignee"] = None

    def _tighten(self) -> None:
        """A new priority or department brings its (shorter) deadlines forward; it never pushes one back.

        A waiting case's clock stopped at ``paused_at``: the new deadlines count from then.
        """
        case = self.case
        if case["priority"] not in self.ruleset.priorities or case.get("kind") not in self.ruleset.kinds:
            return
        due = self.ruleset.deadlines(case["priority"], case["department"], case["kind"])
        start = case.get("paused_at") or self.now
        for name, delta in (("first_response_due", due.first_response), ("resolution_due", due.resolution)):
            due_at = self.calendar.add(start, delta) if delta is not None else None
            if due_at is not None and (case.get(name) is None or due_at < case[name]):
                case[name] = due_at

    def changes(self) -> dict[str, Any]:
        changed = {k: v for k, v in self.case.items() if k not in self.before or self.before[k] != v}
        if changed:
            changed["updated_at"] = self.now
        return changed

    def status_change(self) -> tuple[str, str] | None:
        old, new = self.before["status"], self.case["status"]
        return (old, new) if old != new else None


def resume_deadlines(case: Mapping[str, Any], now: datetime | None = None, *,
                     calendar: BusinessCalendar | None = None) -> dict[str, Any]:
    """The changes that end a pause: due times moved later by the time spent waiting, ``paused_at`` cleared.

    The working time a deadline had left at ``paused_at`` is left again from ``now`` (in ``calendar``;
    plain time without one); one already passed when the pause began stays overdue by as much.
    For every way out of ``waiting`` (also a citizen's answer that reopens the case); {} when not paused.
    """
    paused: datetime | None = case.get("paused_at")
    if paused is None:
        return {}
    now = max(now or utcnow(), paused)
    calendar = calendar or BusinessCalendar()
    changes: dict[str, Any] = {}
    for name in _DEADLINES:
        due: datetime | None = case.get(name)
        if due is not None:
            changes[name] = (calendar.add_working(now, calendar.working_time(paused, due)) if due > paused
                             else due + (now - paused))
    changes["paused_at"] = None
    return changes


def answer_satisfaction(case: Mapping[str, Any], score: int, text: str, *, now: datetime | None = None) -> Applied:
    """The citizen's answer to the satisfaction question: stored; an unsatisfied one (≤ 2) reopens the case."""
    now = now or utcnow()
    changes: dict[str, Any] = {"satisfaction": {"score": score, "text": text}, "awaiting_satisfaction": False,
                               "updated_at": now}
    events: Events = [("satisfaction", {"score": score})]
    status = None
    if score <= UNSATISFIED and case["status"] in DONE:
        changes.update(status="open", resolved_at=None)
        events.append(("status", {"from": case["status"], "to": "open", "reason": "unsatisfied"}))
        status = (str(case["status"]), "open")
    return Applied(changes=changes, events=events, status=status)


def staff_addresses(ruleset: RuleSet) -> frozenset[str]:
    """Every staff and lead address of every department, lower-case."""
    return frozenset(a.lower() for d in ruleset.departments.values() for a in (*d.staff, d.lead))


def _find(wanted: str, names: Mapping[str, str]) -> str | None:
    """The key named by ``wanted``, case-insensitive: the key itself, the display name, or one language's
    part of a bilingual name ("紧急 Urgent": "紧急" or "Urgent"); None when nothing or several match."""
    folded = " ".join(wanted.split()).casefold()
    if folded in {key.casefold() for key in names}:
        return next(key for key in names if key.casefold() == folded)
    found = [key for key, name in names.items() if folded in _name_parts(name)]
    return found[0] if len(found) == 1 else None


_SCRIPT_CHANGE = re.compile(r"(?<=[^\x00-\x7f])\s+(?=[A-Za-z])|(?<=[A-Za-z])\s+(?=[^\x00-\x7f])")


def _name_parts(name: str) -> set[str]:
    name = " ".join(name.split()).casefold()
    return {name, *(part.strip() for part in _SCRIPT_CHANGE.split(name))}


def commit(conn: Connection, case_id: int, applied: Applied, actor: str) -> None:
    """Write what ``apply`` decided, the events by ``actor``; a refused reply writes nothing."""
    if applied.errors:
        return
    if applied.changes:
        records.update_case(conn, case_id, applied.changes)
    records.add_events(conn, case_id, applied.events, actor)
