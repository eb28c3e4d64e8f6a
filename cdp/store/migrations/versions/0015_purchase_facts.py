"""Purchases: a narrow mirror of the purchase events, kept by triggers.

The purchase features (monetary value, order gaps, BTYD statistics, category shares) read every
purchase of every profile. From ``events`` that is a scan of every event's JSON payload: on
PostgreSQL with 1M profiles x 50 events, 27 GB of heap read for 3M orders, half of the time
``features.load`` takes. ``purchase_facts`` holds those orders with just what the features read
(1.2 GB there).

Triggers keep it equal to the events it mirrors, whatever writes them: the Tracking API and
``cdp import`` insert, attribution, merges and splits move events between profiles, regulations
delete them. A writer added later can't forget it. They fire only for the mirrored event names,
which the WHEN clause tests before any trigger code runs, so other events cost nothing more;
events never change but for their profile, so an update is mirrored only when that changes.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from cdp.store.types import JSONDocument, UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# cdp.store.tables.PURCHASE_FACT_EVENTS as of this revision (a later change needs a migration).
MIRRORED = "('Order Completed')"
TRIGGERS = ("purchase_facts_insert", "purchase_facts_update", "purchase_facts_delete")


def is_purchase(row: str = "") -> str:
    """The mirrored events, of ``row`` (``NEW.``, ``OLD.``, or the table's own columns)."""
    return f"{row}type = 'track' AND {row}event IN {MIRRORED}"


def properties(dialect: str, row: str = "") -> str:
    """The event's properties object, NULL when the payload has none (or not an object)."""
    if dialect == "postgresql":
        return f"CASE WHEN jsonb_typeof({row}payload -> 'properties') = 'object' THEN {row}payload -> 'properties' END"
    return f"CASE WHEN json_type({row}payload, '$.properties') = 'object' THEN json_extract({row}payload, '$.properties') END"


def postgresql_function() -> str:
    return f"""
CREATE FUNCTION mirror_purchase_facts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO purchase_facts (event_id, profile_id, timestamp, received_at, event, properties)
        VALUES (NEW.id, NEW.profile_id, NEW.timestamp, NEW.received_at, NEW.event, {properties("postgresql", "NEW.")});
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE purchase_facts SET profile_id = NEW.profile_id WHERE event_id = NEW.id;
    ELSE
        DELETE FROM purchase_facts WHERE event_id = OLD.id;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "purchase_facts",
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=False),
        sa.Column("profile_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
        sa.Column("timestamp", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("properties", JSONDocument),
    )
    dialect = op.get_bind().dialect.name
    new, old = is_purchase("NEW."), is_purchase("OLD.")
    if dialect == "postgresql":
        op.execute(postgresql_function())
        op.execute(f"CREATE TRIGGER purchase_facts_insert AFTER INSERT ON events FOR EACH ROW WHEN ({new}) "
                   "EXECUTE FUNCTION mirror_purchase_facts()")
        op.execute(f"CREATE TRIGGER purchase_facts_update AFTER UPDATE OF profile_id ON events FOR EACH ROW "
                   f"WHEN ({new} AND NEW.profile_id IS DISTINCT FROM OLD.profile_id) EXECUTE FUNCTION mirror_purchase_facts()")
        op.execute(f"CREATE TRIGGER purchase_facts_delete AFTER DELETE ON events FOR EACH ROW WHEN ({old}) "
                   "EXECUTE FUNCTION mirror_purchase_facts()")
    else:
        op.execute(f"CREATE TRIGGER purchase_facts_insert AFTER INSERT ON events WHEN {new} BEGIN "
                   "INSERT INTO purchase_facts (event_id, profile_id, timestamp, received_at, event, properties) "
                   f"VALUES (NEW.id, NEW.profile_id, NEW.timestamp, NEW.received_at, NEW.event, {properties(dialect, 'NEW.')}); END")
        op.execute(f"CREATE TRIGGER purchase_facts_update AFTER UPDATE OF profile_id ON events "
                   f"WHEN {new} AND NEW.profile_id IS NOT OLD.profile_id BEGIN "
                   "UPDATE purchase_facts SET profile_id = NEW.profile_id WHERE event_id = NEW.id; END")
        op.execute(f"CREATE TRIGGER purchase_facts_delete AFTER DELETE ON events WHEN {old} BEGIN "
                   "DELETE FROM purchase_facts WHERE event_id = OLD.id; END")
    op.execute("INSERT INTO purchase_facts (event_id, profile_id, timestamp, received_at, event, properties) "
               f"SELECT id, profile_id, timestamp, received_at, event, {properties(dialect)} FROM events WHERE {is_purchase()}")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger} ON events" if postgresql else f"DROP TRIGGER {trigger}")
    if postgresql:
        op.execute("DROP FUNCTION mirror_purchase_facts()")
    op.drop_table("purchase_facts")
