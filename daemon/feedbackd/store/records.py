"""The pipeline's reads and writes as SQLAlchemy Core statements on one Connection.

Intake runs a dozen statements per message; through the ORM (object construction, validation,
unit of work) they cost several milliseconds, as Core statements a fraction of that.  The tables
are the ORM models' own, so the CLI and views keep using the models.  Every function takes the
Connection of the message's transaction and commits nothing itself.  Statements are built once
with bound parameters, so SQLAlchemy's compiled cache serves every message after the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, Table, bindparam, case, cast, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping

from feedbackd.store.models import (
    Case,
    CaseEvent,
    CaseNotice,
    JobRun,
    MailboxState,
    MailMessage,
    OutboxItem,
    Participant,
    QuarantineItem,
    RawMessage,
    StoredAttachment,
    utcnow,
)


def _table(model: type) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


CASES = _table(Case)
MESSAGES = _table(MailMessage)
PARTICIPANTS = _table(Participant)
ATTACHMENTS = _table(StoredAttachment)
EVENTS = _table(CaseEvent)
OUTBOX = _table(OutboxItem)
QUARANTINE = _table(QuarantineItem)
MAILBOXES = _table(MailboxState)
RAW = _table(RawMessage)
CASE_NOTICES = _table(CaseNotice)
JOB_RUNS = _table(JobRun)


def _insert(conn: Connection, table: Table, values: Mapping[str, Any]) -> int:
    result = conn.execute(insert(table), dict(values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


_RECEIVED_RAW = exists().where(MESSAGES.c.raw_sha256 == bindparam("digest")).where(MESSAGES.c.direction == "in")
_QUARANTINED_RAW = (exists().where(QUARANTINE.c.raw_sha256 == bindparam("digest"))
                    .where(QUARANTINE.c.resolved.is_(False)))
_SEEN_RAW = select(_RECEIVED_RAW)
_SEEN_RAW_OR_QUARANTINED = select(or_(_RECEIVED_RAW, _QUARANTINED_RAW))
_CASE_BY_ID = select(CASES).where(CASES.c.id == bindparam("id"))
_CASES_OF_IDS = (select(MESSAGES.c.message_id, MESSAGES.c.case_id)
                 .where(MESSAGES.c.message_id.in_(bindparam("ids", expanding=True)))
                 .where(MESSAGES.c.case_id.is_not(None)))
_PARTICIPANT = select(PARTICIPANTS.c.id).where(PARTICIPANTS.c.case_id == bindparam("case_id"),
                                               PARTICIPANTS.c.address == bindparam("address"))
AUTOMATIC_PURPOSES = ("acknowledgement", "quarantine-notice")  # mail no person wrote (rate-limited)
ANSWER_KINDS = ("progress", "result")  # outgoing message kinds by which staff answered the citizen
DONE = ("resolved", "closed")
_ANSWERS_SINCE = (select(func.count()).select_from(OUTBOX)
                  .where(OUTBOX.c.purpose.in_(AUTOMATIC_PURPOSES),
                         OUTBOX.c.recipient_key == bindparam("recipient_key"),
                         OUTBOX.c.created_at >= bindparam("since")))
_ALL_ANSWERS_SINCE = (select(func.count()).select_from(OUTBOX)
                      .where(OUTBOX.c.purpose.in_(AUTOMATIC_PURPOSES), OUTBOX.c.created_at >= bindparam("since")))
_UPDATE_CASE = update(CASES).where(CASES.c.id == bindparam("_case_id"))
_ADVANCE = (update(MAILBOXES).where(MAILBOXES.c.key == bindparam("_key"))
            .where(MAILBOXES.c.last_uid < bindparam("_uid")))


# -- reads --------------------------------------------------------------------------------------


def seen_raw(conn: Connection, digest: str, *, quarantined: bool = True) -> bool:
    """These exact bytes were received before (as a message, or, with ``quarantined``, still in quarantine)."""
    query = _SEEN_RAW_OR_QUARANTINED if quarantined else _SEEN_RAW
    return bool(conn.execute(query, {"digest": digest}).scalar())


def case_by_id(conn: Connection, case_id: int) -> RowMapping | None:
    return conn.execute(_CASE_BY_ID, {"id": case_id}).mappings().first()


def case_ids_by_message_ids(conn: Connection, message_ids: Sequence[str]) -> dict[str, int]:
    rows = conn.execute(_CASES_OF_IDS, {"ids": list(message_ids)})
    return {message_id: case_id for message_id, case_id in rows}


def participants(conn: Connection, case_id: int, role: str) -> list[str]:
    rows = conn.execute(select(PARTICIPANTS.c.address).where(PARTICIPANTS.c.case_id == case_id)
                        .where(PARTICIPANTS.c.role == role).order_by(PARTICIPANTS.c.id))
    return [str(address) for (address,) in rows]


def is_participant(conn: Connection, case_id: int, address: str) -> bool:
    return conn.execute(_PARTICIPANT, {"case_id": case_id, "address": address}).first() is not None


def automatic_mail_since(conn: Connection, recipient_key: str, since: datetime) -> int:
    """How many automatic answers (acknowledgements, notices) went to this canonical mailbox since then."""
    return int(conn.execute(_ANSWERS_SINCE, {"recipient_key": recipient_key, "since": since}).scalar_one())


def all_automatic_mail_since(conn: Connection, since: datetime) -> int:
    """How many automatic answers went to anyone since then (the global budget)."""
    return int(conn.execute(_ALL_ANSWERS_SINCE, {"since": since}).scalar_one())


def raw_message(conn: Connection, sha256: str) -> bytes | None:
    row = conn.execute(select(RAW.c.data).where(RAW.c.sha256 == sha256)).first()
    return bytes(row[0]) if row else None


# -- writes -------------------------------------------------------------------------------------


def insert_if_new(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING: a row another daemon (or an earlier run) made is kept.

    True when this call inserted the row.  RETURNING, not rowcount: psycopg reports -1 for an
    INSERT … ON CONFLICT.
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(conn.dialect.name)
    key = next(iter(table.primary_key.columns))
    return conn.execute(dialect_insert(table).on_conflict_do_nothing().returning(key), dict(values)).first() is not None


def keep_raw(conn: Connection, sha256: str, raw: bytes) -> None:
    """Store the raw bytes once; the same bytes again (a replay, a duplicate) are left alone."""
    insert_if_new(conn, RAW, {"sha256": sha256, "size": len(raw), "data": raw, "stored_at": utcnow()})


def folder_cursor(conn: Connection, key: str, uidvalidity: int) -> tuple[int, int | None]:
    """The folder's last processed UID, and the old UIDVALIDITY if it changed (then the cursor is 0)."""
    insert_if_new(conn, MAILBOXES, {"key": key, "uidvalidity": uidvalidity, "last_uid": 0,
                                     "updated_at": utcnow()})
    query = select(MAILBOXES.c.uidvalidity, MAILBOXES.c.last_uid).where(MAILBOXES.c.key == key)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    stored, last_uid = conn.execute(query).one()
    if stored == uidvalidity:
        return int(last_uid), None
    conn.execute(update(MAILBOXES).where(MAILBOXES.c.key == key)
                 .values(uidvalidity=uidvalidity, last_uid=0, updated_at=utcnow()))
    return 0, int(stored)


