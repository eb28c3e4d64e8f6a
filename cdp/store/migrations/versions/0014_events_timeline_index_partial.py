"""Events: the profile timeline index holds attributed events only.

The Tracking API stores events pending, without a profile, and attribution sets it a moment
later (cdp.events.attribution). With every event in the index, each insert added an entry under
NULL that the attribution then moved, at a random place of a wide index: about half of SQLite's
work per stored event. Every reader of the index asks for one profile or for ``profile_id IS NOT
NULL``, which a partial index on that condition serves the same.

Revision ID: 0014
Revises: 0012
Create Date: 2026-11-30
"""

from alembic import op
from sqlalchemy import text

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TIMELINE = ["profile_id", "timestamp"]
READ_BY_FEATURES = ["received_at", "type", "event"]
SQLITE_NAME = "ix_events_profile_id_timestamp_received_at_type_event"
POSTGRESQL_NAME = "ix_events_profile_id_timestamp"
ATTRIBUTED = text("profile_id IS NOT NULL")


def upgrade() -> None:
    _replace(partial=True)


def downgrade() -> None:
    _replace(partial=False)


def _replace(*, partial: bool) -> None:
    where = ATTRIBUTED if partial else None
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(POSTGRESQL_NAME, "events")
        op.create_index(POSTGRESQL_NAME, "events", TIMELINE, postgresql_include=READ_BY_FEATURES,
                        postgresql_where=where)
    else:
        op.drop_index(SQLITE_NAME, "events")
        op.create_index(SQLITE_NAME, "events", TIMELINE + READ_BY_FEATURES, sqlite_where=where)
