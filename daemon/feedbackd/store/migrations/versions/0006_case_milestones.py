"""The report's milestones on the case: first answered, first resolved, times reopened, the two durations.

Revision 0006, after 0005.  ``bench/bench_scale.py`` showed the year-long report at 1,000,000 cases
spending its time joining every case with its messages and events (9.8 s on SQLite, 4.6 s on
PostgreSQL); these columns hold what it looked up, written when it happens (store/records.py), so
the report reads the case table alone, through the indexes below (models.py says why each).
Existing cases are backfilled with what the report computed from their rows until now:

- ``first_answered_at``: the earliest outgoing message of kind progress or result;
- ``first_resolved_at``: the earliest status event to resolved or closed;
- ``reopened``: the number of reopened events and status events from resolved/closed to open;
- ``first_response_hours``, ``resolution_hours``: hours from created_at to the first answer and to the
  first resolution (else ``resolved_at``, as the report did).

The statements are SQLAlchemy Core over lightweight tables, so the JSON lookup of an event's
``detail`` compiles for each database (``json_extract`` on SQLite, ``->>`` on PostgreSQL); each
correlated lookup is served by revision 0005's indexes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)
DONE = ("resolved", "closed")
INDEXES = {  # the report's: its per-case times covered, its counts in group order, each duration in order
    "ix_case_report": ["created_at", "first_response_due", "resolution_due", "paused_at", "first_answered_at",
                       "first_resolved_at", "resolved_at", "reopened", "first_response_hours", "resolution_hours"],
    "ix_case_groups": ["kind", "department", "priority", "created_at"],
    "ix_case_first_response_hours": ["first_response_hours", "created_at"],
    "ix_case_resolution_hours": ["resolution_hours", "created_at"],
}
SQLITE_INDEXES = {  # SQLite only: tags in group order, satisfaction answers
    "ix_case_tags": "(tags, created_at)",
    "ix_case_satisfaction": "(created_at) WHERE json_extract(satisfaction, '$.score') IS NOT NULL",
}


def upgrade() -> None:
    with op.batch_alter_table("case") as batch:
        batch.add_column(sa.Column("first_answered_at", UTC_TIME, nullable=True))
        batch.add_column(sa.Column("first_resolved_at", UTC_TIME, nullable=True))
        batch.add_column(sa.Column("reopened", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("first_response_hours", sa.Float(), nullable=True))
        batch.add_column(sa.Column("resolution_hours", sa.Float(), nullable=True))
    _backfill()
    for name, columns in INDEXES.items():
        op.create_index(name, "case", columns)
    if op.get_bind().dialect.name == "sqlite":
        for name, definition in SQLITE_INDEXES.items():
            op.execute(f'CREATE INDEX {name} ON "case" {definition}')


def _backfill() -> None:
    case = sa.table("case", sa.column("id", sa.Integer()), sa.column("created_at", UTC_TIME),
                    sa.column("resolved_at", UTC_TIME), sa.column("first_answered_at", UTC_TIME),
                    sa.column("first_resolved_at", UTC_TIME), sa.column("reopened", sa.Integer()),
                    sa.column("first_response_hours", sa.Float()), sa.column("resolution_hours", sa.Float()))
    message = sa.table("message", sa.column("case_id", sa.Integer()), sa.column("direction", sa.String()),
                       sa.column("kind", sa.String()), sa.column("received_at", UTC_TIME))
    event = sa.table("case_event", sa.column("case_id", sa.Integer()), sa.column("kind", sa.String()),
                     sa.column("at", UTC_TIME), sa.column("detail", sa.JSON()))
    to, before = event.c.detail["to"].as_string(), event.c.detail["from"].as_string()
    answered = (sa.select(sa.func.min(message.c.received_at))
                .where(message.c.case_id == case.c.id, message.c.direction == "out",
                       message.c.kind.in_(("progress", "result"))).scalar_subquery())
    resolved = (sa.select(sa.func.min(event.c.at))
                .where(event.c.case_id == case.c.id, event.c.kind == "status", to.in_(DONE)).scalar_subquery())
    reopened = (sa.select(sa.func.count())
                .where(event.c.case_id == case.c.id,
                       sa.or_(event.c.kind == "reopened",
                              sa.and_(event.c.kind == "status", to == "open", before.in_(DONE))))
                .scalar_subquery())
    op.execute(case.update().values(first_answered_at=answered, first_resolved_at=resolved, reopened=reopened))
    hours = _hours(op.get_bind().dialect.name, case.c.created_at)
    op.execute(case.update().values(first_response_hours=hours(case.c.first_answered_at),
                                    resolution_hours=hours(sa.func.coalesce(case.c.first_resolved_at,
                                                                            case.c.resolved_at))))


def _hours(dialect: str, start: Any) -> Any:
    """Hours from ``start`` to a moment, as store.records.hours_between computes them."""
    if dialect == "postgresql":
        return lambda end: sa.cast(sa.func.extract("epoch", end - start), sa.Float()) / 3600.0
    return lambda end: (sa.func.julianday(end) - sa.func.julianday(start)) * 24.0


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_INDEXES:
            op.execute(f"DROP INDEX {name}")
    for name in INDEXES:
        op.drop_index(name, table_name="case")
    with op.batch_alter_table("case") as batch:
        for column in ("reopened", "first_resolved_at", "first_answered_at"):
            batch.drop_column(column)
