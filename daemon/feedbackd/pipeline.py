"""The ordered stages for one inbound message, in one direction.

parse → deduplicate → keep the raw bytes → loop guard → thread → route → record the case and
its message → queue the acknowledgement in the outbox → advance the IMAP cursor → commit (a
backlog in groups, see ``process_many``).

Everything a message changes in the database commits with it (its raw bytes included), so a
crash at any moment leaves all of it or none of it.  A message no stage can handle is
quarantined with the reason (and the cursor still advances), so one bad message never stops
the mailbox.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from feedbackd.cases import CaseNumbers, Thread, find_thread
from feedbackd.config import Settings
from feedbackd.mail import guard
from feedbackd.mail.compose import compose
from feedbackd.mail.message import Address, ParsedMessage
from feedbackd.mail.parse import parse_message
from feedbackd.routing import Decision, RuleSet
from feedbackd.store import records
from feedbackd.store.files import FileStore
from feedbackd.store.models import utcnow
from feedbackd.templates import Rendered, TemplateError, Templates

log = logging.getLogger(__name__)

COMMIT_EVERY = 100  # messages per transaction when a backlog is drained
GROUP_BYTES = 32 * 1024 * 1024  # ... or fewer, when they add up to this many bytes
FAULT_ENV = "FEEDBACKD_FAULT"  # test hook: "before-commit" or "after-commit" kills the process there
EXCERPT_CHARS = 240


@dataclass(frozen=True)
class Cursor:
    """Which mailbox cursor to advance with the message's transaction."""

    key: str
    uid: int


@dataclass
class Outcome:
    action: str  # new-case, joined, recorded, duplicate, quarantined
    case_number: str | None = None
    detail: str = ""
    queued: int = 0  # outgoing mails queued
    uid: int | None = None  # the message's IMAP UID, when it came from IMAP


