"""The outbox: mail queued in the database is claimed, sent, and retried with backoff.

Rows are claimed with a lease, and the claim names its holder (``feedbackd.holder``): several
daemons sharing one PostgreSQL database never send the same row at the same time, a sender that
died on this host has its rows taken over at once by the next claim, and the rows of a sender
on another host, which cannot be checked from here, are taken over when their lease ends.
Connection trouble and 4xx replies are retried with doubling delays until ``give_up_after``;
5xx replies fail the row at once.  ``feedbackd outbox list`` shows what waits or failed.

Delivery is at least once.  A claimed batch is sent in chunks, and what the SMTP server accepted
is marked sent in one commit at least every half second (``MARK_EVERY``) and at the end of the
batch; a sender killed (or cut off from its database) between the server's 250 and that commit —
the duplicate window: the mail accepted in the last half second, at most one claimed batch —
leaves those rows claimed but not marked, and they are sent again when taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col
from sqlmodel import select as orm_select

from feedbackd.config import OutboxSettings, SmtpSettings
from feedbackd.holder import Holder
from feedbackd.logmask import mask_addresses
from feedbackd.mail.send import Envelope, SendResult, SmtpPool
from feedbackd.store.db import session
from feedbackd.store.models import OutboxItem, utcnow
from feedbackd.store.records import OUTBOX
from feedbackd.store.turns import WriteTurns

T = TypeVar("T")

log = logging.getLogger(__name__)

BATCH = 200  # rows per claim
CHUNK_PER_CONNECTION = 10  # rows per SMTP session sent at once
MARK_EVERY = 0.5  # seconds between two commits marking mail sent: the duplicate window
FAULT_ENV = "FEEDBACKD_FAULT"  # test hook: "while-sending" kills the process after one mail went out
EX_TEMPFAIL = 75  # sysexits.h: what `run --once` exits with while mail it could send is left unsent
OVERDUE = timedelta(minutes=1)  # due this long and still unsent after a drain: stuck, not just queued meanwhile


@dataclass
class FlushReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0

    def add(self, other: FlushReport) -> None:
        self.sent += other.sent
        self.retrying += other.retrying
        self.failed += other.failed

    @property
    def total(self) -> int:
        return self.sent + self.retrying + self.failed


@dataclass(frozen=True)
class Claimed:
    id: int
    mail_from: str
    recipient: str
    raw: bytes
    attempts: int
    created_at: datetime


@dataclass
class Backlog:
    """What is left in the outbox, sorted by why it is not sent yet (``run --once`` prints it)."""

    unsent: int = 0  # due now and held by nobody alive: any sender could send them at once
    overdue: int = 0  # of those, due for over OVERDUE: a drain that just ran should have sent them
    held_elsewhere: int = 0  # claimed by a sender on another host: taken over when the lease ends
    lease_ends: datetime | None = None
    hosts: set[str] = field(default_factory=set)
    held_here: int = 0  # claimed by a live process on this host, which is sending them
    waiting: int = 0  # a retry is scheduled after a temporary failure
    next_retry: datetime | None = None

    @property
    def stuck(self) -> int:
        """Rows that could have been sent (or can be once a lease ends) but were not.

        Rows another process queued in the last minute are not counted: that process, or the
        next run, sends them (two ``run --once`` sharing a database both finish with 0).
        """
        return self.overdue + self.held_elsewhere

    @property
    def exit_status(self) -> int:
        """0 when nothing sendable is left (only scheduled retries); EX_TEMPFAIL (75) otherwise."""
        return EX_TEMPFAIL if self.stuck else 0

    def summary(self) -> str:
        parts = []
        if self.unsent:
            parts.append(f"{self.unsent} due and unsent")
        if self.held_elsewhere:
            parts.append(f"{self.held_elsewhere} held by a sender on {', '.join(sorted(self.hosts))} "
                         f"until {_clock(self.lease_ends)}")
        if self.held_here:
            parts.append(f"{self.held_here} being sent by another process on this host")
        if self.waiting:
            parts.append(f"{self.waiting} waiting for a retry from {_clock(self.next_retry)}")
        return "outbox: " + (", ".join(parts) or "nothing left to send")

    def problem(self) -> str:
        """One line for stderr: how many are stuck, why, and when they will be tried."""
        reasons = []
        if self.overdue:
            reasons.append(f"{self.overdue} due for over {OVERDUE.total_seconds():.0f} s that this run could not "
                           "claim (the next run or the daemon tries them)")
        if self.held_elsewhere:
            reasons.append(f"{self.held_elsewhere} claimed by a sender on {', '.join(sorted(self.hosts))} that "
                           f"cannot be checked from here (taken over when its lease ends at {_clock(self.lease_ends)} "
                           "if it is gone)")
        return f"{self.stuck} mail(s) left unsent in the outbox: {'; '.join(reasons)}"


class Outbox:
    """Owns one event loop and SMTP pool: call it from one thread (the outbox thread)."""

    def __init__(self, engine: Engine, smtp: SmtpSettings, settings: OutboxSettings) -> None:
        self.engine = engine
        self.smtp = smtp
        self.settings = settings
        self.lease = smtp.timeout * 4 + timedelta(seconds=60)  # per row, renewed after every chunk
        self.fault = os.environ.get(FAULT_ENV, "")
        self.chunk = 1 if self.fault == "while-sending" else smtp.connections * CHUNK_PER_CONNECTION
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = SmtpPool(smtp)
        self.turns: WriteTurns | None = None  # set by the daemon on SQLite (see store/turns.py)

    def _turn(self) -> contextlib.AbstractContextManager[None]:
        return self.turns.urgent() if self.turns is not None else contextlib.nullcontext()

    def claim(self, limit: int = BATCH) -> list[Claimed]:
        """Take up to ``limit`` due rows: pending ones, and 'sending' ones whose holder is gone.

        A holder is gone when its lease ran out, or at once when it ran on this host and its
        process no longer exists.  The UPDATE repeats the due test, so when two senders picked
        the same candidates only the first write wins (SQLite serialises writers; PostgreSQL
        also skips locked rows).
        """
        holder = str(Holder.current())
        with self._turn(), self.engine.begin() as conn:
            now = utcnow()  # taken once connected: a row committed while connecting is due too
            claimable = _claimable(now, self._orphans(conn, now))
            due = (select(OUTBOX.c.id).where(claimable).where(OUTBOX.c.next_attempt_at <= now)
                   .order_by(OUTBOX.c.id).limit(limit))
            if self.engine.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids)).where(claimable)
                         .values(status="sending", lease_until=now + self.lease, claim=holder))
            rows = conn.execute(
                select(OUTBOX.c.id, OUTBOX.c.mail_from, OUTBOX.c.recipient, OUTBOX.c.raw, OUTBOX.c.attempts,
                       OUTBOX.c.created_at)
                .where(OUTBOX.c.id.in_(ids)).where(OUTBOX.c.claim == holder).order_by(OUTBOX.c.id)).all()
        return [Claimed(*row) for row in rows]

    def _orphans(self, conn: Connection, now: datetime) -> list[str]:
        """Claims under a running lease whose holder ran on this host and is gone."""
        held = conn.execute(select(OUTBOX.c.claim, func.count()).where(OUTBOX.c.status == "sending")
                            .where(OUTBOX.c.lease_until >= now).group_by(OUTBOX.c.claim)).all()
        orphans = []
        for claim, count in held:
            holder = Holder.parse(claim)
            if holder is not None and holder.gone():
                log.warning("outbox: taking over %d mail(s) from sender pid %d, which is gone; any it had "
                            "sent but not yet marked are sent again (at least once)", count, holder.pid)
                orphans.append(str(claim))
        return orphans

    def flush(self) -> FlushReport:
        """Send everything due now, batch after batch; returns what happened."""
        report = FlushReport()
        while True:
            items = self.claim()
            if not items:
                return report
            if not self._send_batch(items, report):
                return report  # the server is down: stop hammering it, the retry time comes later

    def drain(self, rounds: int = 3) -> FlushReport:
        """Flush until no row is left that any sender could send now (the last step of ``run --once``).

        Another process sharing the database may queue mail meanwhile; a few more rounds send that
        too.  Whatever is still left is counted by ``backlog`` and said, not passed over.
        """
        report = FlushReport()
        for _ in range(rounds):
            flushed = self.flush()
            report.add(flushed)
            if not flushed.total or not self.backlog().unsent:
                break
        return report

    def _send_batch(self, items: list[Claimed], report: FlushReport) -> bool:
        """Send one claimed batch chunk by chunk; False if the server refused a whole chunk.

        Results are marked in one commit every ``MARK_EVERY`` seconds (and at the end of the batch,
        or when the server fails): a sender that commits after every few mails holds up intake's
        writes (measured: a third of the backlog throughput on SQLite), while this keeps the
        duplicate window to the mail accepted in the last half second.
        """
        done: list[Claimed] = []
        results: list[SendResult] = []
        marked = time.monotonic()
        for start, chunk in _chunks(items, self.chunk):
            envelopes = [Envelope(item.id, item.mail_from, item.recipient, item.raw) for item in chunk]
            chunk_results = self._run(self._pool.send_all(envelopes))
            if self.fault == "while-sending":
                os.kill(os.getpid(), signal.SIGKILL)  # test hook: sent, claimed, not yet marked sent
            done += chunk
            results += chunk_results
            rest = [item.id for item in items[start + len(chunk):]]
            refused = not any(r.ok for r in chunk_results) and any(not r.permanent for r in chunk_results)
            if refused or not rest or time.monotonic() - marked >= MARK_EVERY:
                self._record(done, results, report, rest)
                done, results, marked = [], [], time.monotonic()
            if refused:
                self._defer(rest, chunk_results)
                return False
        return True

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

    def _record(self, items: list[Claimed], results: list[SendResult], report: FlushReport,
                rest: list[int]) -> None:
        """Mark one chunk in one commit, and renew the lease of the batch's rows still to send."""
        now = utcnow()
        by_id = {item.id: item for item in items}
        sent = [{"_id": r.key} for r in results if r.ok]
        report.sent += len(sent)
        with self._turn(), self.engine.begin() as conn:
            if sent:
                conn.execute(_MARK_SENT, [{**row, "sent_at": now} for row in sent])
            for result in (r for r in results if not r.ok):
                self._record_failure(conn, by_id[result.key], result, now, report)
            if rest:
                conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(rest)).where(OUTBOX.c.status == "sending")
                             .values(lease_until=now + self.lease))

    def _record_failure(self, conn: Connection, item: Claimed, result: SendResult, now: datetime,
                        report: FlushReport) -> None:
        attempts = item.attempts + 1
        error = result.error[:500]
        values: dict[str, Any]
        if result.permanent or now - item.created_at >= self.settings.give_up_after:
            values = {"status": "failed"}
            report.failed += 1
            log.warning("outbox %s failed for good after %d attempts: %s", item.id, attempts, mask_addresses(error))
        else:
            values = {"status": "pending", "next_attempt_at": now + self.backoff(attempts)}
            report.retrying += 1
            log.info("outbox %s will be retried (attempt %d): %s", item.id, attempts, mask_addresses(error))
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == item.id).values(
            attempts=attempts, lease_until=None, last_error=error, **values))

    def _defer(self, rest: list[int], results: list[SendResult]) -> None:
        """The server refused a whole chunk: give back this batch's rows and every other due row,
        untried and uncounted, for the first retry time, so nothing due is left behind unsaid."""
        now = utcnow()
        later = now + self.backoff(1)
        with self._turn(), self.engine.begin() as conn:
            if rest:
                conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(rest)).where(OUTBOX.c.status == "sending")
                             .values(status="pending", lease_until=None, claim=None, next_attempt_at=later))
            deferred = conn.execute(update(OUTBOX).where(OUTBOX.c.status == "pending")
                                    .where(OUTBOX.c.next_attempt_at <= now).values(next_attempt_at=later)).rowcount
        if rest or deferred:
            log.info("outbox: the SMTP server is failing (%s); %d more mail(s) wait for the retry in %.0f s",
                     mask_addresses(results[0].error[:200]) if results else "", len(rest) + deferred,
                     (later - now).total_seconds())

    def backoff(self, attempts: int) -> timedelta:
        delay: timedelta = self.settings.retry_initial * (2 ** max(0, attempts - 1))
        return min(delay, self.settings.retry_max)

    def next_due(self) -> float | None:
        """Seconds until a row may next be claimed (0 if one is due now), None if none waits.

        A pending row is due at its retry time; a row another sender holds, when its lease ends.
        """
        with self.engine.connect() as conn:
            retry = conn.execute(select(func.min(OUTBOX.c.next_attempt_at))
                                 .where(OUTBOX.c.status == "pending")).scalar()
            lease = conn.execute(select(func.min(OUTBOX.c.lease_until))
                                 .where(OUTBOX.c.status == "sending")).scalar()
        times = [t for t in (_aware(retry), _aware(lease)) if t is not None]
        if not times:
            return None
        return max(0.0, (min(times) - utcnow()).total_seconds())

    def backlog(self) -> Backlog:
        """Count what is left to send, and why (see Backlog)."""
        now = utcnow()
        left = Backlog()
        with self.engine.connect() as conn:
            pending = OUTBOX.c.status == "pending"
            left.unsent, left.overdue = conn.execute(
                select(func.count(), func.count().filter(OUTBOX.c.next_attempt_at < now - OVERDUE))
                .where(pending).where(OUTBOX.c.next_attempt_at <= now)).one()
            left.waiting, first = conn.execute(select(func.count(), func.min(OUTBOX.c.next_attempt_at))
                                               .where(pending).where(OUTBOX.c.next_attempt_at > now)).one()
            held = conn.execute(
                select(OUTBOX.c.claim, func.count(), func.min(OUTBOX.c.lease_until), func.max(OUTBOX.c.lease_until))
                .where(OUTBOX.c.status == "sending").group_by(OUTBOX.c.claim)).all()
        left.next_retry = _aware(first)
        for claim, count, first_end, last_end in held:
            _sort_held(left, Holder.parse(claim), count, _aware(first_end), _aware(last_end), now)
        return left

    def listing(self, include_sent: bool = False) -> list[OutboxItem]:
        with session(self.engine) as db:
            query = orm_select(OutboxItem).order_by(col(OutboxItem.id))
            if not include_sent:
                query = query.where(col(OutboxItem.status) != "sent")
            return list(db.exec(query))


