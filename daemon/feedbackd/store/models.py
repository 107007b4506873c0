"""The tables: cases, their messages and participants, the outbox, quarantine and the IMAP cursor.

Times are timezone-aware UTC (sqlmodel stores them as UTC and returns them aware, SQLite
included); ``utcnow()`` is the one clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DDL, JSON, Column, ForeignKey, Index, Integer, LargeBinary, UniqueConstraint, event, false
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class MailboxState(SQLModel, table=True):
    """Where intake stopped in one IMAP folder: the UID cursor, valid for one UIDVALIDITY."""

    __tablename__ = "mailbox_state"
    key: str = Field(primary_key=True)  # user@host:port/folder
    uidvalidity: int
    last_uid: int = 0
    updated_at: datetime = Field(default_factory=utcnow)


class RawMessage(SQLModel, table=True):
    """Every message exactly as fetched, for audit and reprocessing, keyed by its SHA-256.

    In the database rather than in files: it then commits (or not) with the message it belongs
    to, and one small insert is much cheaper than creating a file per message.
    """

    __tablename__ = "raw_message"
    sha256: str = Field(primary_key=True)
    size: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    stored_at: datetime = Field(default_factory=utcnow)


# The report's indexes (revision 0006, measured with bench/bench_scale.py at 1,000,000 cases): one
# covering the columns of its per-case times; one giving its counts by kind/department/priority in
# index order (SQLite groups by sorting: without it, a sort of every case of the period); and one per
# duration, from which the median and p90 are read at their ranks (LIMIT 2 OFFSET rank, a walk along
# the index) instead of sorting every duration of the period.
REPORT_INDEX = ("created_at", "first_response_due", "resolution_due", "paused_at", "first_answered_at",
                "first_resolved_at", "resolved_at", "reopened", "first_response_hours", "resolution_hours")
GROUPS_INDEX = ("kind", "department", "priority", "created_at")

# SQLite only (made by DDL here and in revisions 0006 and 0007, named in the report's INDEXED BY): tags
# grouped by their JSON text in index order, and the satisfaction answers by a partial index that
# holds the score (the mean reads the index alone, 0007).  PostgreSQL aggregates by hashing and has
# no btree on json, but its ix_case_tags carries the lists beside created_at (0007), so the tags are
# counted from the index (an index-only scan) instead of the table's rows.
SATISFACTION_SCORE = "json_extract(satisfaction, '$.score')"
SQLITE_INDEXES = {
    "ix_case_tags": "(tags, created_at)",
    "ix_case_satisfaction": f"(created_at, {SATISFACTION_SCORE}) WHERE {SATISFACTION_SCORE} IS NOT NULL",
}
POSTGRESQL_INDEXES = {"ix_case_tags": "(created_at) INCLUDE (tags)"}


class Case(SQLModel, table=True):
    __tablename__ = "case"
    __table_args__ = (Index("ix_case_report", *REPORT_INDEX), Index("ix_case_groups", *GROUPS_INDEX),  # 0006
                      Index("ix_case_first_response_hours", "first_response_hours", "created_at"),
                      Index("ix_case_resolution_hours", "resolution_hours", "created_at"))
    id: int | None = Field(default=None, primary_key=True)  # the public number is derived: FB-000123
    status: str = Field(default="new", index=True)  # new, open, in-progress, waiting, resolved, closed
    kind: str = "problem"  # problem (问题反馈) or opinion (反映)
    subject: str = ""
    requester: str = Field(index=True)  # the citizen's address, lower-case
    requester_name: str = ""
    language: str = "zh-CN"  # language of mail sent to the requester
    priority: str = "normal"
    department: str | None = None
    assignee: str | None = None
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    routing: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    first_response_due: datetime | None = None
    resolution_due: datetime | None = None
    message_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    # The staff loop (revision 0003).
    resolved_at: datetime | None = None  # when it was last resolved (a reply within cases.reopen_days reopens)
    awaiting_satisfaction: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    satisfaction: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # score, text
    linked_case: int | None = Field(  # the earlier case a late follow-up continues (named: the revision's name)
        default=None, sa_column=Column(Integer, ForeignKey("case.id", name="fk_case_linked_case_case"), nullable=True))
    paused_at: datetime | None = None  # since when the deadlines stand still (status waiting)
    closed_at: datetime | None = None  # when it was closed (retention counts from here)
    purged_at: datetime | None = None  # when its personal data was removed (retention)
    # The report's milestones (revision 0006), written where they happen (store.records.note_*), so the
    # report reads this table alone: the first progress/result mail to the citizen, the first status
    # change to resolved or closed, how often the case was reopened, and the two durations in hours
    # from created_at (their indexes give the percentiles in order).
    first_answered_at: datetime | None = None
    first_resolved_at: datetime | None = None
    reopened: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    first_response_hours: float | None = None
    resolution_hours: float | None = None


class Participant(SQLModel, table=True):
    """Addresses besides the requester allowed to join a case by its subject token (Cc'd people)."""

    __tablename__ = "participant"
    __table_args__ = (UniqueConstraint("case_id", "address"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    address: str = Field(index=True)
    role: str = "requester"  # requester, cc, staff


class MailMessage(SQLModel, table=True):
    """One mail of a case, inbound or outbound; its Message-ID indexes threading."""

    __tablename__ = "message"
    __table_args__ = (Index("ix_message_case_answer", "case_id", "direction", "kind", "received_at"),)  # 0005
    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    direction: str  # in, out
    kind: str = "mail"  # mail, auto-reply, bounce, copy (other bytes under a Message-ID already on the case)
    message_id: str | None = Field(default=None, index=True)
    dedupe_key: str = Field(unique=True)  # in: "raw:<sha256>" (older rows: "in:<id+date hash>"); out: "out:<id>"
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    from_addr: str = ""
    from_name: str = ""
    to_addrs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    cc_addrs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    subject: str = ""
    date: datetime | None = None  # the Date header, in UTC
    received_at: datetime = Field(default_factory=utcnow)
    text: str = ""
    raw_sha256: str | None = Field(default=None, index=True)  # the raw bytes in raw_message
    mailbox_uid: int | None = None
    defects: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class StoredAttachment(SQLModel, table=True):
    __tablename__ = "attachment"
    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    filename: str
    content_type: str
    size: int
    sha256: str | None = None  # None when it was over the size limit and not stored
    truncated: bool = False


class CaseEvent(SQLModel, table=True):
    """The case's history: what happened, when, with details (routing trace, bounces, …)."""

    __tablename__ = "case_event"
    __table_args__ = (Index("ix_case_event_case_kind", "case_id", "kind", "at"),)  # 0005
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    kind: str
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    actor: str = Field(default="system", sa_column_kwargs={"server_default": "system"})  # citizen, staff address, admin


class OutboxItem(SQLModel, table=True):
    """A rendered mail waiting to be sent, written in the same transaction as its cause."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    purpose: str  # acknowledgement, quarantine-notice, ...
    message_id: str
    mail_from: str
    recipient: str = Field(index=True)
    recipient_key: str = Field(default="", index=True)  # the canonical mailbox, for rate limits (guard)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default="pending", index=True)  # pending, sending, sent, failed
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    lease_until: datetime | None = None
    claim: str | None = None  # token of the sender that holds the lease
    last_error: str = ""
    created_at: datetime = Field(default_factory=utcnow, index=True)
    sent_at: datetime | None = None


class QuarantineItem(SQLModel, table=True):
    """A message no stage could handle: kept (raw_message) and listed for a person to look at."""

    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow)
    mailbox_uid: int | None = None
    raw_sha256: str = Field(index=True)
    size: int = 0
    stage: str  # parse, store, ...
    reason: str
    subject: str = ""
    sender: str = ""
    resolved: bool = False


class JobRun(SQLModel, table=True):
    """One occurrence of a scheduled job, claimed once: two daemons (or cron and a daemon) never both run it."""

    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job", "occurrence"),)
    id: int | None = Field(default=None, primary_key=True)
    job: str  # reminders, digest, report, auto-close, purge, ...
    occurrence: str  # which run of it: e.g. "2026-12-01T08:30+08:00" for the 08:30 digest of that day
    claimed_by: str = ""  # the holder (feedbackd.holder) that runs it
    claimed_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class CaseNotice(SQLModel, table=True):
    """A timed notice about a case that must go once: a reminder, an escalation level, a progress note."""

    __tablename__ = "case_notice"
    __table_args__ = (UniqueConstraint("case_id", "kind", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    kind: str  # reminder, escalation-1, escalation-2, progress
    key: str  # which deadline or period: "first_response@<due iso>", "progress@3"
    at: datetime = Field(default_factory=utcnow)


for _dialect, _indexes in (("sqlite", SQLITE_INDEXES), ("postgresql", POSTGRESQL_INDEXES)):
    for _name, _definition in _indexes.items():
        _index = DDL(f'CREATE INDEX {_name} ON "case" {_definition}')  # type: ignore[no-untyped-call]
        event.listen(Case.__table__, "after_create", _index.execute_if(dialect=_dialect))  # type: ignore[attr-defined]
