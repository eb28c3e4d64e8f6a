"""The imported item catalog, with availability flags.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

from cdp.store.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_items",
        sa.Column("item_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("category", sa.Text),
        sa.Column("brand", sa.Text),
        sa.Column("price", sa.Float),
        sa.Column("available", sa.Boolean, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("catalog_items")
