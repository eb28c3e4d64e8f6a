"""Identity graph, profiles, merge log, trait change log and current traits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from cdp.store.types import JSONDocument, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("profile_id", BigId, nullable=True))
    op.create_index("ix_events_profile_id_timestamp", "events", ["profile_id", "timestamp"])
    op.create_table(
        "profiles",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("first_message_id", sa.String(100)),
        sa.Column("first_source_id", sa.Integer),
        sa.Column("merged_into", BigId, sa.ForeignKey("profiles.id", name="fk_profiles_merged_into_profiles")),
    )
    op.create_index("ix_profiles_merged_into", "profiles", ["merged_into"])
    op.create_table(
        "identities",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column(
            "profile_id", BigId, sa.ForeignKey("profiles.id", name="fk_identities_profile_id_profiles"), nullable=False
        ),
        sa.Column("source_id", sa.Integer),
        sa.Column("first_message_id", sa.String(100)),
        sa.Column("seen_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("value", "type", "entity", name="uq_identities_value_type_entity"),
    )
    op.create_index("ix_identities_profile_id", "identities", ["profile_id"])
    op.create_table(
        "merges",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("winner_id", BigId, nullable=False),
        sa.Column("loser_id", BigId, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("identifier_type", sa.String(64), nullable=False),
        sa.Column("identifier_value", sa.Text, nullable=False),
        sa.Column("message_id", sa.String(100)),
        sa.Column("source_id", sa.Integer),
        sa.Column("identity_ids", JSONDocument),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("split_at", UTCDateTime),
    )
    op.create_index("ix_merges_winner_id", "merges", ["winner_id"])
    op.create_index("ix_merges_loser_id", "merges", ["loser_id"])
    op.create_table(
        "trait_changes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("profile_id", BigId, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("value", JSONDocument),
        sa.Column("class", sa.String(16), nullable=False),
        sa.Column("source_id", sa.Integer),
        sa.Column("message_id", sa.String(100)),
        sa.Column("event_time", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_trait_changes_profile_id_name", "trait_changes", ["profile_id", "name"])
    op.create_table(
        "profile_traits",
        sa.Column("profile_id", BigId, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", JSONDocument),
        sa.Column("class", sa.String(16), nullable=False),
        sa.Column("source_id", sa.Integer),
        sa.Column("event_time", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "profile_links",
        sa.Column("profile_id", BigId, primary_key=True),
        sa.Column("linked_id", BigId, primary_key=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_profile_links_linked_id", "profile_links", ["linked_id"])


def downgrade() -> None:
    for table in ("profile_links", "profile_traits", "trait_changes", "merges", "identities", "profiles"):
        op.drop_table(table)
    op.drop_index("ix_events_profile_id_timestamp", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("profile_id")
