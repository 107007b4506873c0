"""The runner that walks one inbound message through the stages, in one direction.

parse → deduplicate → keep the raw bytes → loop guard → casework (thread, open or join, route,
store the message) → answer the sender (acknowledgement or quarantine notice) → advance the IMAP
cursor → commit (a backlog in groups, see ``process_many``).  The stages live in
``feedbackd.stages``; this module owns only the order, the transaction and the failure policy.

Everything a message changes in the database commits with it (its raw bytes included), so a
crash at any moment leaves all of it or none of it.  A message no stage can handle is
quarantined with the reason (and the cursor still advances), so one bad message never stops
the mailbox; answering the sender comes after the message is recorded and cannot fail it.
A full disk for attachments is not the message's fault: ``StorageFull`` rolls the group back and
the daemon retries later, the mail still unprocessed on the server.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from feedbackd.cases import CaseNumbers
from feedbackd.config import Settings
from feedbackd.logmask import mask_addresses
from feedbackd.mail import guard
from feedbackd.mail.parse import ParseLimitError, ParseLimits, parse_message
from feedbackd.routing import RuleSet
from feedbackd.stages import quarantine
from feedbackd.stages.answer import Answerer, Budget
from feedbackd.stages.casework import Casework, Filed
from feedbackd.stages.state import AnswerRequest, Events, MessageState, Outcome
from feedbackd.store import records
from feedbackd.store.files import FileStore
from feedbackd.store.turns import WriteTurns
from feedbackd.templates import Templates

log = logging.getLogger(__name__)

COMMIT_EVERY = 100  # messages per transaction when a backlog is drained
GROUP_BYTES = 32 * 1024 * 1024  # ... or fewer, when they add up to this many bytes
FAULT_ENV = "FEEDBACKD_FAULT"  # test hook: "before-commit" or "after-commit" kills the process there

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk is the host's problem, not the message's

__all__ = ["COMMIT_EVERY", "Cursor", "Outcome", "Pipeline", "StorageFull"]


class StorageFull(Exception):
    """The disk for attachments is full: the group is rolled back and the mail stays on the server.

    Not a quarantine: the message is fine, and is processed once space returns.
    """


@dataclass(frozen=True)
class Cursor:
    """Which mailbox cursor to advance with the message's transaction."""

    key: str
    uid: int


