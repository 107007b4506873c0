"""Answering the sender: the one path by which intake writes to the person who sent a message.

An acknowledgement (a new case) and a quarantine notice (a person will look at it) are the same
job: check that an automatic answer may go (loop guard, switches, budgets), render the template,
compose the mail, record it and queue it.  It runs after the message is safely recorded, and
nothing in it can fail the intake of that message or of its group: a failure becomes a
``no-acknowledgement`` event with the reason, and the message stays recorded.

What we echo of the sender's mail (name, subject, excerpt, attachment names) is cut short here,
so an acknowledgement stays a few KB whatever comes in: it cannot carry a spammer's text to a
third party whose address was forged into From.  Budgets count the canonical mailbox
(``guard.canonical_mailbox``), so ``victim+1@…`` and ``victim+2@…`` share one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from feedbackd.config import Settings
from feedbackd.mail import guard
from feedbackd.mail.compose import Outgoing, compose
from feedbackd.mail.message import Address, ParsedMessage
from feedbackd.outgoing import record_and_queue
from feedbackd.stages.state import AnswerRequest, Events
from feedbackd.store import records
from feedbackd.store.models import utcnow
from feedbackd.templates import Rendered, TemplateError, Templates

log = logging.getLogger(__name__)

ECHO_NAME = 40  # characters of the sender's display name we repeat
ECHO_SUBJECT = 100
ECHO_EXCERPT = 200
ECHO_ATTACHMENTS = 5  # attachment names listed; the rest are counted
ECHO_ATTACHMENT_NAME = 40
GLOBAL_WINDOW = timedelta(hours=1)


def bounded(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters (an ellipsis marks a cut)."""
    flat = " ".join(text[: limit * 4].split())
    if not flat.isprintable():  # rare: control or format characters that are not white space
        flat = " ".join("".join(ch if ch.isprintable() else " " for ch in flat).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def excerpt(text: str, limit: int = ECHO_EXCERPT) -> str:
    return bounded(text, limit)


def echo(msg: ParsedMessage) -> dict[str, Any]:
    """What the templates may repeat of the sender's mail, every piece bounded."""
    names = [bounded(a.filename, ECHO_ATTACHMENT_NAME) for a in msg.attachments[:ECHO_ATTACHMENTS]]
    return {
        "requester_name": bounded(msg.sender.name, ECHO_NAME) if msg.sender else "",
        "received": {
            "subject": bounded(msg.subject, ECHO_SUBJECT),
            "date": local_time(msg.date or utcnow()),
            "excerpt": excerpt(msg.text),
            "attachments": names,
            "attachments_more": max(0, len(msg.attachments) - len(names)),
        },
    }


def local_time(value: datetime | None) -> str | None:
    """UTC → the machine's local time, as people read it in a mail (never raises on odd dates)."""
    if value is None:
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return aware.astimezone().strftime("%Y-%m-%d %H:%M")
    except (OverflowError, ValueError, OSError):
        return aware.strftime("%Y-%m-%d %H:%M %z")


class Budget:
    """Automatic answers still allowed, for one transaction (a commit group).

    Per sender: ``acknowledgement.rate_limit`` per ``rate_window`` to one canonical mailbox,
    counted in the outbox (rows of this transaction included).  For everyone together:
    ``acknowledgement.global_rate_limit`` per hour, counted once per group and then kept here, so
    the check costs no query per message.  Several daemons may each go a group over it.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.acknowledgement
        self._global_used: int | None = None

    def refusal(self, conn: Connection, recipient_key: str) -> str | None:
        ack = self.settings
        if ack.global_rate_limit > 0:
            if self._global_used is None:
                self._global_used = records.all_automatic_mail_since(conn, utcnow() - GLOBAL_WINDOW)
            if self._global_used >= ack.global_rate_limit:
                return f"global budget: {ack.global_rate_limit} automatic answers per hour are used up"
        if ack.rate_limit > 0:
            sent = records.automatic_mail_since(conn, recipient_key, utcnow() - ack.rate_window)
            if sent >= ack.rate_limit:
                return f"rate limit: {ack.rate_limit} automatic answers per {ack.rate_window} to this sender"
        return None

    def spend(self) -> None:
        if self._global_used is not None:
            self._global_used += 1


class Answerer:
    def __init__(self, settings: Settings, templates: Templates) -> None:
        self.settings = settings
        self.templates = templates
        self.own = settings.mailbox.own_addresses

    def answer(self, conn: Connection, request: AnswerRequest, budget: Budget, *, careful: bool) -> tuple[int, Events]:
        """Queue the answer, or say why not; returns (mails queued, events for the case)."""
        refusal = request.refusal or self._refusal(conn, request, budget)
        if refusal is not None:
            return 0, [("no-acknowledgement", {"reason": refusal})]
        events: Events = []
        try:
            rendered = self._render(request, events)
            outgoing = self._compose(request, rendered)
        except Exception as exc:  # noqa: BLE001 - answering can never fail the intake
            reason = f"could not compose the {request.purpose}: {type(exc).__name__}: {exc}"[:500]
            log.warning("%s for %s not queued: %s", request.purpose, request.case_number or "a quarantined message",
                        type(exc).__name__)
            return 0, [*events, ("no-acknowledgement", {"reason": reason})]
        if not outgoing.recipient:
            return 0, [*events, ("no-acknowledgement", {"reason": "the sender's address cannot be written to"})]
        if not careful:  # a failure rolls the group back and it runs again message by message
            self._write(conn, request, rendered, outgoing)
        else:
            savepoint = conn.begin_nested()
            try:
                self._write(conn, request, rendered, outgoing)
            except Exception as exc:  # noqa: BLE001 - the message stays recorded without its answer
                savepoint.rollback()
                log.warning("%s for %s could not be queued: %s", request.purpose,
                            request.case_number or "a quarantined message", type(exc).__name__)
                return 0, [*events, ("no-acknowledgement", {"reason": f"could not queue: {type(exc).__name__}"})]
            savepoint.commit()
        budget.spend()
        return 1, [*events, (f"{request.purpose}-queued", {"template": request.template,
                                                          "language": request.language})]

    def _refusal(self, conn: Connection, request: AnswerRequest, budget: Budget) -> str | None:
        """Why no automatic answer may go to this message's sender (None: one may)."""
        refusal = guard.reply_refusal(request.msg, request.verdict, self.own)
        if refusal is None and not self.settings.acknowledgement.enabled:
            refusal = "acknowledgements are switched off"
        if refusal is None and request.msg.sender is not None:
            refusal = budget.refusal(conn, guard.canonical_mailbox(request.msg.sender.addr))
        return refusal

    def _render(self, request: AnswerRequest, events: Events) -> Rendered:
        template = request.template
        if not self.templates.exists(template, request.language):
            log.error("template %r (chosen by the rules) does not exist in %s; using 'acknowledgement'",
                      template, self.templates.directory)
            events.append(("template-missing", {"template": template}))
            template = "acknowledgement"
        mailbox = {"name": self.settings.mailbox.name, "address": self.settings.mailbox.address}
        context = {"retention_days": None, **request.context, **echo(request.msg), "mailbox": mailbox}
        try:
            rendered = self.templates.render(template, request.language, context)
        except TemplateError as exc:
            log.error("%s for %s not sent: %s", request.purpose, request.case_number or "-", exc)
            raise
        token = f"[{request.case_number}]" if request.case_number else None
        if token and token not in rendered.subject:
            rendered = Rendered(f"{token} {rendered.subject}", rendered.text, rendered.html)
        return rendered

    def _compose(self, request: AnswerRequest, rendered: Rendered) -> Outgoing:
        msg = request.msg
        assert msg.sender is not None
        mailbox = self.settings.mailbox
        return compose(
            rendered,
            sender=Address(mailbox.name, mailbox.address),
            recipient=Address(bounded(msg.sender.name, ECHO_NAME), msg.sender.addr),
            in_reply_to=msg.message_id,
            references=[*msg.references, msg.message_id] if msg.message_id else msg.references,
            automatic=True,
            case_number=request.case_number,
        )

    def _write(self, conn: Connection, request: AnswerRequest, rendered: Rendered, outgoing: Outgoing) -> None:
        """The answer as the case's outgoing message, and its row in the outbox."""
        mailbox = self.settings.mailbox
        record_and_queue(conn, outgoing, case_id=request.case_id, purpose=request.purpose, subject=rendered.subject,
                         text=rendered.text, from_addr=mailbox.address, from_name=mailbox.name,
                         in_reply_to=request.msg.message_id)
