"""The staff loop: staff hear of a case by mail, answer from their own client, and the answer reaches the citizen.

Intake calls it at two points, after the message is recorded:

* ``StaffLoop.reply`` when a message is a verified staff reply (``verify.claim``): the reply is
  stored on its case, its commands are applied, and its text goes to the citizen from the feedback
  address (progress, or the final result with the satisfaction question).  With a bad command
  nothing is relayed and the staff member gets the help text instead.
* ``StaffLoop.notify`` when casework opened a case or filed a citizen's follow-up on one: the
  assignee (or the department's staff) gets it by mail, with ``Reply-To`` the case's signed reply
  address.

``act`` does for an admin at a shell what a staff reply does (``feedbackd cases reply/note/…``).
Nothing here can fail the intake of a message: a mail that cannot be composed or queued becomes
an event on the case, and the message stays recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from feedbackd.cases import CaseNumbers
from feedbackd.config import Settings, StaffSettings
from feedbackd.jobs.calendar import calendar_for
from feedbackd.mail.compose import Outgoing
from feedbackd.mail.quotes import strip_reply
from feedbackd.outgoing import record_and_queue
from feedbackd.routing import RuleSet
from feedbackd.staff import actions, verify
from feedbackd.staff.commands import Command, parse_commands
from feedbackd.staff.mail import StaffMail
from feedbackd.stages.state import Events, MessageState, Outcome
from feedbackd.store import records
from feedbackd.store.records import ATTACHMENTS, MESSAGES
from feedbackd.templates import Rendered, Templates

log = logging.getLogger(__name__)

NOTICE_TEXT_LIMIT = 20_000  # characters of the citizen's text in a staff notice


@dataclass
class StaffReply:
    """What intake reports for a verified staff reply."""

    outcome: Outcome
    case_id: int


class StaffLoop:
    def __init__(self, settings: Settings, rules: Callable[[], RuleSet], templates: Templates,
                 numbers: CaseNumbers) -> None:
        # Without a [staff] section intake never calls it, but an admin may still answer citizens from
        # the shell (``act``); staff notices then stay off (there is no secret to sign reply addresses).
        self.enabled = settings.staff_mail is not None
        self.settings = settings
        self.staff: StaffSettings = settings.staff_mail or StaffSettings(enabled=False)
        self.rules = rules
        self.numbers = numbers
        self.mail = StaffMail(settings, templates, numbers)
        self.own = settings.mailbox.own_addresses
        self._directory: tuple[int, frozenset[str]] | None = None
        self.queued = 0  # mails queued so far (intake reads the difference to wake the sender)

    # -- who is staff -----------------------------------------------------------------------------

    def staff_addresses(self) -> frozenset[str]:
        """Every staff and lead address of every department (recomputed when the rules change)."""
        ruleset = self.rules()
        if self._directory is None or self._directory[0] != id(ruleset):
            self._directory = (id(ruleset), actions.staff_addresses(ruleset))
        return self._directory[1]

    def claim(self, state: MessageState) -> verify.StaffClaim | None:
        """Whether the message claims to be a staff reply (None: it does not), and whether the claim holds."""
        if state.verdict.kind != "mail":  # an out-of-office answering a notice never acts as staff
            return None
        return verify.claim(state.msg, self.staff, self.own, self.staff_addresses())

    # -- a staff member's reply -------------------------------------------------------------------

    def reply(self, conn: Connection, state: MessageState, claim: verify.StaffClaim,
              store: Callable[[int, str], None]) -> StaffReply | None:
        """Apply a verified staff reply; None when its case does not exist (then it is citizen mail)."""
        case_id = self.numbers.parse(claim.case_number or "")
        row = records.case_by_id(conn, case_id) if case_id else None
        if row is None:
            return None
        case: dict[str, Any] = dict(row)
        msg = state.msg
        sender = msg.sender.addr if msg.sender else ""
        store(case["id"], "staff-reply")
        if not records.is_participant(conn, case["id"], sender):
            records.add_participants(conn, case["id"], [sender], "staff")
        parsed = parse_commands(strip_reply(msg.text, msg.html))
        number = self.numbers.format(case["id"])
        events: Events = [("staff-reply", {"by": sender})]
        errors = list(parsed.errors)
        applied = None
        if not errors:
            applied = actions.apply(case, parsed.commands, self.rules(), has_text=bool(parsed.body.strip()),
                                    calendar=calendar_for(self.settings))
            errors = list(applied.errors)
        if applied is None or errors:
            events.append(("staff-command-refused", {"errors": errors[:10]}))
            records.add_events(conn, case["id"], events, actor=sender)
            self._queue(conn, case["id"], "staff-help", partial(
                self.mail.help, case, to=sender, errors=errors, in_reply_to=msg.message_id, ruleset=self.rules()))
            return StaffReply(Outcome("staff-reply", number, detail="commands refused, help sent"), case["id"])
        records.add_events(conn, case["id"], events, actor=sender)
        conceal = [w for w in (sender, msg.sender.name if msg.sender else "") if w]
        self._carry_out(conn, case, applied, parsed.body, actor=sender, conceal=conceal)
        return StaffReply(Outcome("staff-reply", number, detail=_describe(applied)), case["id"])

    def _carry_out(self, conn: Connection, case: Mapping[str, Any], applied: actions.Applied, text: str,
                   actor: str, conceal: Sequence[str] = ()) -> None:
        """Commit what the commands decided, then mail the citizen and any newly responsible staff."""
        actions.commit(conn, case["id"], applied, actor)
        after = {**case, **applied.changes}
        body = text.strip()
        if applied.final:
            self._to_citizen(conn, after, "result", body, conceal)
        elif applied.relay and body:
            self._to_citizen(conn, after, "progress", body, conceal)
        elif applied.status and applied.status[1] in self.staff.progress_on:
            self._to_citizen(conn, after, "progress", "", conceal)
        if applied.moved_to:
            self.notify(conn, after, "moved", text="", subject=str(case["subject"]))

    def _to_citizen(self, conn: Connection, case: Mapping[str, Any], purpose: str, text: str,
                    conceal: Sequence[str] = ()) -> None:
        """The answer to the citizen (and, if configured, the people they copied); the staff member's
        address and name are taken out of the text (``conceal``), a signature already was."""
        last = _last_from(conn, case["id"], str(case["requester"]))
        recipients = [str(case["requester"])]
        if self.staff.copy_citizen_cc:
            recipients += records.participants(conn, case["id"], "cc")
        for recipient in recipients:
            # A person the citizen copied is not greeted with the citizen's name.
            target = {**case, "requester": recipient} if recipient == case["requester"] else \
                {**case, "requester": recipient, "requester_name": ""}
            self._queue(conn, case["id"], purpose, partial(
                self.mail.to_citizen, target, purpose=purpose, text=text, in_reply_to=last,
                references=[last] if last else [], status=str(case["status"]), conceal_words=conceal))

    # -- notices to staff -------------------------------------------------------------------------

    def notify(self, conn: Connection, case: Mapping[str, Any], event: str, *, text: str, subject: str,
               message_row: int | None = None, rules: list[str] | None = None) -> int:
        """Mail the case's assignee, or its department's staff (the lead for ``unsatisfied``)."""
        if not self.enabled:
            return 0
        recipients = self.recipients(case, event)
        if not recipients:
            records.add_events(conn, case["id"], [("staff-not-notified", {"event": event,
                                                                          "reason": "no assignee or department"})])
            return 0
        attachments = _attachments(conn, message_row) if message_row is not None else []
        queued = 0
        for to in recipients:
            queued += self._queue(conn, case["id"], "staff-notice", partial(
                self.mail.notice, case, event=event, to=to, text=text[:NOTICE_TEXT_LIMIT], subject=subject,
                attachments=attachments, rules=rules or [], from_name=str(case.get("requester_name") or ""),
                from_addr=str(case["requester"]), language=self.settings.mailbox.language, ruleset=self.rules()))
        return queued

    def recipients(self, case: Mapping[str, Any], event: str) -> list[str]:
        ruleset = self.rules()
        department = ruleset.departments.get(str(case["department"])) if case.get("department") else None
        if event == "unsatisfied":
            return [department.lead] if department else []
        if case.get("assignee") and event != "moved":
            return [str(case["assignee"])]
        return list(department.staff) if department else []

    # -- queueing ---------------------------------------------------------------------------------

    def _queue(self, conn: Connection, case_id: int, purpose: str,
               build: Callable[[], tuple[Rendered, Outgoing]]) -> int:
        """Compose and queue one mail; a failure to compose becomes an event, never an error of intake."""
        try:
            rendered, outgoing = build()
        except Exception as exc:  # noqa: BLE001 - a staff mail must never cost the message its intake
            log.warning("%s for case %s not queued: %s", purpose, case_id, type(exc).__name__)
            records.add_events(conn, case_id, [("mail-not-sent", {"purpose": purpose,
                                                                  "reason": f"{type(exc).__name__}: {exc}"[:300]})])
            return 0
        if not outgoing.recipient:
            return 0
        mailbox = self.settings.mailbox
        record_and_queue(conn, outgoing, case_id=case_id, purpose=purpose, subject=rendered.subject,
                         text=rendered.text, from_addr=mailbox.address, from_name=mailbox.name)
        self.queued += 1
        return 1


def _describe(applied: actions.Applied) -> str:
    parts = []
    if applied.status:
        parts.append(f"{applied.status[0]} → {applied.status[1]}")
    if applied.final:
        parts.append("result sent")
    elif applied.relay:
        parts.append("relayed")
    if applied.moved_to:
        parts.append(f"moved to {applied.moved_to}")
    return ", ".join(parts) or "recorded"


def _last_from(conn: Connection, case_id: int, address: str) -> str | None:
    """The Message-ID of the citizen's latest mail on the case, for threading in their client."""
    row = conn.execute(select(MESSAGES.c.message_id).where(MESSAGES.c.case_id == case_id)
                       .where(MESSAGES.c.direction == "in").where(MESSAGES.c.from_addr == address)
                       .where(MESSAGES.c.message_id.is_not(None))
                       .order_by(MESSAGES.c.id.desc()).limit(1)).first()
    return str(row[0]) if row else None


