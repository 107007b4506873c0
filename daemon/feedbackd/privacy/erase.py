"""``feedbackd privacy erase ADDRESS``: remove or pseudonymise everything held about one person.

What goes, found by ``find.find`` (the dry run lists exactly that and changes nothing):

- their own cases (they are the requester) are purged as retention purges them
  (``jobs.purge.purge_case``): every address → the stable pseudonym, names emptied, subjects, texts,
  attachment names and free text of events → ``[purged]``, raw messages and attachment files deleted,
  outgoing mail emptied; each gets an ``erased`` event with counts and no address, and ``purged_at``,
  so the timed jobs leave it alone and no mail goes to the pseudonym;
- in other citizens' cases (they were copied, or wrote): their messages lose text, subject, name,
  raw bytes and attachments; their address becomes the pseudonym in the participant list, in the
  To/Cc of the case's messages, in events, and where others' stored text and raw bytes name it; each
  such case gets a ``participant-erased`` event with counts.  Everything the other citizen wrote stays;
- outgoing mail to them: the recipient becomes the pseudonym and the mail itself goes; what was
  still waiting is not sent (status failed, "erased on request");
- quarantined mail from them: raw bytes deleted, the entry kept as resolved with the pseudonym;
- their messages in the IMAP folder are deleted by UID (``jobs.purge``; a failure is retried by the
  daily purge job, or by running the erase again).

Kept, so the reports of the period read the same: case numbers, status, kind, routing, department,
priority, tags, dates and deadlines, events' kinds and times, message directions, kinds and dates.
A later mail from them starts a new case: they take part in no case any more.

Staff addresses (in the rules) and our own addresses are refused: erasing a staff member is out of
scope (their actions are the case history).

SQLite: every connection runs with ``secure_delete``; the erase then VACUUMs and truncates the WAL,
so neither the database file nor its WAL holds a trace.  PostgreSQL: the touched tables are
VACUUMed, which frees the dead rows for reuse (their bytes stay on disk until overwritten).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.engine import Connection, Engine

from feedbackd.cases import CaseNumbers
from feedbackd.config import Settings
from feedbackd.jobs import purge
from feedbackd.jobs.purge import MARKER, PurgeResult, pseudonym, pseudonym_key
from feedbackd.privacy.find import Holdings, Person, find
from feedbackd.store.records import ATTACHMENTS, EVENTS, MESSAGES, OUTBOX, PARTICIPANTS, QUARANTINE, RAW

log = logging.getLogger(__name__)

ERASED = "erased on request"
COUNTS = ("cases", "other_cases", "messages", "mentions", "raw_messages", "attachment_files", "outgoing",
          "quarantine", "participants", "events", "mailbox_deleted", "mailbox_pending", "mailbox_lost")
VACUUMED = ("message", "raw_message", "attachment", "case_event", "outbox", "participant", "quarantine", "case")


@dataclass
class Erasure:
    """What an erase did (or, dry, would do)."""

    dry_run: bool
    cases: list[str] = field(default_factory=list)  # their own cases, by number
    other_cases: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "cases": self.cases, "other_cases": self.other_cases, "counts": self.counts}


def erase(engine: Engine, settings: Settings, person: Person, now: datetime, *, dry_run: bool = False) -> Erasure:
    numbers = CaseNumbers(settings.cases)
    with engine.connect() as conn:
        purge.secure(conn)
        with conn.begin():
            found = find(conn, person)
            owned = [purge.describe(conn, case_id, now, numbers) for case_id in found.own_cases]
        result = _planned(found, owned, numbers, dry_run)
        if dry_run or found.empty():
            return result
        key = pseudonym_key(settings.paths.data)
        done = PurgeResult()
        hashes: set[str] = set()
        for case in owned:
            hashes |= purge.purge_case(conn, case, key, now, done, kind="erased")
        with conn.begin():
            hashes |= _erase_elsewhere(conn, found, person, key, now, result)
        result.counts["raw_messages"] += done.counts.get("raw_messages", 0)
        result.counts["attachment_files"] = purge.delete_files(conn, settings.paths.data, hashes)
        mailbox = PurgeResult()
        purge.purge_mailbox(conn, settings.imap, now, mailbox)
        _quarantine_on_server(conn, settings, pseudonym(key, person.canonical), mailbox)
        for name in ("mailbox_deleted", "mailbox_pending", "mailbox_lost"):
            result.counts[name] = mailbox.counts.get(name, 0)
    compact(engine)
    log.info("privacy erase: %d own case(s), %d other case(s), %d message(s)", len(result.cases),
             len(result.other_cases), result.counts["messages"])
    return result


def _planned(found: Holdings, owned: list[purge.Expired], numbers: CaseNumbers, dry_run: bool) -> Erasure:
    result = Erasure(dry_run, [c.number for c in owned], [numbers.format(c) for c in found.other_cases])
    counts = result.counts
    counts["cases"] = len(owned)
    counts["other_cases"] = len(found.other_cases)
    counts["messages"] = sum(c.messages for c in owned) + len(found.their_messages)
    counts["mentions"] = len(found.mentioning)
    counts["outgoing"] = len(found.outbox)
    counts["quarantine"] = len(found.quarantine)
    counts["participants"] = len(found.participants)
    counts["events"] = len(found.events)
    if dry_run:
        counts["raw_messages"] = sum(c.raw_messages for c in owned)
        counts["attachment_files"] = sum(c.attachments for c in owned)
        counts["mailbox_pending"] = sum(c.mailbox_copies for c in owned)
    return result


# -- outside their own cases -------------------------------------------------------------------------


@dataclass
class _Redactor:
    """Their address → the pseudonym in text, bytes and JSON; the pattern takes any spelling of it."""

    person: Person
    key: bytes
    text: re.Pattern[str] = field(init=False)
    data: re.Pattern[bytes] = field(init=False)

    def __post_init__(self) -> None:
        local, _, domain = self.person.canonical.rpartition("@")
        body = rf"(?<![\w.+-]){re.escape(local)}(?:\+[^@\s<>\"]*)?@{re.escape(domain)}(?![\w-]|\.\w)"
        self.text = re.compile(body, re.IGNORECASE)
        self.data = re.compile(body.encode("utf-8"), re.IGNORECASE)

    @property
    def stand_in(self) -> str:
        return pseudonym(self.key, self.person.canonical)

    def address(self, value: str) -> str:
        return pseudonym(self.key, value) if self.person.matches(value) else value

    def addresses(self, values: list[str] | None) -> list[str]:
        return [self.address(v) for v in values or []]

    def in_text(self, value: str) -> str:
        return self.text.sub(self.stand_in, value)

    def in_bytes(self, value: bytes) -> bytes:
        return self.data.sub(self.stand_in.encode("ascii"), value)

    def in_json(self, value: Any, their_words: bool = False) -> Any:
        if isinstance(value, dict):
            return {k: self.in_json(v, their_words or k in purge.FREE_TEXT_KEYS) for k, v in value.items()}
        if isinstance(value, list):
            return [self.in_json(v, their_words) for v in value]
        if isinstance(value, str):
            if their_words and value:
                return MARKER
            return self.in_text(value)
        return value


def _erase_elsewhere(conn: Connection, found: Holdings, person: Person, key: bytes, now: datetime,
                     result: Erasure) -> set[str]:
    """Their traces outside their own cases, in one transaction; returns the attachment hashes let go."""
    redact = _Redactor(person, key)
    raws, hashes = _their_messages(conn, found.their_messages, redact)
    _mentions(conn, found.mentioning, redact)
    _participants(conn, found.participants, redact)
    _outbox(conn, found, redact)
    _events(conn, found.events, redact)
    quarantined = _quarantine(conn, found.quarantine, redact)
    result.counts["raw_messages"] += purge.delete_raw(conn, raws) + _orphan_raw(conn, quarantined - raws)
    per_case: dict[int, int] = dict.fromkeys(found.other_cases, 0)
    for case_id in conn.execute(select(MESSAGES.c.case_id).where(MESSAGES.c.id.in_(found.their_messages))).scalars():
        if case_id is not None:
            per_case[int(case_id)] = per_case.get(int(case_id), 0) + 1
    rows = [{"case_id": case_id, "at": now, "kind": "participant-erased", "actor": "system",
             "detail": {"messages": n, "reason": ERASED}} for case_id, n in per_case.items()]
    if rows:
        conn.execute(insert(EVENTS), rows)
    return hashes


def _their_messages(conn: Connection, ids: list[int], redact: _Redactor) -> tuple[set[str], set[str]]:
    raws: set[str] = set()
    if not ids:
        return raws, set()
    rows = conn.execute(select(MESSAGES.c.id, MESSAGES.c.from_addr, MESSAGES.c.to_addrs, MESSAGES.c.cc_addrs,
                               MESSAGES.c.raw_sha256).where(MESSAGES.c.id.in_(ids))).all()
    for row_id, sender, to_addrs, cc_addrs, raw in rows:
        if raw:
            raws.add(raw)
        conn.execute(update(MESSAGES).where(MESSAGES.c.id == row_id).values(
            from_addr=redact.address(sender), from_name="", subject=MARKER, text=MARKER, raw_sha256=None,
            to_addrs=redact.addresses(to_addrs), cc_addrs=redact.addresses(cc_addrs)))
    attached = ATTACHMENTS.c.message_id.in_(ids)
    hashes = {h for h in conn.execute(select(ATTACHMENTS.c.sha256).where(attached)).scalars() if h}
    conn.execute(update(ATTACHMENTS).where(attached).values(filename=MARKER, sha256=None))
    return raws, hashes


def _mentions(conn: Connection, ids: list[int], redact: _Redactor) -> None:
    """Others' messages that name them: the address goes from To/Cc, the text and the raw headers."""
    if not ids:
        return
    rows = conn.execute(select(MESSAGES.c.id, MESSAGES.c.to_addrs, MESSAGES.c.cc_addrs, MESSAGES.c.text,
                               MESSAGES.c.raw_sha256).where(MESSAGES.c.id.in_(ids))).all()
    for row_id, to_addrs, cc_addrs, text, raw in rows:
        conn.execute(update(MESSAGES).where(MESSAGES.c.id == row_id).values(
            to_addrs=redact.addresses(to_addrs), cc_addrs=redact.addresses(cc_addrs), text=redact.in_text(text)))
        if raw:
            _redact_raw(conn, raw, redact)


