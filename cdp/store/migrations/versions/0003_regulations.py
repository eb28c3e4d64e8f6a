"""Regulations (GDPR / CCPA deletion and suppression) and suppressed identifiers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from cdp.store.types import JSONDocument, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "regulations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("regulation_type", sa.String(32), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject_ids", JSONDocument, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("error", sa.Text),
        sa.Column("counts", JSONDocument),
    )
    op.create_index("ix_regulations_status", "regulations", ["status"])
    op.create_table(
        "suppressions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("origin", sa.Text, nullable=False),
        sa.Column("regulation_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("type", "value", name="uq_suppressions_type_value"),
    )
    op.create_index("ix_suppressions_value", "suppressions", ["value"])
    op.create_index("ix_suppressions_origin", "suppressions", ["origin"])


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_table("regulations")
