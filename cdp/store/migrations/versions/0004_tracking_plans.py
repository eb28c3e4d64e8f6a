"""Tracking plans (versioned rules), their assignment to sources, and the violations found.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from cdp.store.types import JSONDocument, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tracking_plans",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("name", name="uq_tracking_plans_name"),
    )
    op.create_table(
        "tracking_plan_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "plan_id",
            sa.Integer,
            sa.ForeignKey("tracking_plans.id", name="fk_tracking_plan_versions_plan_id_tracking_plans"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("rules", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("plan_id", "version", name="uq_tracking_plan_versions_plan_id_version"),
    )
    op.create_table(
        "source_plans",
        sa.Column(
            "source_id",
            sa.Integer,
            sa.ForeignKey("sources.id", name="fk_source_plans_source_id_sources"),
            primary_key=True,
        ),
        sa.Column(
            "plan_id",
            sa.Integer,
            sa.ForeignKey("tracking_plans.id", name="fk_source_plans_plan_id_tracking_plans"),
            nullable=False,
        ),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "violations",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("source_id", sa.Integer, nullable=False),
        sa.Column("message_id", sa.String(100), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("event", sa.Text),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("plan_id", sa.Integer, nullable=False),
        sa.Column("plan_version", sa.Integer, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_violations_received_at_source_id", "violations", ["received_at", "source_id"])


def downgrade() -> None:
    for table in ("violations", "source_plans", "tracking_plan_versions", "tracking_plans"):
        op.drop_table(table)