def _redact_raw(conn: Connection, digest: str, redact: _Redactor) -> None:
    """The key stays the digest of the bytes as fetched (it dedupes a refetch); the bytes lose the address."""
    data = conn.execute(select(RAW.c.data).where(RAW.c.sha256 == digest)).scalar()
    if data is None:
        return
    new = redact.in_bytes(bytes(data))
    if new != data:
        conn.execute(update(RAW).where(RAW.c.sha256 == digest).values(data=new, size=len(new)))


def _participants(conn: Connection, ids: list[int], redact: _Redactor) -> None:
    for row_id, case_id in conn.execute(select(PARTICIPANTS.c.id, PARTICIPANTS.c.case_id).where(
            PARTICIPANTS.c.id.in_(ids))).all():
        taken = conn.execute(select(exists().where(PARTICIPANTS.c.case_id == case_id,
                                                   PARTICIPANTS.c.address == redact.stand_in))).scalar()
        if taken:  # two spellings of one address: (case_id, address) is unique
            conn.execute(delete(PARTICIPANTS).where(PARTICIPANTS.c.id == row_id))
        else:
            conn.execute(update(PARTICIPANTS).where(PARTICIPANTS.c.id == row_id).values(address=redact.stand_in))


def _outbox(conn: Connection, found: Holdings, redact: _Redactor) -> None:
    """Mail to them loses the mail itself (and is not sent if it waited); mail to others that named them in
    its headers (a copy of an answer) loses the address."""
    for row_id, status in conn.execute(select(OUTBOX.c.id, OUTBOX.c.status).where(
            OUTBOX.c.id.in_(found.outbox))).all():
        waiting = status in ("pending", "sending")
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == row_id).values(
            recipient=redact.stand_in, recipient_key=redact.stand_in, raw=b"", claim=None, lease_until=None,
            status="failed" if waiting else status, last_error=ERASED if waiting else ""))
    others = (select(OUTBOX.c.id, OUTBOX.c.raw).where(OUTBOX.c.case_id.in_(found.other_cases))
              .where(OUTBOX.c.id.not_in(found.outbox)))
    for row_id, raw in conn.execute(others).all():
        new = redact.in_bytes(bytes(raw))
        if new != raw:
            conn.execute(update(OUTBOX).where(OUTBOX.c.id == row_id).values(raw=new))


