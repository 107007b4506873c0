"""The outbox: mail queued in the database is claimed, sent, and retried with backoff.

Rows are claimed with a lease, so several daemons sharing one PostgreSQL database never send the
same row twice, and a daemon killed while sending lets the row be retried when the lease ends.
Connection trouble and 4xx replies are retried with doubling delays until ``give_up_after``;
5xx replies fail the row at once.  ``feedbackd outbox list`` shows what waits or failed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import col
from sqlmodel import select as orm_select

from feedbackd.config import OutboxSettings, SmtpSettings
from feedbackd.mail.send import Envelope, SendResult, SmtpPool
from feedbackd.store.db import session
from feedbackd.store.models import OutboxItem, utcnow
from feedbackd.store.records import OUTBOX

T = TypeVar("T")

log = logging.getLogger(__name__)

BATCH = 200


@dataclass
class FlushReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0

    def add(self, other: FlushReport) -> None:
        self.sent += other.sent
        self.retrying += other.retrying
        self.failed += other.failed


@dataclass(frozen=True)
class Claimed:
    id: int
    mail_from: str
    recipient: str
    raw: bytes
    attempts: int
    created_at: datetime


class Outbox:
    """Owns one event loop and SMTP pool: call it from one thread (the outbox thread)."""

    def __init__(self, engine: Engine, smtp: SmtpSettings, settings: OutboxSettings) -> None:
        self.engine = engine
        self.smtp = smtp
        self.settings = settings
        self.lease = smtp.timeout * 4 + timedelta(seconds=60)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = SmtpPool(smtp)

    def claim(self, limit: int = BATCH) -> list[Claimed]:
        """Take up to ``limit`` due rows: pending ones, and 'sending' ones whose lease ran out.

        The UPDATE repeats the due test, so when two senders picked the same candidates only
        the first write wins (SQLite serialises writers; PostgreSQL also skips locked rows).
        """
        now = utcnow()
        token = uuid.uuid4().hex
        claimable = or_(OUTBOX.c.status == "pending",
                        (OUTBOX.c.status == "sending") & (OUTBOX.c.lease_until < now))
        due = (select(OUTBOX.c.id).where(claimable).where(OUTBOX.c.next_attempt_at <= now)
               .order_by(OUTBOX.c.id).limit(limit))
        if self.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        with self.engine.begin() as conn:
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids)).where(claimable)
                         .values(status="sending", lease_until=now + self.lease, claim=token))
            rows = conn.execute(
                select(OUTBOX.c.id, OUTBOX.c.mail_from, OUTBOX.c.recipient, OUTBOX.c.raw, OUTBOX.c.attempts,
                       OUTBOX.c.created_at)
                .where(OUTBOX.c.id.in_(ids)).where(OUTBOX.c.claim == token)).all()
        return [Claimed(*row) for row in rows]

    def flush(self) -> FlushReport:
        """Send everything due now, batch after batch; returns what happened."""
        report = FlushReport()
        while True:
            items = self.claim()
            if not items:
                return report
            envelopes = [Envelope(item.id, item.mail_from, item.recipient, item.raw) for item in items]
            results = self._run(self._pool.send_all(envelopes))
            self._record(items, results, report)
            if report.retrying and not any(r.ok for r in results):
                return report  # the server is down: stop hammering it, the retry time comes later

    def close(self) -> None:
        """Say goodbye to the SMTP server and close the event loop."""
        if self._loop is not None:
            self._run(self._pool.close())
            self._loop.close()
            self._loop = None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coroutine)

    def _record(self, items: list[Claimed], results: list[SendResult], report: FlushReport) -> None:
        now = utcnow()
        by_id = {item.id: item for item in items}
        sent = [{"_id": r.key} for r in results if r.ok]
        report.sent += len(sent)
        with self.engine.begin() as conn:
            if sent:
                conn.execute(_MARK_SENT, [{**row, "sent_at": now} for row in sent])
            for result in (r for r in results if not r.ok):
                item = by_id[result.key]
                attempts = item.attempts + 1
                error = result.error[:500]
                values: dict[str, Any]
                if result.permanent or now - item.created_at >= self.settings.give_up_after:
                    values = {"status": "failed"}
                    report.failed += 1
                    log.warning("outbox %s failed for good after %d attempts: %s", item.id, attempts, error)
                else:
                    values = {"status": "pending", "next_attempt_at": now + self.backoff(attempts)}
                    report.retrying += 1
                    log.info("outbox %s will be retried (attempt %d): %s", item.id, attempts, error)
                conn.execute(update(OUTBOX).where(OUTBOX.c.id == item.id).values(
                    attempts=attempts, lease_until=None, last_error=error, **values))

    def backoff(self, attempts: int) -> timedelta:
        delay: timedelta = self.settings.retry_initial * (2 ** max(0, attempts - 1))
        return min(delay, self.settings.retry_max)

    def next_due(self) -> float | None:
        """Seconds until the next pending row is due (0 if one is due now), None if none waits."""
        with self.engine.connect() as conn:
            first = conn.execute(
                select(OUTBOX.c.next_attempt_at).where(OUTBOX.c.status.in_(("pending", "sending")))
                .order_by(OUTBOX.c.next_attempt_at).limit(1)).scalar()
        if not isinstance(first, datetime):
            return None
        return max(0.0, (first - utcnow()).total_seconds())

    def listing(self, include_sent: bool = False) -> list[OutboxItem]:
        with session(self.engine) as db:
            query = orm_select(OutboxItem).order_by(col(OutboxItem.id))
            if not include_sent:
                query = query.where(col(OutboxItem.status) != "sent")
            return list(db.exec(query))


_MARK_SENT = (update(OUTBOX).where(OUTBOX.c.id == bindparam("_id"))
              .values(status="sent", attempts=OUTBOX.c.attempts + 1, lease_until=None, last_error=""))