def _attachments(conn: Connection, message_row: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(ATTACHMENTS.c.filename, ATTACHMENTS.c.content_type, ATTACHMENTS.c.size)
                        .where(ATTACHMENTS.c.message_id == message_row)).mappings()
    return [dict(row) for row in rows]


def act(engine: Engine, settings: Settings, case_number: str, commands: list[Command], text: str,
        actor: str = "admin") -> str:
    """What a staff reply does, for an admin at a shell; returns one line saying what happened."""
    from feedbackd.routing import RulesWatcher

    numbers = CaseNumbers(settings.cases)
    watcher = RulesWatcher(settings.paths.rules, logging.getLogger("feedbackd.rules"))
    loop = StaffLoop(settings, watcher.current, Templates(settings.paths.templates), numbers)
    case_id = numbers.parse(case_number)
    with engine.begin() as conn:
        row = records.case_by_id(conn, case_id) if case_id else None
        if row is None:
            raise LookupError(f"no case {case_number}")
        case: dict[str, Any] = dict(row)
        applied = actions.apply(case, commands, watcher.current(), has_text=bool(text.strip()), note_text=text,
                                calendar=calendar_for(settings))
        if applied.errors:
            raise ValueError("; ".join(applied.errors))
        loop._carry_out(conn, case, applied, text, actor=actor)
    return f"{numbers.format(case['id'])}: {_describe(applied)}"
