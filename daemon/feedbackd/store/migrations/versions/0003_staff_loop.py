"""The staff loop: who did what on a case, resolution, satisfaction, linked follow-up cases, paused deadlines.

Revision 0003, after 0002.  ``case_event.actor`` says who acted (citizen, a staff address, admin,
system); events written before it were the daemon's own, so existing rows get "system".  The
case's new columns are nullable or default to false, so existing cases need no data written.
``case.linked_case`` refers to another case; on SQLite the foreign key needs the table rebuilt
(batch), on PostgreSQL it is a plain ALTER TABLE.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)  # sqlmodel's UTCDateTime: aware datetimes, stored in UTC
LINK = "fk_case_linked_case_case"


def upgrade() -> None:
    op.add_column("case_event", sa.Column("actor", sa.String(), nullable=False, server_default="system"))
    with op.batch_alter_table("case") as batch:
        batch.add_column(sa.Column("resolved_at", UTC_TIME, nullable=True))
        batch.add_column(sa.Column("awaiting_satisfaction", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("satisfaction", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("linked_case", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("paused_at", UTC_TIME, nullable=True))
        batch.create_foreign_key(LINK, "case", ["linked_case"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("case") as batch:
        batch.drop_constraint(LINK, type_="foreignkey")
        for column in ("paused_at", "linked_case", "satisfaction", "awaiting_satisfaction", "resolved_at"):
            batch.drop_column(column)
    with op.batch_alter_table("case_event") as batch:
        batch.drop_column("actor")
