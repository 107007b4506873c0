"""Retention: closed cases older than ``jobs.retention`` lose their personal data, their figures stay.

What goes, per expired case (status closed, ``closed_at`` — or ``updated_at`` when a case was closed
before ``closed_at`` existed — older than the retention), in one transaction per case:

- addresses (requester, participants, message From/To/Cc, outbox recipients, events' actors and
  any address inside event details) become a stable pseudonym ``p-<hex>@purged.invalid``:
  HMAC-SHA256 of the lower-case address, so one citizen's purged cases still count as one citizen;
- names are emptied; subjects, message text, attachment file names, notes and other free text in
  event details become ``[purged]``; the satisfaction answer keeps its score, not its words;
- raw messages are deleted unless a message that is kept still points at the same bytes; their
  quarantine entries are deleted; the outbox rows keep purpose and times but lose the mail itself;
- attachment files are deleted once no kept row names their hash (after the commit: a crash in
  between leaves an orphan file, never a row without its file);
- the copies on the IMAP server are deleted (UID STORE +FLAGS \\Deleted, UID EXPUNGE) when the folder's
  UIDVALIDITY still equals ``mailbox_state``'s.  Until that worked the message keeps its
  ``mailbox_uid``: that is the flag a later run retries (the case gets one ``mailbox-purge-pending``
  event); a changed UIDVALIDITY makes the UIDs meaningless, which is recorded and given up.

Kept, so the report for the period reads the same: created/resolved/closed times, status, kind,
department, priority, tags, assignee, deadlines, the satisfaction score, events' kinds and times,
message directions, kinds and dates, outbox purposes and times.  Message-IDs are kept (threading).

The pseudonym key is 32 random bytes in ``<paths.data>/pseudonym.key`` (0600, made once, atomically),
not in the database and not the staff secret: a copied database alone cannot test guessed addresses
against the pseudonyms, rotating the staff secret does not split a citizen in two, and it works
without staff mail.  Back it up with the attachments; a new key only means later purges give the
same citizen another pseudonym.

SQLite keeps deleted bytes in free pages and the WAL: the purging connection runs with
``PRAGMA secure_delete=ON`` (the cells and pages it frees are zeroed, and so are pages it rewrites),
and the WAL is checkpointed and truncated afterwards (tests/test_purge.py reads the file's bytes; with
secure_delete off they fail).  Bytes freed earlier by intake's own updates, in pages the purge never
rewrites, are not covered: ``PRAGMA secure_delete=FAST`` on every connection, or a ``VACUUM``, would.
PostgreSQL keeps dead tuples until (auto)vacuum reuses the space; that is left to the server.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from feedbackd.cases import CaseNumbers
from feedbackd.config import ImapSettings, Settings
from feedbackd.mail.source import CONNECTION_ERRORS, ImapSource, SourceError
from feedbackd.store.files import FILE_MODE, private_dirs
from feedbackd.store.records import (
    ATTACHMENTS,
    CASES,
    EVENTS,
    MAILBOXES,
    MESSAGES,
    OUTBOX,
    PARTICIPANTS,
    QUARANTINE,
    RAW,
)

if TYPE_CHECKING:
    from feedbackd.jobs.base import JobContext

log = logging.getLogger(__name__)

MARKER = "[purged]"
PSEUDONYM_DOMAIN = "purged.invalid"
KEY_FILE = "pseudonym.key"
IMAP_FAILURES: tuple[type[BaseException], ...] = (SourceError, *CONNECTION_ERRORS)
# Keys of event details that hold free text (notes, reasons, refused command lines, subjects).
FREE_TEXT_KEYS = frozenset({"text", "reason", "errors", "subject", "note", "name", "body", "error", "detail"})




@dataclass(frozen=True)
class Expired:
    """One case that would go, with what it holds (the dry run's line)."""

    case_id: int
    number: str
    closed: datetime
    messages: int
    raw_messages: int
    attachments: int
    mailbox_copies: int

    def as_dict(self) -> dict[str, Any]:
        return {"case": self.number, "closed": self.closed.isoformat(), "messages": self.messages,
                "raw_messages": self.raw_messages, "attachments": self.attachments,
                "mailbox_copies": self.mailbox_copies}


@dataclass
class PurgeResult:
    """What a run did (or, dry, would do): per-case lines and totals."""

    cases: list[Expired] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


# -- the job and the command -----------------------------------------------------------------------


def purge(ctx: JobContext) -> dict[str, int]:
    """The daily job: purge every expired case, retry pending mailbox deletions; counts for the log."""
    return run_purge(ctx.engine, ctx.settings, ctx.now, numbers=ctx.numbers).counts


def run_purge(engine: Engine, settings: Settings, now: datetime, *, numbers: CaseNumbers | None = None,
              dry_run: bool = False) -> PurgeResult:
    """Purge (or with ``dry_run`` only list) the cases expired at ``now``; ``feedbackd purge`` calls this."""
    numbers = numbers or CaseNumbers(settings.cases)
    cutoff = now - settings.jobs.retention
    result = PurgeResult(counts={"cases": 0, "messages": 0, "raw_messages": 0, "attachment_files": 0,
                                 "mailbox_deleted": 0, "mailbox_pending": 0, "mailbox_lost": 0})
    with engine.connect() as conn:
        secure(conn)
        result.cases = [describe(conn, case_id, closed, numbers) for case_id, closed in _expired(conn, cutoff)]
        conn.rollback()
        if dry_run:
            result.counts["cases"] = len(result.cases)
            for case in result.cases:
                result.add("messages", case.messages)
                result.add("raw_messages", case.raw_messages)
                result.add("mailbox_pending", case.mailbox_copies)
            return result
        key = pseudonym_key(settings.paths.data)
        for case in result.cases:
            hashes = purge_case(conn, case, key, now, result)
            result.add("attachment_files", delete_files(conn, settings.paths.data, hashes))
        purge_mailbox(conn, settings.imap, now, result)
    checkpoint(engine)
    if result.counts["cases"]:
        log.info("purged %d case(s) past retention", result.counts["cases"])
    return result


# -- finding -------------------------------------------------------------------------------------


def _expired(conn: Connection, cutoff: datetime) -> list[tuple[int, datetime]]:
    closed = func.coalesce(CASES.c.closed_at, CASES.c.updated_at)
    query = (select(CASES.c.id, closed).where(CASES.c.status == "closed", CASES.c.purged_at.is_(None),
                                              closed <= cutoff).order_by(CASES.c.id))
    return [(int(row[0]), row[1]) for row in conn.execute(query)]


def describe(conn: Connection, case_id: int, closed: datetime, numbers: CaseNumbers) -> Expired:
    messages = select(MESSAGES.c.id).where(MESSAGES.c.case_id == case_id)
    count = conn.execute(select(func.count()).select_from(MESSAGES).where(MESSAGES.c.case_id == case_id))
    raws = conn.execute(select(func.count(func.distinct(MESSAGES.c.raw_sha256))).where(
        MESSAGES.c.case_id == case_id))
    files = conn.execute(select(func.count()).select_from(ATTACHMENTS).where(
        ATTACHMENTS.c.message_id.in_(messages), ATTACHMENTS.c.sha256.is_not(None)))
    copies = conn.execute(select(func.count()).select_from(MESSAGES).where(
        MESSAGES.c.case_id == case_id, MESSAGES.c.mailbox_uid.is_not(None)))
    return Expired(case_id, numbers.format(case_id), closed, int(count.scalar_one()), int(raws.scalar_one()),
                   int(files.scalar_one()), int(copies.scalar_one()))


# -- pseudonyms ----------------------------------------------------------------------------------


def pseudonym_key(data_dir: Path) -> bytes:
    """The key of the pseudonyms, made on first use; two processes racing agree on one (link is atomic)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        private_dirs(data_dir)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            tmp.unlink()
    key = path.read_bytes()
    if len(key) < 32:
        raise ValueError(f"{path} is damaged (shorter than 32 bytes); restore it from the backup")
    return key


def pseudonym(key: bytes, address: str) -> str:
    """The stable stand-in of an address: the same address (any case) always gives the same one."""
    if not address or address.endswith("@" + PSEUDONYM_DOMAIN):
        return address
    digest = hmac.new(key, address.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()
    return f"p-{digest[:32]}@{PSEUDONYM_DOMAIN}"


def _scrub(value: Any, key: bytes, free_text: bool = False) -> Any:
    """Event details and similar JSON: addresses → pseudonyms, free text → the marker, the rest kept."""
    if isinstance(value, dict):
        return {k: _scrub(v, key, free_text or k in FREE_TEXT_KEYS) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, key, free_text) for v in value]
    if isinstance(value, str):
        if free_text:
            return MARKER if value else value
        return pseudonym(key, value) if "@" in value else value
    return value


# -- purging one case ----------------------------------------------------------------------------


def purge_case(conn: Connection, case: Expired, key: bytes, now: datetime, result: PurgeResult,
               kind: str = "purged") -> set[str]:
    """One case in one transaction, recorded by a ``kind`` event; returns the attachment hashes it let go of."""
    with conn.begin():
        row = conn.execute(select(CASES).where(CASES.c.id == case.case_id)).mappings().one()
        if row["purged_at"] is not None:  # another process got there first
            return set()
        message_ids = [int(m) for m in conn.execute(select(MESSAGES.c.id).where(
            MESSAGES.c.case_id == case.case_id)).scalars()]
        _purge_case_row(conn, row, key, now)
        _purge_participants(conn, case.case_id, key)
        raws = _purge_messages(conn, case.case_id, key)
        hashes = _purge_attachments(conn, message_ids)
        removed = delete_raw(conn, raws)
        _purge_outbox_and_events(conn, case.case_id, key)
        detail = {"messages": case.messages, "raw_messages": removed, "attachments": case.attachments,
                  "mailbox_copies": case.mailbox_copies}
        conn.execute(insert(EVENTS), {"case_id": case.case_id, "at": now, "kind": kind, "detail": detail,
                                      "actor": "system"})
    result.add("cases", 1)
    result.add("messages", case.messages)
    result.add("raw_messages", removed)
    return hashes


def _purge_case_row(conn: Connection, row: Any, key: bytes, now: datetime) -> None:
    values: dict[str, Any] = {"requester": pseudonym(key, row["requester"]), "requester_name": "",
                              "subject": MARKER, "routing": _scrub(row["routing"], key), "purged_at": now}
    satisfaction = row["satisfaction"]
    if isinstance(satisfaction, dict):  # the score stays (reports average it), its words go
        values["satisfaction"] = {k: v for k, v in satisfaction.items() if not isinstance(v, str) or k == "score"}
    conn.execute(update(CASES).where(CASES.c.id == row["id"]).values(**values))


def _purge_participants(conn: Connection, case_id: int, key: bytes) -> None:
    rows = conn.execute(select(PARTICIPANTS.c.id, PARTICIPANTS.c.address).where(
        PARTICIPANTS.c.case_id == case_id)).all()
    taken: set[str] = set()
    for row_id, address in rows:
        new = pseudonym(key, address)
        if new in taken:  # two spellings of one address: (case_id, address) is unique
            conn.execute(delete(PARTICIPANTS).where(PARTICIPANTS.c.id == row_id))
            continue
        taken.add(new)
        conn.execute(update(PARTICIPANTS).where(PARTICIPANTS.c.id == row_id).values(address=new))


def _purge_messages(conn: Connection, case_id: int, key: bytes) -> set[str]:
    """Every message of the case loses addresses, name, subject and text; returns its raw hashes."""
    rows = conn.execute(select(MESSAGES.c.id, MESSAGES.c.from_addr, MESSAGES.c.to_addrs, MESSAGES.c.cc_addrs,
                               MESSAGES.c.raw_sha256).where(MESSAGES.c.case_id == case_id)).all()
    raws: set[str] = set()
    for row_id, sender, to_addrs, cc_addrs, raw in rows:
        if raw:
            raws.add(raw)
        conn.execute(update(MESSAGES).where(MESSAGES.c.id == row_id).values(
            from_addr=pseudonym(key, sender), from_name="", subject=MARKER, text=MARKER, raw_sha256=None,
            to_addrs=[pseudonym(key, a) for a in to_addrs or []],
            cc_addrs=[pseudonym(key, a) for a in cc_addrs or []]))
    return raws


def _purge_attachments(conn: Connection, message_ids: list[int]) -> set[str]:
    if not message_ids:
        return set()
    rows = ATTACHMENTS.c.message_id.in_(message_ids)
    hashes = {h for h in conn.execute(select(ATTACHMENTS.c.sha256).where(rows)).scalars() if h}
    conn.execute(update(ATTACHMENTS).where(rows).values(filename=MARKER, sha256=None))
    return hashes


def delete_raw(conn: Connection, raws: set[str]) -> int:
    """Raw bytes no kept message points at (this case's messages no longer do), and their quarantine entries."""
    if not raws:
        return 0
    conn.execute(delete(QUARANTINE).where(QUARANTINE.c.raw_sha256.in_(raws)))
    kept = exists().where(MESSAGES.c.raw_sha256 == RAW.c.sha256)
    return int(conn.execute(delete(RAW).where(RAW.c.sha256.in_(raws), ~kept)).rowcount or 0)


def _purge_outbox_and_events(conn: Connection, case_id: int, key: bytes) -> None:
    for row_id, recipient, recipient_key in conn.execute(select(
            OUTBOX.c.id, OUTBOX.c.recipient, OUTBOX.c.recipient_key).where(OUTBOX.c.case_id == case_id)).all():
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == row_id).values(
            recipient=pseudonym(key, recipient), recipient_key=pseudonym(key, recipient_key), raw=b"",
            last_error=""))
    for row_id, detail, actor in conn.execute(select(EVENTS.c.id, EVENTS.c.detail, EVENTS.c.actor).where(
            EVENTS.c.case_id == case_id)).all():
        conn.execute(update(EVENTS).where(EVENTS.c.id == row_id).values(
            detail=_scrub(detail, key), actor=pseudonym(key, actor) if "@" in (actor or "") else actor))


