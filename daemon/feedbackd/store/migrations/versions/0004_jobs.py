"""Scheduled jobs: claimed job occurrences, once-only case notices, closing and purging times.

Revision 0004, after 0003.  ``job_run`` holds one row per job occurrence (unique job + occurrence),
so a second daemon or a cron run finds it taken; ``case_notice`` one row per reminder, escalation
level or progress note of a case (unique case + kind + key), so each goes once.  ``case.closed_at``
and ``case.purged_at`` are new and empty for existing cases.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("case") as batch:
        batch.add_column(sa.Column("closed_at", UTC_TIME, nullable=True))
        batch.add_column(sa.Column("purged_at", UTC_TIME, nullable=True))
    op.create_table(
        "job_run",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job", sa.String(), nullable=False),
        sa.Column("occurrence", sa.String(), nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=False),
        sa.Column("claimed_at", UTC_TIME, nullable=False),
        sa.Column("finished_at", UTC_TIME, nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.UniqueConstraint("job", "occurrence"),
    )
    op.create_table(
        "case_notice",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("case.id"), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.UniqueConstraint("case_id", "kind", "key"),
    )
    op.create_index("ix_case_notice_case_id", "case_notice", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_case_notice_case_id", table_name="case_notice")
    op.drop_table("case_notice")
    op.drop_table("job_run")
    with op.batch_alter_table("case") as batch:
        batch.drop_column("purged_at")
        batch.drop_column("closed_at")
