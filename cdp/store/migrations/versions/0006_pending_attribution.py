"""Events stored ahead of identity resolution, found by a partial index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both stores: batch mode would copy a table of millions of events.
    op.add_column("events", sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index(
        "ix_events_pending", "events", ["id"],
        sqlite_where=sa.text("pending"), postgresql_where=sa.text("pending"),
    )


def downgrade() -> None:
    op.drop_index("ix_events_pending", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("pending")
