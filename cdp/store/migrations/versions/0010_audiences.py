"""Audiences (versioned definitions, members, entered / exited history), destinations and the outbox.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from cdp.store.types import JSONDocument, UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Trait values that look like dates become timestamps for the date operators; anything else, null.
# A plain cast would fail the whole audience query on one malformed value. Times without a zone
# are UTC, as SQLite reads them.
TRY_TIMESTAMP = r"""
CREATE OR REPLACE FUNCTION cdp_try_timestamp(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE SET timezone = 'UTC' AS $$
BEGIN
    IF value IS NULL OR value !~ '^\d{4}-\d{2}-\d{2}' THEN
        RETURN NULL;
    END IF;
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$
"""


def audience() -> sa.ForeignKey:
    return sa.ForeignKey("audiences.id", ondelete="CASCADE")


def destination() -> sa.ForeignKey:
    return sa.ForeignKey("destinations.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "audiences",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("definition", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("last_computed_at", UTCDateTime),
        sa.UniqueConstraint("key", name="uq_audiences_key"),
    )
    op.create_table(
        "audience_versions",
        sa.Column("audience_id", sa.Integer, audience(), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("definition", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "audience_members",
        sa.Column("audience_id", sa.Integer, audience(), primary_key=True),
        sa.Column("profile_id", BigId, primary_key=True),
        sa.Column("entered_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_audience_members_profile_id", "audience_members", ["profile_id"])
    op.create_table(
        "audience_history",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("audience_id", sa.Integer, audience(), nullable=False),
        sa.Column("profile_id", BigId, nullable=False),
        sa.Column("change", sa.String(8), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_audience_history_profile_id", "audience_history", ["profile_id", "id"])
    op.create_index("ix_audience_history_audience_id", "audience_history", ["audience_id", "id"])
    op.create_table(
        "destinations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("write_key", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("name", name="uq_destinations_name"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("destination_id", sa.Integer, destination(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("payload", JSONDocument, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("delivered_at", UTCDateTime),
        sa.UniqueConstraint("idempotency_key", "destination_id", name="uq_outbox_idempotency_key_destination_id"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_destination_id", "outbox", ["destination_id", "id"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("outbox_id", BigId, sa.ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False),
        sa.Column("destination_id", sa.Integer, destination(), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_delivery_attempts_destination_id", "delivery_attempts", ["destination_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TRY_TIMESTAMP)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS cdp_try_timestamp(text)")
    for table in ("delivery_attempts", "outbox", "destinations", "audience_history", "audience_members",
                  "audience_versions", "audiences"):
        op.drop_table(table)