def insert_case(conn: Connection, values: Mapping[str, Any]) -> int:
    return _insert(conn, CASES, values)


def update_case(conn: Connection, case_id: int, values: Mapping[str, Any]) -> None:
    conn.execute(_UPDATE_CASE, {"_case_id": case_id, **values})


def add_participants(conn: Connection, case_id: int, addresses: Iterable[str], role: str) -> None:
    rows = [{"case_id": case_id, "address": address, "role": role} for address in dict.fromkeys(addresses)]
    if rows:
        conn.execute(insert(PARTICIPANTS), rows)


def insert_message(conn: Connection, values: Mapping[str, Any]) -> int:
    """Store one message; staff's first answer to the citizen is also noted on its case (``note_answered``)."""
    row = {"received_at": utcnow(), "defects": [], "references": [], "cc_addrs": [], "to_addrs": [], **values}
    message_row = _insert(conn, MESSAGES, row)
    if row.get("case_id") is not None and row.get("direction") == "out" and row.get("kind") in ANSWER_KINDS:
        note_answered(conn, int(row["case_id"]), row["received_at"])
    return message_row


def add_attachments(conn: Connection, message_row: int, attachments: Iterable[Mapping[str, Any]]) -> None:
    rows = [{"message_id": message_row, **a} for a in attachments]
    if rows:
        conn.execute(insert(ATTACHMENTS), rows)


def add_events(conn: Connection, case_id: int, events: Iterable[tuple[str, dict[str, Any]]],
               actor: str = "system") -> None:
    """The events happened now, by ``actor``: "citizen", a staff address, "admin" or "system"."""
    add_events_by(conn, case_id, ((kind, detail, actor) for kind, detail in events))