class Pipeline:
    def __init__(self, settings: Settings, engine: Engine, rules: Callable[[], RuleSet],
                 templates: Templates | None = None, files: FileStore | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.rules = rules
        self.turns: WriteTurns | None = None  # set by the daemon on SQLite: the sender goes first (store/turns.py)
        self.numbers = CaseNumbers(settings.cases)
        intake = settings.intake
        self.limits = ParseLimits(max_parts=intake.max_parts, max_header_bytes=intake.max_header_bytes,
                                  max_depth=intake.max_depth)
        templates = templates or Templates(settings.paths.templates)
        staff = None
        if settings.staff_mail is not None:
            from feedbackd.staff.loop import StaffLoop  # loaded only when staff mail is on

            staff = StaffLoop(settings, rules, templates, self.numbers)
        self.casework = Casework(settings, rules, files or FileStore(settings.paths.data), self.numbers, staff)
        self.answerer = Answerer(settings, templates)
        self.fault = os.environ.get(FAULT_ENV, "")

    # -- the entry points -------------------------------------------------------------------------

    def process(self, raw: bytes, cursor: Cursor | None = None, *, replay: bool = False) -> Outcome:
        """Handle one message completely and commit; never raises for a bad message.

        ``replay``: the message comes out of quarantine, so its entry there is no duplicate of it.
        """
        (outcome,) = self._run_group([(raw, cursor)], replay=replay)
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

    def _run_group(self, group: list[tuple[bytes, Cursor | None]], replay: bool = False) -> list[Outcome]:
        try:
            outcomes = self._attempt(group, careful=False, replay=replay)
        except _Retry:
            outcomes = self._attempt(group, careful=True, replay=replay)
        for outcome in outcomes:
            log.info("uid=%s %s %s%s", outcome.uid, outcome.action, outcome.case_number or "-",
                     f" ({mask_addresses(outcome.detail)})" if outcome.detail else "")
        return outcomes

    def _attempt(self, group: list[tuple[bytes, Cursor | None]], careful: bool, replay: bool) -> list[Outcome]:
        outcomes = []
        if self.turns is not None:
            self.turns.let_others_first()
        with self.engine.connect() as conn:  # closing without commit rolls back
            conn.begin()
            budget = Budget(self.settings)
            for raw, cursor in group:
                if careful:
                    outcome = self._process_one(conn, raw, cursor, budget, careful=True, replay=replay)
                else:
                    try:
                        outcome = self._process_one(conn, raw, cursor, budget, careful=False, replay=replay)
                    except Exception as exc:
                        log.debug("uid=%s failed in a group (%s); the group runs again message by message",
                                  cursor.uid if cursor else None, type(exc).__name__)
                        raise _Retry from exc
                outcome.uid = cursor.uid if cursor else None
                outcomes.append(outcome)
            last = next((cursor for _, cursor in reversed(group) if cursor is not None), None)
            if last is not None:
                records.advance_cursor(conn, last.key, last.uid)
            self._maybe_fault("before-commit")
            conn.commit()
        self._maybe_fault("after-commit")
        return outcomes

    def _process_one(self, conn: Connection, raw: bytes, cursor: Cursor | None, budget: Budget, *,
                     careful: bool, replay: bool) -> Outcome:
        digest = hashlib.sha256(raw).hexdigest()
        uid = cursor.uid if cursor else None
        if records.seen_raw(conn, digest, quarantined=not replay):
            return Outcome("duplicate", detail="the same bytes were received before")
        if len(raw) > self.settings.intake.message_max_size:
            return self._quarantine(conn, raw, digest, uid, "size",
                                    f"message of {len(raw)} bytes is over intake.message_max_size", budget, careful)
        try:
            msg = parse_message(raw, attachment_limit=self.settings.intake.attachment_max_size, limits=self.limits)
        except ParseLimitError as exc:
            return self._quarantine(conn, raw, digest, uid, "limits", str(exc), budget, careful)
        except Exception as exc:  # noqa: BLE001 - any parser failure is this message's problem only
            return self._quarantine(conn, raw, digest, uid, "parse", f"{type(exc).__name__}: {exc}", budget, careful)
        state = MessageState(raw, digest, uid, msg, guard.classify(msg))
        if not careful:
            filed = self._record(conn, state, careful)
        else:
            savepoint = conn.begin_nested()
            try:
                filed = self._record(conn, state, careful)
            except IntegrityError:
                # Another daemon (or an earlier run) stored the same message first.
                savepoint.rollback()
                return Outcome("duplicate", detail="stored concurrently")
            except Exception as exc:
                savepoint.rollback()
                if isinstance(exc, OSError) and exc.errno in NO_SPACE:
                    raise StorageFull(f"no space left in {self.settings.paths.data} for the attachments of "
                                      f"message uid={uid} ({exc.strerror})") from exc
                log.exception("message uid=%s could not be stored; quarantined", uid)
                return self._quarantine(conn, raw, digest, uid, "store", f"{type(exc).__name__}: {exc}", budget,
                                        careful)
            savepoint.commit()
        events: Events = []
        if filed.answer is not None:
            queued, events = self.answerer.answer(conn, filed.answer, budget, careful=careful)
            filed.outcome.queued += queued
        if filed.case_id is not None:
            # Optimistic: the case's events in one insert with the answer's; careful: the record
            # stage wrote its own inside its savepoint.
            rows = [(kind, detail, "system") for kind, detail in events]
            if not careful:
                rows = [(kind, detail, filed.actor) for kind, detail in state.events] + rows
            self._add_events(conn, filed.case_id, rows, careful)
        return filed.outcome

    # -- stages -----------------------------------------------------------------------------------

    def _record(self, conn: Connection, state: MessageState, careful: bool) -> Filed:
        """Everything that must be true of a recorded message, in the message's transaction."""
        records.keep_raw(conn, state.digest, state.raw)
        return self.casework.file(conn, state, write_events=careful)

    def _add_events(self, conn: Connection, case_id: int, events: list[tuple[str, dict[str, Any], str]],
                    careful: bool) -> None:
        if not events:
            return
        if not careful:
            records.add_events_by(conn, case_id, events)
            return
        savepoint = conn.begin_nested()
        try:
            records.add_events_by(conn, case_id, events)
        except Exception as exc:  # noqa: BLE001 - the message stays recorded without these history lines
            savepoint.rollback()
            log.warning("events of case %s could not be stored: %s", case_id, type(exc).__name__)
            return
        savepoint.commit()

    def _quarantine(self, conn: Connection, raw: bytes, digest: str, uid: int | None, stage: str, reason: str,
                    budget: Budget, careful: bool) -> Outcome:
        head = quarantine.keep(conn, raw, digest, uid, stage, reason)
        queued = 0
        if head is not None and head.sender is not None:
            notice = AnswerRequest(purpose="quarantine-notice", template="quarantine-notice",
                                   language=self.casework.language(head.language), msg=head,
                                   verdict=guard.classify(head), context={})
            queued, events = self.answerer.answer(conn, notice, budget, careful=careful)
            log.info("uid=%s quarantine notice: %s", uid, events[-1][0] if events else "-")
        return Outcome("quarantined", detail=f"{stage}: {reason}", queued=queued)

    def _maybe_fault(self, point: str) -> None:
        if self.fault == point:
            os.kill(os.getpid(), signal.SIGKILL)


class _Retry(Exception):
    """A message of an optimistic group failed: run the group again, message by message."""