def _events(conn: Connection, ids: list[int], redact: _Redactor) -> None:
    for row_id, actor, detail in conn.execute(select(EVENTS.c.id, EVENTS.c.actor, EVENTS.c.detail).where(
            EVENTS.c.id.in_(ids))).all():
        theirs = redact.person.matches(actor)
        conn.execute(update(EVENTS).where(EVENTS.c.id == row_id).values(
            actor=redact.stand_in if theirs else actor, detail=redact.in_json(detail, their_words=theirs)))


def _quarantine(conn: Connection, ids: list[int], redact: _Redactor) -> set[str]:
    """Quarantined mail from them: kept as a resolved entry under the pseudonym; returns its raw hashes."""
    raws: set[str] = set()
    for row_id, raw in conn.execute(select(QUARANTINE.c.id, QUARANTINE.c.raw_sha256).where(
            QUARANTINE.c.id.in_(ids))).all():
        raws.add(raw)
        conn.execute(update(QUARANTINE).where(QUARANTINE.c.id == row_id).values(
            sender=redact.stand_in, subject=MARKER, resolved=True))
    return raws


def _orphan_raw(conn: Connection, raws: set[str]) -> int:
    """The raw bytes of their quarantined mail (``delete_raw`` would drop the entries too, and they are kept
    for their UIDs), unless a kept message points at the same bytes."""
    if not raws:
        return 0
    kept = exists().where(MESSAGES.c.raw_sha256 == RAW.c.sha256)
    return int(conn.execute(delete(RAW).where(RAW.c.sha256.in_(raws), ~kept)).rowcount or 0)


