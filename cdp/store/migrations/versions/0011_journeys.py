"""Journeys (versioned definitions, per-profile instances, the send log) and the contact policy.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

from cdp.store.types import JSONDocument, UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE = sa.text("status = 'active'")


def journey() -> sa.ForeignKey:
    return sa.ForeignKey("journeys.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("definition", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("key", name="uq_journeys_key"),
    )
    op.create_table(
        "journey_versions",
        sa.Column("journey_id", sa.Integer, journey(), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("definition", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "journey_instances",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("journey_id", sa.Integer, journey(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("profile_id", BigId, nullable=False),
        sa.Column("reentry_value", sa.Text, nullable=False),
        sa.Column("holdout", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("step_id", sa.String(64)),
        sa.Column("due_at", UTCDateTime),
        sa.Column("context", JSONDocument, nullable=False),
        sa.Column("entered_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("exit_reason", sa.Text),
    )
    op.create_index("ix_journey_instances_one_active", "journey_instances",
                    ["journey_id", "profile_id", "reentry_value"], unique=True,
                    sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    op.create_index("ix_journey_instances_profile_id", "journey_instances", ["profile_id", "status"])
    op.create_index("ix_journey_instances_due", "journey_instances", ["status", "due_at"])
    op.create_index("ix_journey_instances_journey_id", "journey_instances", ["journey_id", "entered_at"])
    op.create_table(
        "journey_sends",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("journey_id", sa.Integer, journey(), nullable=False),
        sa.Column("instance_id", BigId, sa.ForeignKey("journey_instances.id", ondelete="CASCADE"), nullable=False),
        sa.Column("profile_id", BigId, nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("destination_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_journey_sends_caps", "journey_sends", ["profile_id", "destination_id", "at"])
    op.create_index("ix_journey_sends_journey_id", "journey_sends", ["journey_id", "status"])
    op.create_table(
        "contact_policy",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("policy", JSONDocument, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("contact_policy", "journey_sends", "journey_instances", "journey_versions", "journeys"):
        op.drop_table(table)
