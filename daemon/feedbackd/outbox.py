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
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from feedbackd.config import OutboxSettings, SmtpSettings
from feedbackd.mail.send import Envelope, SendResult, send_all
from feedbackd.store.db import session
from feedbackd.store.models import OutboxItem, utcnow

log = logging.getLogger(__name__)

BATCH = 200


@dataclass
class FlushReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


class Outbox:
    def __init__(self, engine: Engine, smtp: SmtpSettings, settings: OutboxSettings) -> None:
        self.engine = engine
        self.smtp = smtp
        self.settings = settings
        self.lease = smtp.timeout * 4 + timedelta(seconds=60)

    def claim(self, limit: int = BATCH) -> list[OutboxItem]:
        """Take up to ``limit`` due rows: pending ones, and 'sending' ones whose lease ran out.

        The UPDATE repeats the due test, so when two senders picked the same candidates only
        the first write wins (SQLite serialises writers; PostgreSQL also skips locked rows).
        """
        now = utcnow()
        token = uuid.uuid4().hex
        claimable = or_(col(OutboxItem.status) == "pending",
                        (col(OutboxItem.status) == "sending") & (col(OutboxItem.lease_until) < now))
        with session(self.engine) as db:
            due = (
                select(OutboxItem.id)
                .where(claimable)
                .where(col(OutboxItem.next_attempt_at) <= now)
                .order_by(col(OutboxItem.id))
                .limit(limit)
            )
            if self.engine.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids = list(db.exec(due))
            if not ids:
                return []
            db.execute(update(OutboxItem).where(col(OutboxItem.id).in_(ids)).where(claimable)
                       .values(status="sending", lease_until=now + self.lease, claim=token))
            items = list(db.exec(select(OutboxItem).where(col(OutboxItem.id).in_(ids))
                                 .where(OutboxItem.claim == token)))
            db.commit()
            return items

    def flush(self) -> FlushReport:
        """Send everything due now, batch after batch; returns what happened."""
        report = FlushReport()
        while True:
            items = self.claim()
            if not items:
                return report
            envelopes = [Envelope(item.id or 0, item.mail_from, item.recipient, item.raw) for item in items]
            results = asyncio.run(send_all(self.smtp, envelopes))
            self._record(results, report)
            if report.retrying and not any(r.ok for r in results):
                return report  # the server is down: stop hammering it, the retry time comes later

    def _record(self, results: list[SendResult], report: FlushReport) -> None:
        now = utcnow()
        with session(self.engine) as db:
            for result in results:
                item = db.get(OutboxItem, result.key)
                if item is None:
                    continue
                item.attempts += 1
                item.lease_until = None
                if result.ok:
                    item.status, item.sent_at, item.last_error = "sent", now, ""
                    report.sent += 1
                    continue
                item.last_error = result.error[:500]
                if result.permanent or now - item.created_at >= self.settings.give_up_after:
                    item.status = "failed"
                    report.failed += 1
                    log.warning("outbox %s failed for good after %d attempts: %s",
                                item.id, item.attempts, item.last_error)
                else:
                    item.status = "pending"
                    item.next_attempt_at = now + self.backoff(item.attempts)
                    report.retrying += 1
                    log.info("outbox %s will be retried (attempt %d): %s", item.id, item.attempts,
                             item.last_error)
                db.add(item)
            db.commit()

    def backoff(self, attempts: int) -> timedelta:
        delay = self.settings.retry_initial * (2 ** max(0, attempts - 1))
        return min(delay, self.settings.retry_max)

    def next_due(self) -> float | None:
        """Seconds until the next pending row is due (0 if one is due now), None if none waits."""
        with session(self.engine) as db:
            first = db.exec(
                select(OutboxItem.next_attempt_at)
                .where(col(OutboxItem.status).in_(("pending", "sending")))
                .order_by(col(OutboxItem.next_attempt_at)).limit(1)
            ).first()
        if first is None:
            return None
        return max(0.0, (first - utcnow()).total_seconds())

    def listing(self, include_sent: bool = False) -> list[OutboxItem]:
        with session(self.engine) as db:
            query = select(OutboxItem).order_by(col(OutboxItem.id))
            if not include_sent:
                query = query.where(col(OutboxItem.status) != "sent")
            return list(db.exec(query))