@dataclass
class Stage:
    """What the stages learned about one message so far (passed down, never up)."""

    raw: bytes
    digest: str
    uid: int | None
    msg: ParsedMessage
    verdict: guard.Verdict
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class Pipeline:
    def __init__(self, settings: Settings, engine: Engine, rules: Callable[[], RuleSet],
                 templates: Templates | None = None, files: FileStore | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.rules = rules
        self.templates = templates or Templates(settings.paths.templates)
        self.files = files or FileStore(settings.paths.data)
        self.numbers = CaseNumbers(settings.cases)
        self.own = settings.mailbox.own_addresses
        self.fault = os.environ.get(FAULT_ENV, "")

    # -- the entry points -------------------------------------------------------------------------

    def process(self, raw: bytes, cursor: Cursor | None = None) -> Outcome:
        """Handle one message completely and commit; never raises for a bad message."""
        (outcome,) = self.process_many([(raw, cursor)])
        return outcome

    def process_many(self, items: Iterable[tuple[bytes, Cursor | None]],
                     commit_every: int = COMMIT_EVERY) -> Iterator[Outcome]:
        """Handle messages in order, committing every ``commit_every`` (group commit).

        A group first runs optimistically in one transaction.  If a message cannot be stored,
        the group is rolled back and run again with a savepoint around each message, so the
        failing one is rolled back alone and quarantined while the others go on.  The cursor
        advances in the same transaction.  An outcome is yielded only after its transaction
        committed, so nothing is sent (or flagged on the server) for work a crash could undo.
        """
        group: list[tuple[bytes, Cursor | None]] = []
        size = 0
        for item in items:
            group.append(item)
            size += len(item[0])
            if len(group) >= commit_every or size >= GROUP_BYTES:  # memory stays flat for large mail
                yield from self._run_group(group)
                group, size = [], 0
        if group:
            yield from self._run_group(group)

    def _run_group(self, group: list[tuple[bytes, Cursor | None]]) -> list[Outcome]:
        try:
            outcomes = self._attempt(group, careful=False)
        except _Retry:
            outcomes = self._attempt(group, careful=True)
        for outcome in outcomes:
            log.info("uid=%s %s %s%s", outcome.uid, outcome.action, outcome.case_number or "-",
                     f" ({outcome.detail})" if outcome.detail else "")
        return outcomes

    def _attempt(self, group: list[tuple[bytes, Cursor | None]], careful: bool) -> list[Outcome]:
        outcomes = []
        with self.engine.connect() as conn:  # closing without commit rolls back
            conn.begin()
            for raw, cursor in group:
                outcome = self._process_one(conn, raw, cursor, careful)
                outcome.uid = cursor.uid if cursor else None
                outcomes.append(outcome)
            last = next((cursor for _, cursor in reversed(group) if cursor is not None), None)
            if last is not None:
                records.advance_cursor(conn, last.key, last.uid)
            self._maybe_fault("before-commit")
            conn.commit()
        self._maybe_fault("after-commit")
        return outcomes

    def _process_one(self, conn: Connection, raw: bytes, cursor: Cursor | None, careful: bool) -> Outcome:
        digest = hashlib.sha256(raw).hexdigest()
        uid = cursor.uid if cursor else None
        if len(raw) > self.settings.intake.message_max_size:
            return self._quarantine(conn, raw, digest, uid, "size",
                                    f"message of {len(raw)} bytes is over intake.message_max_size")
        try:
            msg = parse_message(raw, attachment_limit=self.settings.intake.attachment_max_size)
        except Exception as exc:  # noqa: BLE001 - any parser failure is this message's problem only
            return self._quarantine(conn, raw, digest, uid, "parse", f"{type(exc).__name__}: {exc}")
        stage = Stage(raw, digest, uid, msg, guard.classify(msg))
        if not careful:
            try:
                return self._store(conn, stage)
            except Exception as exc:
                log.debug("uid=%s failed in a group (%s); the group runs again message by message", uid,
                          type(exc).__name__)
                raise _Retry from exc
        savepoint = conn.begin_nested()
        try:
            outcome = self._store(conn, stage)
        except IntegrityError:
            # Another daemon (or an earlier run) stored the same message first.
            savepoint.rollback()
            return Outcome("duplicate", detail="stored concurrently")
        except Exception as exc:
            savepoint.rollback()
            log.exception("message uid=%s could not be stored; quarantined", uid)
            return self._quarantine(conn, raw, digest, uid, "store", f"{type(exc).__name__}: {exc}")
        savepoint.commit()
        return outcome

    # -- stages -----------------------------------------------------------------------------------

    def _store(self, conn: Connection, stage: Stage) -> Outcome:
        msg = stage.msg
        key = dedupe_key(msg, stage.digest)
        if records.seen(conn, key):
            return Outcome("duplicate", detail=key[:80])
        attachments = [{"filename": a.filename, "content_type": a.content_type,
                        "size": a.size or len(a.data), "truncated": a.truncated,
                        "sha256": None if a.truncated else self.files.put_attachment(a.data)}
                       for a in msg.attachments]
        records.keep_raw(conn, stage.digest, stage.raw)
        quoted = guard.quoted_message_ids(stage.raw) if stage.verdict.kind != "mail" else None
        thread = find_thread(conn, msg, self.numbers, quoted)
        if thread.note:
            stage.events.append(("threading", {"note": thread.note}))
        if stage.verdict.kind in ("auto-reply", "bounce"):
            case_id, outcome = self._record_automatic(conn, stage, thread)
        elif thread.case is None:
            case_id, outcome = self._open_case(conn, stage, key, attachments)
        else:
            case_id, outcome = self._join_case(conn, stage, thread)
        if outcome.action != "new-case":  # a new case stored its message before answering it
            self._store_message(conn, stage, key, case_id, attachments)
        if case_id is not None:
            records.add_events(conn, case_id, stage.events)
        return outcome

    def _open_case(self, conn: Connection, stage: Stage, key: str,
                   attachments: list[dict[str, Any]]) -> tuple[int, Outcome]:
        msg = stage.msg
        ruleset = self.rules()
        decision = ruleset.evaluate(msg)
        now = utcnow()
        sender = msg.sender
        case: dict[str, Any] = {
            "status": "new",
            "kind": decision.kind,
            "subject": msg.subject[:500],
            "requester": sender.addr if sender else "",
            "requester_name": sender.name[:200] if sender else "",
            "language": self._language(msg),
            "priority": decision.priority,
            "department": decision.department,
            "assignee": decision.assignee,
            "tags": list(decision.tags),
            "routing": decision.to_dict(),
            "first_response_due": now + decision.first_response_due if decision.first_response_due else None,
            "resolution_due": now + decision.resolution_due if decision.resolution_due else None,
            "message_count": 1,
            "created_at": now,
            "updated_at": now,
        }
        case_id = records.insert_case(conn, case)
        case["id"], case["number"] = case_id, self.numbers.format(case_id)
        # People the citizen copied may follow up by the case token too (the requester always may).
        copied = [a.addr for a in msg.cc if a.addr not in self.own and a.addr != case["requester"]]
        records.add_participants(conn, case_id, copied[:20], "cc")
        self._store_message(conn, stage, key, case_id, attachments)
        stage.events.append(("opened", {"verdict": stage.verdict.kind}))
        stage.events.append(("routed", {"rules": decision.matched}))  # the full decision is in case.routing
        queued = self._acknowledge(conn, stage, case, decision, ruleset)
        return case_id, Outcome("new-case", case["number"], queued=queued)

    def _join_case(self, conn: Connection, stage: Stage, thread: Thread) -> tuple[int, Outcome]:
        assert thread.case is not None
        case = dict(thread.case)
        changes: dict[str, Any] = {"message_count": case["message_count"] + 1, "updated_at": utcnow()}
        if case["status"] in ("resolved", "closed", "waiting"):
            stage.events.append(("reopened", {"from": case["status"]}))
            changes["status"] = "open"
        ruleset = self.rules()
        raised = ruleset.evaluate_followup(stage.msg, case["priority"])
        if raised is not None and raised.priority != case["priority"]:
            stage.events.append(("priority-raised", {"from": case["priority"], "to": raised.priority,
                                                     "rules": raised.to_dict().get("hits", [])}))
            changes["priority"] = raised.priority
            changes["tags"] = list(dict.fromkeys([*case["tags"], *raised.tags]))
            changes.update(_tighter_deadlines({**case, **changes}, ruleset))
        stage.events.append(("message", {"threaded_by": thread.how}))
        records.update_case(conn, case["id"], changes)
        return case["id"], Outcome("joined", self.numbers.format(case["id"]), detail=f"by {thread.how}")

    def _record_automatic(self, conn: Connection, stage: Stage, thread: Thread) -> tuple[int | None, Outcome]:
        """Bounces and auto-replies: noted on the case they answer, never a new case."""
        reason = stage.verdict.reason or stage.verdict.kind
        if thread.case is None:
            return None, Outcome("recorded", None,
                                 detail=f"{stage.verdict.kind} answering no known case ({reason})")
        case = thread.case
        records.update_case(conn, case["id"], {"message_count": case["message_count"] + 1,
                                               "updated_at": utcnow()})
        stage.events.append((stage.verdict.kind, {"reason": reason, "threaded_by": thread.how}))
        return case["id"], Outcome("recorded", self.numbers.format(case["id"]),
                                   detail=f"{stage.verdict.kind} ({reason})")

    def _acknowledge(self, conn: Connection, stage: Stage, case: dict[str, Any], decision: Decision,
                     ruleset: RuleSet) -> int:
        msg = stage.msg
        refusal = self._refusal(conn, msg, stage.verdict)
        if refusal is None and decision.suppress_ack:
            refusal = "a rule suppresses the acknowledgement"
        if refusal is not None:
            stage.events.append(("no-acknowledgement", {"reason": refusal}))
            return 0
        context = self._ack_context(msg, case, decision, ruleset)
        template = decision.template
        if not self.templates.exists(template, case["language"]):
            log.error("acknowledgement template %r (chosen by the rules) does not exist in %s; "
                      "using 'acknowledgement'", template, self.templates.directory)
            stage.events.append(("template-missing", {"template": template}))
            template = "acknowledgement"
        try:
            rendered = self.templates.render(template, case["language"], context)
        except TemplateError as exc:
            log.error("acknowledgement for %s not sent: %s", case["number"], exc)
            stage.events.append(("no-acknowledgement", {"reason": str(exc)}))
            return 0
        token = self.numbers.token(case["number"])
        if token not in rendered.subject:
            rendered = Rendered(f"{token} {rendered.subject}", rendered.text, rendered.html)
        self._queue(conn, rendered, msg, case, "acknowledgement")
        stage.events.append(("acknowledgement-queued", {"template": template, "language": case["language"]}))
        return 1

    def _refusal(self, conn: Connection, msg: ParsedMessage, verdict: guard.Verdict) -> str | None:
        """Why no automatic answer may go to this message's sender (None: one may)."""
        refusal = guard.reply_refusal(msg, verdict, self.own)
        if refusal is None and not self.settings.acknowledgement.enabled:
            refusal = "acknowledgements are switched off"
        if refusal is None and msg.sender and self._rate_limited(conn, msg.sender.addr):
            ack = self.settings.acknowledgement
            refusal = f"rate limit: {ack.rate_limit} automatic answers per {ack.rate_window} to this sender"
        return refusal

    def _queue(self, conn: Connection, rendered: Rendered, msg: ParsedMessage, case: dict[str, Any] | None,
               purpose: str) -> None:
        """An automatic answer to ``msg``: recorded as the case's outgoing message and queued."""
        assert msg.sender is not None
        mailbox = self.settings.mailbox
        outgoing = compose(
            rendered,
            sender=Address(mailbox.name, mailbox.address),
            recipient=msg.sender,
            in_reply_to=msg.message_id,
            references=[*msg.references, msg.message_id] if msg.message_id else msg.references,
            automatic=True,
            case_number=case["number"] if case else None,
        )
        case_id = case["id"] if case else None
        records.insert_message(conn, {
            "case_id": case_id, "direction": "out", "kind": purpose, "message_id": outgoing.message_id,
            "dedupe_key": f"out:{outgoing.message_id}", "in_reply_to": msg.message_id,
            "from_addr": mailbox.address, "from_name": mailbox.name, "to_addrs": [outgoing.recipient],
            "subject": rendered.subject, "date": utcnow(), "text": rendered.text,
        })
        records.queue_mail(conn, {"case_id": case_id, "purpose": purpose, "message_id": outgoing.message_id,
                                  "mail_from": outgoing.mail_from, "recipient": outgoing.recipient,
                                  "raw": outgoing.raw})

    # -- helpers ----------------------------------------------------------------------------------

    def _mailbox_context(self) -> dict[str, str]:
        return {"name": self.settings.mailbox.name, "address": self.settings.mailbox.address}

    def _ack_context(self, msg: ParsedMessage, case: dict[str, Any], decision: Decision,
                     ruleset: RuleSet) -> dict[str, Any]:
        department = ruleset.department(decision.department) if decision.department else None
        return {
            "case": {
                "number": case["number"],
                "token": self.numbers.token(case["number"]),
                "subject": case["subject"],
                "kind": case["kind"],
                "priority": case["priority"],
                "department": case["department"],
                "department_name": department.name if department else None,
                "first_response_due": _local(case["first_response_due"]),
                "resolution_due": _local(case["resolution_due"]),
            },
            "requester_name": msg.sender.name if msg.sender else "",
            "mailbox": self._mailbox_context(),
            "received": {
                "subject": msg.subject,
                "date": _local(msg.date or utcnow()),
                "excerpt": excerpt(msg.text),
                "attachments": [a.filename for a in msg.attachments],
            },
            "retention_days": None,
        }

    def _language(self, msg: ParsedMessage) -> str:
        if msg.language == "en":
            return "en"
        if msg.language == "zh":
            return "zh-CN"
        return self.settings.mailbox.language

    def _rate_limited(self, conn: Connection, address: str) -> bool:
        limit = self.settings.acknowledgement.rate_limit
        if limit <= 0:
            return False
        since = utcnow() - self.settings.acknowledgement.rate_window
        return records.automatic_mail_since(conn, address, since) >= limit

    def _store_message(self, conn: Connection, stage: Stage, key: str, case_id: int | None,
                       attachments: list[dict[str, Any]]) -> None:
        msg = stage.msg
        row = records.insert_message(conn, {
            "case_id": case_id,
            "direction": "in",
            "kind": "mail" if stage.verdict.kind in ("mail", "bulk") else stage.verdict.kind,
            "message_id": msg.message_id,
            "dedupe_key": key,
            "in_reply_to": msg.in_reply_to[0] if msg.in_reply_to else None,
            "references": msg.references[-50:],
            "from_addr": msg.sender.addr if msg.sender else "",
            "from_name": msg.sender.name[:200] if msg.sender else "",
            "to_addrs": [a.addr for a in msg.to][:100],
            "cc_addrs": [a.addr for a in msg.cc][:100],
            "subject": msg.subject[:1000],
            "date": _utc(msg.date),
            "text": msg.text,
            "raw_sha256": stage.digest,
            "mailbox_uid": stage.uid,
            "defects": msg.defects[:50],
        })
        records.add_attachments(conn, row, attachments)

    def _quarantine(self, conn: Connection, raw: bytes, digest: str, uid: int | None, stage: str,
                    reason: str) -> Outcome:
        head = _headers_only(raw)
        records.keep_raw(conn, digest, raw)
        item = records.insert_quarantine(conn, {
            "mailbox_uid": uid, "raw_sha256": digest, "size": len(raw), "stage": stage,
            "reason": reason[:1000], "subject": head.subject[:300] if head else "",
            "sender": head.sender.addr if head and head.sender else ""})
        notice = self._quarantine_notice(conn, head) if head else "headers unreadable"
        log.warning("uid=%s quarantined as #%s at stage %s: %s (sender notice: %s)", uid, item, stage,
                    reason[:200], notice)
        return Outcome("quarantined", detail=f"{stage}: {reason}", queued=int(notice == "queued"))

    def _quarantine_notice(self, conn: Connection, head: ParsedMessage) -> str:
        """Tell the sender a person will look at the message: the right answer when we cannot file it."""
        refusal = self._refusal(conn, head, guard.classify(head))
        if refusal is not None:
            return f"not sent: {refusal}"
        context = {"mailbox": self._mailbox_context(),
                   "received": {"subject": head.subject, "date": _local(head.date or utcnow())}}
        try:
            rendered = self.templates.render("quarantine-notice", self._language(head), context)
        except TemplateError as exc:
            return f"not sent: {exc}"
        self._queue(conn, rendered, head, None, "acknowledgement")
        return "queued"

    def _maybe_fault(self, point: str) -> None:
        if self.fault == point:
            os.kill(os.getpid(), signal.SIGKILL)


def _tighter_deadlines(case: dict[str, Any], ruleset: RuleSet) -> dict[str, datetime]:
    """A raised priority brings its (shorter) deadlines forward; it never pushes one back."""
    if case["priority"] not in ruleset.priorities:
        return {}
    due = ruleset.deadlines(case["priority"], case["department"], case["kind"])
    now = utcnow()
    changes = {}
    for name, delta in (("first_response_due", due.first_response), ("resolution_due", due.resolution)):
        current = case[name]
        if delta is not None and (current is None or now + delta < current):
            changes[name] = now + delta
    return changes


class _Retry(Exception):
    """A message of an optimistic group failed: run the group again, message by message."""


def dedupe_key(msg: ParsedMessage, digest: str) -> str:
    """The same message fetched twice gets the same key.

    With a Message-ID the key is that ID plus the Date header, so a re-delivered copy (other
    Received lines, same message) is a duplicate while a broken mailer that reuses one ID for
    different mails does not lose them; without a Message-ID it is the hash of the raw bytes.
    """
    if msg.message_id:
        stamp = hashlib.sha256(f"{msg.message_id}\0{msg.header('Date') or ''}".encode(
            "utf-8", "surrogatepass")).hexdigest()[:32]
        return f"in:{stamp}"
    return f"raw:{digest}"


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _local(value: datetime | None) -> str | None:
    """UTC → the machine's local time, as people read it in a mail."""
    if value is None:
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone().strftime("%Y-%m-%d %H:%M")


def _headers_only(raw: bytes) -> ParsedMessage | None:
    """The header block of a message the pipeline could not take, parsed on its own."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = raw[: end if 0 <= end < 256 * 1024 else 256 * 1024]
    try:
        return parse_message(head + b"\r\n\r\n")
    except Exception:  # noqa: BLE001 - nothing readable: list it without sender or subject
        return None
