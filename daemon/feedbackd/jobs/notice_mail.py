"""The mail of the timed jobs: reminders and escalations to staff, "still being handled" to the citizen, digests.

Only renders, composes and queues (``outgoing.record_and_queue``), in the caller's transaction.
Staff mail looks like the staff loop's (``staff.mail``): threaded under the case's root id, the
citizen's address masked unless ``[staff] show_citizen_address``, and ``Reply-To`` the case's signed
reply address when staff mail is on (without a secret there is nothing to sign, so no Reply-To).
Citizen mail never names a staff member and never has a Reply-To.  Times are shown in the
calendar's time zone (Asia/Shanghai without a ``[calendar]`` section), as the desk reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from feedbackd.jobs.clock import local_zone
from feedbackd.mail.compose import Outgoing, compose
from feedbackd.mail.message import Address
from feedbackd.outgoing import record_and_queue
from feedbackd.staff.address import reply_address
from feedbackd.staff.mail import NAME_LIMIT, SUBJECT_LIMIT, masked, thread_root
from feedbackd.stages.answer import bounded
from feedbackd.templates import Rendered

if TYPE_CHECKING:
    from feedbackd.jobs.base import JobContext

CaseRow = Mapping[Any, Any]


class NoticeMail:
    """Composes and queues the jobs' mail for one pass."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.ours = Address(ctx.settings.mailbox.name, ctx.settings.mailbox.address)
        self.zone = local_zone(ctx.settings)
        self.ruleset = ctx.rules()

    def local(self, value: datetime | None) -> str | None:
        """A time as the desk reads it: ``2026-12-01 09:00`` in the calendar's time zone."""
        return value.astimezone(self.zone).strftime("%Y-%m-%d %H:%M") if value is not None else None

    def case_context(self, case: CaseRow) -> dict[str, Any]:
        """What every template may say about a case (bounded; the citizen's address masked for staff)."""
        number = self.ctx.numbers.format(int(case["id"]))
        priority = str(case.get("priority") or "")
        department = str(case.get("department") or "")
        found_priority = self.ruleset.priorities.get(priority)
        found_department = self.ruleset.departments.get(department) if department else None
        return {
            "number": number, "token": self.ctx.numbers.token(number),
            "subject": bounded(str(case.get("subject") or ""), SUBJECT_LIMIT),
            "kind": str(case.get("kind") or ""), "status": str(case.get("status") or ""),
            "priority": priority, "priority_name": found_priority.name if found_priority else priority,
            "department": department or None,
            "department_name": found_department.name if found_department else (department or None),
            "assignee": bounded(str(case.get("assignee") or ""), 254) or None,
            "first_response_due": self.local(case.get("first_response_due")),
            "resolution_due": self.local(case.get("resolution_due")),
            "created_at": self.local(case.get("created_at")),
        }

    def _mailbox(self) -> dict[str, str]:
        return {"name": self.settings.mailbox.name, "address": self.settings.mailbox.address}

    def _citizen(self, case: CaseRow) -> dict[str, str]:
        address = str(case.get("requester") or "")
        staff = self.settings.staff_mail
        shown = bounded(address, 254) if staff is not None and staff.show_citizen_address else masked(address)
        return {"name": bounded(str(case.get("requester_name") or ""), NAME_LIMIT), "address": shown}

    def _render(self, template: str, language: str, context: dict[str, Any], token: str | None) -> Rendered:
        """Render; a case's mail always carries its token in the subject, whatever an admin's template says."""
        rendered = self.ctx.templates.render(template, language, context)
        if token and token not in rendered.subject:
            rendered = Rendered(f"{token} {rendered.subject}", rendered.text, rendered.html)
        return rendered

    def _queue(self, conn: Connection, rendered: Rendered, outgoing: Outgoing, case_id: int | None,
               purpose: str) -> int:
        mailbox = self.settings.mailbox
        return record_and_queue(conn, outgoing, case_id=case_id, purpose=purpose, subject=rendered.subject,
                                text=rendered.text, from_addr=mailbox.address, from_name=mailbox.name)

    # -- to staff ---------------------------------------------------------------------------------

    def to_staff(self, conn: Connection, case: CaseRow, template: str, recipients: Sequence[str],
                 extra: Mapping[Any, Any]) -> int:
        """One mail per recipient about ``case`` (reminder, escalation); returns how many were queued."""
        info = self.case_context(case)
        staff = self.settings.staff_mail
        signed = reply_address(self.settings.mailbox.address, staff.secret, info["number"]) \
            if staff is not None and staff.secret else None
        context = {"mailbox": self._mailbox(), "case": info, "citizen": self._citizen(case),
                   "reply_address": signed, **extra}
        language = self.settings.mailbox.language
        rendered = self._render(template, language, context, info["token"])
        root = thread_root(info["number"], self.settings.mailbox.address)
        queued = 0
        for to in recipients:
            outgoing = compose(rendered, sender=self.ours, recipient=Address("", to), in_reply_to=root,
                               references=[root], automatic=True, auto_submitted="auto-generated",
                               case_number=info["number"],
                               reply_to=Address(self.settings.mailbox.name, signed) if signed else None)
            if outgoing.recipient:
                self._queue(conn, rendered, outgoing, int(case["id"]), template)
                queued += 1
        return queued

    def digest(self, conn: Connection, to: str, context: Mapping[Any, Any]) -> int:
        """A staff member's digest (no case: it lists many)."""
        rendered = self._render("digest", self.settings.mailbox.language,
                                {"mailbox": self._mailbox(), **context}, None)
        outgoing = compose(rendered, sender=self.ours, recipient=Address("", to), in_reply_to=None, references=[],
                           automatic=True, auto_submitted="auto-generated")
        if not outgoing.recipient:
            return 0
        self._queue(conn, rendered, outgoing, None, "digest")
        return 1

    # -- to the citizen ---------------------------------------------------------------------------

    def still_handling(self, conn: Connection, case: CaseRow, last_message_id: str | None) -> int:
        """The short "still being handled" note to the requester, threaded under their last mail."""
        info = self.case_context(case)
        name = bounded(str(case.get("requester_name") or ""), NAME_LIMIT)
        context = {"mailbox": self._mailbox(), "requester_name": name,
                   "case": {key: info[key] for key in ("number", "token", "subject", "kind", "status",
                                                       "resolution_due", "created_at")}}
        language = str(case.get("language") or self.settings.mailbox.language)
        rendered = self._render("still-handling", language, context, info["token"])
        outgoing = compose(rendered, sender=self.ours, recipient=Address(name, str(case["requester"])),
                           in_reply_to=last_message_id, references=[last_message_id] if last_message_id else [],
                           automatic=True, auto_submitted="auto-generated", case_number=info["number"])
        if not outgoing.recipient:
            return 0
        self._queue(conn, rendered, outgoing, int(case["id"]), "still-handling")
        return 1
