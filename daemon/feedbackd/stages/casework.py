"""Casework: thread the recorded message to a case, then open, join or note it, and route.

Deciding stays apart from doing: threading (``cases.find_thread``) and routing
(``RuleSet.evaluate``) only decide; the writes happen here.  Whether and how the sender is
answered is left to the answer stage: casework only says what to answer with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from feedbackd import cases
from feedbackd.cases import CaseNumbers, Thread
from feedbackd.config import Settings
from feedbackd.jobs.calendar import BusinessCalendar, calendar_for
from feedbackd.mail import guard
from feedbackd.mail.quotes import strip_reply
from feedbackd.routing import Decision, RuleSet
from feedbackd.staff import actions
from feedbackd.staff.satisfaction import parse_satisfaction
from feedbackd.stages import record
from feedbackd.stages.answer import local_time
from feedbackd.stages.state import AnswerRequest, MessageState, Outcome
from feedbackd.store import records
from feedbackd.store.files import FileStore
from feedbackd.store.models import utcnow

if TYPE_CHECKING:
    from feedbackd.routing.learned import LearnedRouter
    from feedbackd.staff.loop import StaffLoop

MAX_COPIED = 20  # people the citizen copied who become participants


@dataclass
class Filed:
    """Where casework put the message, and what the sender should be answered (if anything)."""

    outcome: Outcome
    case_id: int | None
    answer: AnswerRequest | None = None
    notice: str | None = None  # what to tell the case's staff: new-case, follow-up, reopened, unsatisfied
    case: dict[str, Any] | None = None  # the case as it is after this message (for the notice)
    rules: list[str] = field(default_factory=list)  # the rules that routed a new case (for the notice)
    actor: str = "citizen"  # who the case's events of this message are by


class Casework:
    def __init__(self, settings: Settings, rules: Callable[[], RuleSet], files: FileStore,
                 numbers: CaseNumbers, staff: StaffLoop | None = None) -> None:
        self.settings = settings
        self.rules = rules
        self.files = files
        self.numbers = numbers
        self.staff = staff  # None: staff mail is off
        self.own = settings.mailbox.own_addresses
        self.learned: LearnedRouter | None = None
        if settings.routing.learned != "off":  # numpy and the model only when asked for
            from feedbackd.routing.learned import LearnedRouter

            self.learned = LearnedRouter(settings)

    def file(self, conn: Connection, state: MessageState, *, write_events: bool = True) -> Filed:
        """Store the message on the case it belongs to (a new one if none), and its events unless the
        caller writes them later together with the answer's (one insert fewer per message)."""
        if self.staff is None:
            return self._file(conn, state, write_events)
        before = self.staff.queued
        filed = self._file(conn, state, write_events)
        filed.outcome.queued += self.staff.queued - before  # staff notices and relayed answers wake the sender
        return filed

    def _file(self, conn: Connection, state: MessageState, write_events: bool) -> Filed:
        if self.staff is not None:
            staff_reply = self._staff_reply(conn, state)
            if staff_reply is not None:
                return staff_reply
        automatic = state.verdict.kind in ("auto-reply", "bounce")
        quoted = guard.quoted_message_ids(state.raw) if state.verdict.kind != "mail" else None
        thread = cases.find_thread(conn, state.msg, self.numbers, quoted, automatic=automatic)
        if thread.note:
            detail: dict[str, Any] = {"note": thread.note}
            if thread.referenced is not None:
                detail["references_case"] = self.numbers.format(thread.referenced)
            state.events.append(("threading", detail))
        attachments = record.keep_attachments(self.files, state.msg)
        if automatic:
            filed = self._note_automatic(conn, state, thread)
        elif thread.case is None:
            filed = self._open(conn, state)
        elif thread.how == "copy":
            filed = self._note_copy(conn, state, thread)
        else:
            filed = self._join(conn, state, thread)
        kind = "copy" if thread.how == "copy" and not automatic else (
            "mail" if state.verdict.kind in ("mail", "bulk") else state.verdict.kind)
        if automatic:
            filed.actor = "system"
        row = record.store_message(conn, state, filed.case_id, kind, attachments)
        if write_events and filed.case_id is not None:
            records.add_events(conn, filed.case_id, state.events, actor=filed.actor)
        if self.staff is not None and filed.notice and filed.case is not None:
            self.staff.notify(conn, filed.case, filed.notice, text=state.msg.text, subject=state.msg.subject,
                              message_row=row, rules=filed.rules)
        return filed

    def _staff_reply(self, conn: Connection, state: MessageState) -> Filed | None:
        """A verified staff reply, applied; a failed claim is noted on the case it names and goes on as citizen mail."""
        assert self.staff is not None
        claim = self.staff.claim(state)
        if claim is None:
            return None
        sender = state.msg.sender.addr if state.msg.sender else ""
        if claim.staff:
            attachments = record.keep_attachments(self.files, state.msg)

            def store(case_id: int, kind: str) -> None:
                record.store_message(conn, state, case_id, kind, attachments)

            reply = self.staff.reply(conn, state, claim, store)
            if reply is not None:
                return Filed(reply.outcome, reply.case_id, actor=sender)
            return None
        named = self.numbers.parse(claim.case_number or "")
        if named and records.case_by_id(conn, named) is not None:
            records.add_events(conn, named, [("staff-claim-failed", {"from": sender, "reason": claim.reason})])
        return None

    def _open(self, conn: Connection, state: MessageState, linked: int | None = None) -> Filed:
        msg = state.msg
        ruleset = self.rules()
        decision = ruleset.evaluate(msg)
        suggestion = None
        if self.learned is not None:  # [routing] learned: the model's suggestion, and in route mode its say
            decision, suggestion = self.learned.route(decision, msg, ruleset)
        routing = decision.to_dict()
        if suggestion is not None:
            routing["learned"] = suggestion
        now = utcnow()
        calendar = calendar_for(self.settings)
        sender = msg.sender
        case: dict[str, Any] = {
            "status": "new",
            "kind": decision.kind,
            "subject": msg.subject[:500],
            "requester": sender.addr if sender else "",
            "requester_name": sender.name[:200] if sender else "",
            "language": self.language(msg.language),
            "priority": decision.priority,
            "department": decision.department,
            "assignee": decision.assignee,
            "tags": list(decision.tags),
            "routing": routing,
            "first_response_due": calendar.add(now, decision.first_response_due) if decision.first_response_due
            else None,
            "resolution_due": calendar.add(now, decision.resolution_due) if decision.resolution_due else None,
            "message_count": 1,
            "created_at": now,
            "updated_at": now,
        }
        if linked is not None:
            case["linked_case"] = linked
        case_id = records.insert_case(conn, case)
        number = self.numbers.format(case_id)
        # People the citizen copied take part in the case: they may follow up on it.
        copied = [a.addr for a in msg.cc if a.addr not in self.own and a.addr != case["requester"]]
        records.add_participants(conn, case_id, copied[:MAX_COPIED], "cc")
        opened: dict[str, Any] = {"verdict": state.verdict.kind}
        if linked is not None:
            opened["continues"] = self.numbers.format(linked)
        state.events.append(("opened", opened))
        state.events.append(("routed", {"rules": decision.matched}))  # the full decision is in case.routing
        answer = AnswerRequest(
            purpose="acknowledgement", template=decision.template, language=case["language"], msg=msg,
            verdict=state.verdict, context=self._case_context(case, number, decision, ruleset),
            case_id=case_id, case_number=number,
            refusal="a rule suppresses the acknowledgement" if decision.suppress_ack else None)
        return Filed(Outcome("new-case", number), case_id, answer, notice="new-case", case={**case, "id": case_id},
                     rules=list(decision.matched))

    def _join(self, conn: Connection, state: MessageState, thread: Thread) -> Filed:
        assert thread.case is not None
        case = dict(thread.case)
        changes: dict[str, Any] = {"message_count": case["message_count"] + 1, "updated_at": utcnow()}
        notice = "follow-up"
        if case["status"] in ("resolved", "closed"):
            answered = self._satisfaction(state, case, changes)
            if answered is not None:
                notice = answered
            elif self._too_late(case):
                return self._open(conn, state, linked=case["id"])
            else:
                state.events.append(("reopened", {"from": case["status"]}))
                changes.update(status="open", awaiting_satisfaction=False)
                notice = "reopened"
        elif case["status"] == "waiting":  # the citizen sent what was asked for: the clock runs again
            state.events.append(("status", {"from": "waiting", "to": "open", "reason": "the citizen replied"}))
            changes.update(status="open", **actions.resume_deadlines(case, calendar=calendar_for(self.settings)))
        ruleset = self.rules()
        raised = ruleset.evaluate_followup(state.msg, case["priority"])
        if raised is not None and raised.priority != case["priority"]:
            state.events.append(("priority-raised", {"from": case["priority"], "to": raised.priority,
                                                     "rules": raised.to_dict().get("hits", [])}))
            changes["priority"] = raised.priority
            changes["tags"] = list(dict.fromkeys([*case["tags"], *raised.tags]))
            changes.update(tighter_deadlines({**case, **changes}, ruleset, calendar_for(self.settings)))
        state.events.append(("message", {"threaded_by": thread.how}))
        records.update_case(conn, case["id"], changes)
        return Filed(Outcome("joined", self.numbers.format(case["id"]), detail=f"by {thread.how}"), case["id"],
                     notice=notice or None, case={**case, **changes})

    def _satisfaction(self, state: MessageState, case: dict[str, Any], changes: dict[str, Any]) -> str | None:
        """The citizen's answer to the result's satisfaction question; returns the notice ("" for none)."""
        sender = state.msg.sender.addr if state.msg.sender else ""
        if not case.get("awaiting_satisfaction") or sender != case["requester"]:  # the requester's answer only
            return None
        answer = parse_satisfaction(strip_reply(state.msg.text, state.msg.html))
        if answer is None:
            return None
        score, text = answer
        changes.update(satisfaction={"score": score, "text": text[:1000]}, awaiting_satisfaction=False)
        state.events.append(("satisfaction", {"score": score}))
        if score > 2:
            return ""
        state.events.append(("reopened", {"from": case["status"], "reason": "the citizen is not satisfied"}))
        changes.update(status="open")
        return "unsatisfied"

    def _too_late(self, case: dict[str, Any]) -> bool:
        """Resolved longer ago than cases.reopen_days: a reply opens a new case linked to this one."""
        since = case.get("resolved_at") or case.get("updated_at")
        if since is None:
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return bool(utcnow() - since > timedelta(days=self.settings.cases.reopen_days))

    def _note_copy(self, conn: Connection, state: MessageState, thread: Thread) -> Filed:
        """Other bytes under a Message-ID already on the case (e.g. delivered via an alias too): kept, not acted on."""
        assert thread.case is not None
        case = thread.case
        records.update_case(conn, case["id"], {"message_count": case["message_count"] + 1, "updated_at": utcnow()})
        state.events.append(("copy", {"message_id": (state.msg.message_id or "")[:250]}))
        number = self.numbers.format(case["id"])
        return Filed(Outcome("copy", number, detail="another copy of a message on the case"), case["id"])

    def _note_automatic(self, conn: Connection, state: MessageState, thread: Thread) -> Filed:
        """Bounces and auto-replies: noted on the case they answer, never a new case."""
        reason = state.verdict.reason or state.verdict.kind
        if thread.case is None:
            return Filed(Outcome("recorded", None, detail=f"{state.verdict.kind} answering no known case ({reason})"),
                         None)
        case = thread.case
        records.update_case(conn, case["id"], {"message_count": case["message_count"] + 1, "updated_at": utcnow()})
        state.events.append((state.verdict.kind, {"reason": reason, "threaded_by": thread.how}))
        return Filed(Outcome("recorded", self.numbers.format(case["id"]), detail=f"{state.verdict.kind} ({reason})"),
                     case["id"])

    def _case_context(self, case: dict[str, Any], number: str, decision: Decision,
                      ruleset: RuleSet) -> dict[str, Any]:
        department = ruleset.department(decision.department) if decision.department else None
        return {"case": {
            "number": number,
            "token": self.numbers.token(number),
            "subject": case["subject"][:120],
            "kind": case["kind"],
            "priority": case["priority"],
            "department": case["department"],
            "department_name": department.name if department else None,
            "first_response_due": local_time(case["first_response_due"]),
            "resolution_due": local_time(case["resolution_due"]),
        }}

    def language(self, detected: str | None) -> str:
        if detected == "en":
            return "en"
        if detected == "zh":
            return "zh-CN"
        return self.settings.mailbox.language


def tighter_deadlines(case: dict[str, Any], ruleset: RuleSet,
                      calendar: BusinessCalendar | None = None) -> dict[str, datetime]:
    """A raised priority brings its (shorter) deadlines forward; it never pushes one back.

    Counted in the business ``calendar`` (plain calendar time without one).
    """
    calendar = calendar or BusinessCalendar()
    if case["priority"] not in ruleset.priorities:
        return {}
    due = ruleset.deadlines(case["priority"], case["department"], case["kind"])
    now = utcnow()
    changes = {}
    for name, delta in (("first_response_due", due.first_response), ("resolution_due", due.resolution)):
        current = case[name]
        due_at = calendar.add(now, delta) if delta is not None else None
        if due_at is not None and (current is None or due_at < current):
            changes[name] = due_at
    return changes