def delete_files(conn: Connection, data_dir: Path, hashes: Iterable[str]) -> int:
    """Attachment files whose hash no attachment row names any more."""
    deleted = 0
    for digest in sorted(hashes):
        with conn.begin():
            named = conn.execute(select(exists().where(ATTACHMENTS.c.sha256 == digest))).scalar()
        if named:
            continue
        path = data_dir / "attachments" / digest[:2] / digest
        try:
            path.unlink()
            deleted += 1
        except FileNotFoundError:
            continue
    return deleted


# -- the copies on the IMAP server --------------------------------------------------------------


def _pending(conn: Connection) -> dict[int | None, list[tuple[int, int]]]:
    """Messages whose data went (a purged case's, or one erased on request) still on the server:
    case id (None: a message on no case) → [(message row, UID)]."""
    gone = or_(CASES.c.purged_at.is_not(None), and_(MESSAGES.c.raw_sha256.is_(None), MESSAGES.c.text == MARKER))
    query = (select(MESSAGES.c.case_id, MESSAGES.c.id, MESSAGES.c.mailbox_uid)
             .outerjoin(CASES, CASES.c.id == MESSAGES.c.case_id)
             .where(gone, MESSAGES.c.mailbox_uid.is_not(None)))
    pending: dict[int | None, list[tuple[int, int]]] = {}
    with conn.begin():
        for case_id, row_id, uid in conn.execute(query):
            pending.setdefault(None if case_id is None else int(case_id), []).append((int(row_id), int(uid)))
    return pending