def _claimable(now: datetime, orphans: list[str]) -> ColumnElement[bool]:
    sending = OUTBOX.c.status == "sending"
    expired = sending & (OUTBOX.c.lease_until < now)
    if orphans:
        return or_(OUTBOX.c.status == "pending", expired, sending & OUTBOX.c.claim.in_(orphans))
    return or_(OUTBOX.c.status == "pending", expired)


def _sort_held(left: Backlog, holder: Holder | None, count: int, first_end: datetime | None,
               last_end: datetime | None, now: datetime) -> None:
    if first_end is None or first_end < now or (holder is not None and holder.gone()):
        left.unsent += count  # the lease ran out, or the holder died: claimable now
    elif holder is not None and holder.here():
        left.held_here += count
    else:
        left.held_elsewhere += count
        left.hosts.add(holder.host if holder is not None else "an unknown host")
        if last_end is not None and (left.lease_ends is None or last_end > left.lease_ends):
            left.lease_ends = last_end


def _chunks(items: list[Claimed], size: int) -> Iterator[tuple[int, list[Claimed]]]:
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


def _aware(value: Any) -> datetime | None:
    """SQLite gives naive UTC datetimes back; PostgreSQL aware ones."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=utcnow().tzinfo)


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S UTC") if moment is not None else "an unknown time"


_MARK_SENT = (update(OUTBOX).where(OUTBOX.c.id == bindparam("_id"))
              .values(status="sent", attempts=OUTBOX.c.attempts + 1, lease_until=None, last_error=""))
