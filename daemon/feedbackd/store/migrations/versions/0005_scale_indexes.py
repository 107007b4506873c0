"""Indexes for a million cases: a case's answers among its messages, its status events among its events.

Revision 0005, after 0004.  ``bench/bench_scale.py`` showed the report, the reminders and the digest
looking up, per case, its first outgoing answer (message: case_id, direction, kind, received_at) and
its first status event (case_event: case_id, kind, at); with these the lookups read the index alone
instead of every message row of the case.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_message_case_answer", "message", ["case_id", "direction", "kind", "received_at"])
    op.create_index("ix_case_event_case_kind", "case_event", ["case_id", "kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_case_event_case_kind", table_name="case_event")
    op.drop_index("ix_message_case_answer", table_name="message")