def purge_mailbox(conn: Connection, imap: ImapSettings, now: datetime, result: PurgeResult) -> None:
    """Delete on the IMAP server the copies of every message whose data went; recorded per case."""
    pending = _pending(conn)
    if not pending:
        return
    outcome = delete_on_server(conn, imap, sorted({uid for rows in pending.values() for _, uid in rows}))
    if outcome == "lost":
        _give_up(conn, pending, now, result)
    elif outcome == "deleted":
        _forget_uids(conn, pending, now, "mailbox-purged", {}, result, "mailbox_deleted")
    else:
        log.warning("purge: cannot delete %d message(s) on the IMAP server (%s); retrying on the next run",
                    sum(len(v) for v in pending.values()), outcome)
        _note_pending(conn, pending, now, outcome, result)


def delete_on_server(conn: Connection, imap: ImapSettings, uids: list[int]) -> str:
    """Delete these UIDs in the intake folder: "deleted"; "lost" when its UIDVALIDITY is no longer
    the stored one (the UIDs name nothing, or other mail, now); else the name of the error."""
    # ImapSource selects read-only when no processed flag is set; STORE and EXPUNGE need read-write.
    source = ImapSource(imap.model_copy(update={"processed_flag": imap.processed_flag or "\\Seen"}))
    try:
        state = source.connect()
        with conn.begin():
            stored = conn.execute(select(MAILBOXES.c.uidvalidity).where(MAILBOXES.c.key == source.key)).scalar()
        if stored != state.uidvalidity:
            return "lost"
        assert source.client is not None
        source.client.delete_messages(uids, silent=True)  # UID STORE +FLAGS.SILENT (\Deleted)
        if b"UIDPLUS" in source.client.capabilities():
            source.client.uid_expunge(uids)  # only these: other \Deleted mail is the admin's business
        else:
            source.client.expunge()  # RFC 3501 has nothing narrower
    except IMAP_FAILURES as exc:
        return type(exc).__name__
    finally:
        source.close()
    return "deleted"