def add_events_by(conn: Connection, case_id: int, events: Iterable[tuple[str, dict[str, Any], str]],
                  at: datetime | None = None) -> None:
    """Events by several actors in one insert: (kind, detail, actor), at ``at`` (default: now).

    A resolution or a reopening among them is also noted on the case (``note_milestones``)."""
    at = at or utcnow()
    events = list(events)
    if events:
        conn.execute(insert(EVENTS), [{"case_id": case_id, "at": at, "kind": kind, "detail": detail, "actor": actor}
                                      for kind, detail, actor in events])
        note_milestones(conn, case_id, [(kind, detail) for kind, detail, _ in events], at)


# -- the report's milestones on the case (revision 0006) ----------------------------------------------
#
# The report reads when a case was first answered and first resolved, and whether it was reopened,
# from the case row alone (jobs/report.py).  They are written here, in the transaction of the message
# or event that makes them, and nowhere else: every outgoing message and every event goes through
# insert_message and add_events_by.  "First" is the earliest time, whatever order the rows arrive in.


def is_resolution(kind: str, detail: Mapping[str, Any]) -> bool:
    """A status change to resolved or closed (also a case closed without being resolved)."""
    return kind == "status" and detail.get("to") in DONE


def is_reopening(kind: str, detail: Mapping[str, Any]) -> bool:
    """A citizen's reply that reopened the case, or a status change from resolved/closed back to open."""
    return kind == "reopened" or (kind == "status" and detail.get("to") == "open" and detail.get("from") in DONE)


def note_answered(conn: Connection, case_id: int, at: datetime) -> None:
    """Staff answered the citizen (an outgoing progress or result mail) at ``at``."""
    c = CASES.c
    conn.execute(update(CASES).where(CASES.c.id == case_id)
                 .values(_earlier(conn, c.first_answered_at, c.first_response_hours, at)))


def note_milestones(conn: Connection, case_id: int, events: Iterable[tuple[str, Mapping[str, Any]]],
                    at: datetime) -> None:
    """The case's first resolution and reopen count after ``events`` (kind, detail) at ``at``; one UPDATE
    when any of them is a resolution or a reopening, none otherwise."""
    events = list(events)
    values: dict[Any, Any] = {}
    if any(is_resolution(kind, detail) for kind, detail in events):
        values.update(_earlier(conn, CASES.c.first_resolved_at, CASES.c.resolution_hours, at))
    reopenings = sum(1 for kind, detail in events if is_reopening(kind, detail))
    if reopenings:
        values[CASES.c.reopened] = CASES.c.reopened + reopenings
    if values:
        conn.execute(update(CASES).where(CASES.c.id == case_id).values(values))


def _earlier(conn: Connection, moment: Any, hours: Any, at: datetime) -> dict[Any, ColumnElement[Any]]:
    """``moment`` becomes ``at`` if it is unset or later (SQLite's min() and PostgreSQL's LEAST differ),
    and ``hours`` the hours from created_at to it; both SET expressions read the row's old values."""
    value = bindparam(None, at, type_=moment.type)
    sooner = or_(moment.is_(None), moment > value)
    return {moment: case((sooner, value), else_=moment),
            hours: case((sooner, hours_between(conn.dialect.name, CASES.c.created_at, value)), else_=hours)}


def hours_between(dialect: str, start: ColumnElement[Any], end: ColumnElement[Any]) -> ColumnElement[Any]:
    """Elapsed hours from ``start`` to ``end`` in the database (the report's durations)."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", end - start), Float) / 3600.0
    return (func.julianday(end) - func.julianday(start)) * 24.0


def queue_mail(conn: Connection, values: Mapping[str, Any]) -> int:
    now = utcnow()
    return _insert(conn, OUTBOX, {"status": "pending", "attempts": 0, "next_attempt_at": now,
                                  "created_at": now, "last_error": "", **values})


def insert_quarantine(conn: Connection, values: Mapping[str, Any]) -> int:
    return _insert(conn, QUARANTINE, {"received_at": utcnow(), "resolved": False, **values})


def advance_cursor(conn: Connection, key: str, uid: int) -> None:
    """Move the folder's cursor forward (never back: several daemons may share it)."""
    conn.execute(_ADVANCE, {"_key": key, "_uid": uid, "last_uid": uid, "updated_at": utcnow()})
