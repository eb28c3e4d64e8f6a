"""Computed trait definitions; current traits readable by name.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from cdp.store.types import JSONDocument, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "computed_traits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("definition", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("last_computed_at", UTCDateTime),
        sa.UniqueConstraint("name", name="uq_computed_traits_name"),
    )
    op.create_index("ix_profile_traits_name", "profile_traits", ["name"])


def downgrade() -> None:
    op.drop_index("ix_profile_traits_name", "profile_traits")
    op.drop_table("computed_traits")