def _quarantine_on_server(conn: Connection, settings: Settings, stand_in: str, result: PurgeResult) -> None:
    """Their quarantined mail on the IMAP server (entries of this or an earlier erase that still hold a UID)."""
    with conn.begin():
        rows = conn.execute(select(QUARANTINE.c.id, QUARANTINE.c.mailbox_uid).where(
            QUARANTINE.c.sender == stand_in, QUARANTINE.c.mailbox_uid.is_not(None))).all()
    if not rows:
        return
    outcome = purge.delete_on_server(conn, settings.imap, sorted({int(uid) for _, uid in rows}))
    if outcome in ("deleted", "lost"):
        with conn.begin():
            conn.execute(update(QUARANTINE).where(QUARANTINE.c.id.in_([r for r, _ in rows])).values(mailbox_uid=None))
    result.add({"deleted": "mailbox_deleted", "lost": "mailbox_lost"}.get(outcome, "mailbox_pending"), len(rows))


# -- no trace in the files --------------------------------------------------------------------------


def compact(engine: Engine) -> None:
    """SQLite: VACUUM (the file is rewritten without free pages), then the WAL checkpointed and truncated.
    PostgreSQL: VACUUM the touched tables (dead rows become reusable space)."""
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
        finally:
            raw.close()
        purge.checkpoint(engine)
    elif engine.dialect.name == "postgresql":
        tables = ", ".join(f'"{t}"' for t in VACUUMED)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM {tables}")
