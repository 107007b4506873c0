"""outbox.recipient_key: the canonical mailbox of the recipient, for rate limits (guard).

Revision 0002, after 0001.  Rows queued before it get their recipient in lower case: the
canonical form without the sub-address rule, close enough for the rate window that follows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("recipient_key", sa.String(), nullable=False, server_default=""))
    op.create_index("ix_outbox_recipient_key", "outbox", ["recipient_key"])
    op.execute("UPDATE outbox SET recipient_key = lower(recipient)")


def downgrade() -> None:
    op.drop_index("ix_outbox_recipient_key", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("recipient_key")