def _give_up(conn: Connection, pending: dict[int | None, list[tuple[int, int]]], now: datetime,
             result: PurgeResult) -> None:
    """UIDVALIDITY changed: these UIDs name nothing (or other mail) now; recorded, not retried."""
    log.warning("purge: the IMAP folder's UIDVALIDITY changed; %d copies cannot be found by UID",
                sum(len(v) for v in pending.values()))
    _forget_uids(conn, pending, now, "mailbox-purge-lost", {"reason": "uidvalidity changed"}, result,
                 "mailbox_lost")


def _forget_uids(conn: Connection, pending: dict[int | None, list[tuple[int, int]]], now: datetime, kind: str,
                 extra: dict[str, Any], result: PurgeResult, counter: str) -> None:
    with conn.begin():
        for case_id, rows in pending.items():
            conn.execute(update(MESSAGES).where(MESSAGES.c.id.in_([r for r, _ in rows])).values(mailbox_uid=None))
            result.add(counter, len(rows))
            if case_id is None:
                continue
            conn.execute(insert(EVENTS), {"case_id": case_id, "at": now, "kind": kind, "actor": "system",
                                          "detail": {"messages": len(rows), **extra}})


def _note_pending(conn: Connection, pending: dict[int | None, list[tuple[int, int]]], now: datetime, error: str,
                  result: PurgeResult) -> None:
    """One ``mailbox-purge-pending`` event per case (not one per failed daily run)."""
    with conn.begin():
        for case_id, rows in pending.items():
            result.add("mailbox_pending", len(rows))
            if case_id is None:
                continue
            seen = conn.execute(select(exists().where(EVENTS.c.case_id == case_id,
                                                      EVENTS.c.kind == "mailbox-purge-pending"))).scalar()
            if not seen:
                conn.execute(insert(EVENTS), {"case_id": case_id, "at": now, "kind": "mailbox-purge-pending",
                                              "actor": "system", "detail": {"messages": len(rows), "error": error}})


# -- SQLite: no deleted bytes left behind -----------------------------------------------------------


def secure(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete=ON")
        conn.commit()


def checkpoint(engine: Engine) -> None:
    """Copy the WAL into the (zeroed) database file and truncate it, so old page images go too."""
    if engine.dialect.name != "sqlite":
        return
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        busy = cursor.fetchone()
        cursor.close()
    finally:
        raw.close()
    if busy and busy[0]:
        log.warning("purge: the WAL could not be truncated (a reader is busy); the next checkpoint will")
