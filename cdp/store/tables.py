"""Tables of the store (SQLAlchemy Core). Alembic migrations under ``migrations/`` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

from cdp.store.types import JSONDocument, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements an INTEGER PRIMARY KEY; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")

sources = Table(
    "sources",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    # sha256 of the write key: keys are random and high-entropy, so a fast hash is enough.
    Column("write_key_hash", String(64), nullable=False, unique=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", UTCDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scopes", Text, nullable=False),  # space-separated, as OAuth scopes are
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source_id", Integer, ForeignKey("sources.id"), nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("type", String(16), nullable=False),
    Column("event", Text, nullable=True),  # track event name, page / screen name
    Column("user_id", Text, nullable=True),
    Column("anonymous_id", Text, nullable=True),
    Column("timestamp", UTCDateTime, nullable=False),  # event time (see cdp.events.timestamps)
    Column("original_timestamp", UTCDateTime, nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("payload", JSONDocument, nullable=False),  # the whole message as received
    # The profile the identity graph attributes the event to; re-attributed on merge and split.
    Column("profile_id", BigId, nullable=True),
    # Stored by the Tracking API ahead of identity resolution, which a follower does in bulk
    # (cdp.events.attribution): the request path stays one insert, and nothing accepted waits on it.
    Column("pending", Boolean, nullable=False, server_default=false()),
    # messageId leads: lookups by a list of ids then use the index even before the planner has
    # statistics (a fresh PostgreSQL table otherwise scans every event of the source).
    UniqueConstraint("message_id", "source_id"),
    # A profile's timeline, covering what the feature queries read (migration 0007): INCLUDE
    # columns on PostgreSQL, trailing key columns on SQLite, which has no INCLUDE. Attributed
    # events only (migration 0014): a pending insert skips it; readers ask for a profile anyway.
    Index("ix_events_profile_id_timestamp", "profile_id", "timestamp",
          postgresql_include=["received_at", "type", "event"], postgresql_where=text("profile_id IS NOT NULL"),
          info={"dialect": "postgresql"}).ddl_if(dialect="postgresql"),
    Index(None, "profile_id", "timestamp", "received_at", "type", "event", sqlite_where=text("profile_id IS NOT NULL"),
          info={"dialect": "sqlite"}).ddl_if(dialect="sqlite"),
    Index("ix_events_pending", "id", sqlite_where=text("pending"), postgresql_where=text("pending")),
)
# Queries for pending events say it as ix_events_pending does: SQLite uses a partial index only
# when the query's WHERE repeats the index's own term, and SQLAlchemy renders ``events.c.pending``
# as ``pending = 1`` there, which made the backlog count read every event of the store.
EVENT_PENDING = text("events.pending")

# The purchases among the events, narrow: the purchase features read every purchase a store has
# ever seen, which from ``events`` means reading every event's JSON (1M profiles x 50 events on
# PostgreSQL: a 27 GB heap for 3M orders). Triggers of migration 0015 keep it equal to the
# events it mirrors on every write path (insert, attribution, merge, split, deletion), so no
# writer has to know about it; it is never written to directly.
PURCHASE_FACT_EVENTS = ("Order Completed",)  # Segment's e-commerce spec; other purchase names read ``events``
purchase_facts = Table(
    "purchase_facts",
    metadata,
    Column("event_id", BigId, primary_key=True, autoincrement=False),  # events.id
    Column("profile_id", BigId, nullable=True),
    Column("timestamp", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("event", Text, nullable=False),
    Column("properties", JSONDocument, nullable=True),  # the event's properties object, NULL if not an object
)

# History imported in bulk (``cdp import --backfill``): what it brought counts in features from
# when it happened (cdp.events.backfills), not from the day it was imported.
backfills = Table(
    "backfills",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source_id", Integer, ForeignKey("sources.id"), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("accepted", BigInteger, nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source_id", Integer, ForeignKey("sources.id"), nullable=False),
    Column("message_id", String(100), nullable=True),
    Column("code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),  # of the envelope, for skew correction on replay
    Column("payload", JSONDocument, nullable=False),
    Column("replayed_at", UTCDateTime, nullable=True),
    Index("ix_quarantine_pending", "replayed_at", "id"),
)

profiles = Table(
    "profiles",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("entity", String(32), nullable=False),  # "users", "accounts", or a configured custom entity
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("first_message_id", String(100), nullable=True),
    Column("first_source_id", Integer, nullable=True),
    # A merged profile stays as a tombstone pointing at the survivor, so a split can revive it.
    Column("merged_into", BigId, ForeignKey("profiles.id"), nullable=True),
    Index("ix_profiles_merged_into", "merged_into"),
)

identities = Table(
    "identities",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("entity", String(32), nullable=False),
    Column("type", String(64), nullable=False),  # user_id, anonymous_id, email, group_id, or any external id type
    Column("value", Text, nullable=False),
    Column("profile_id", BigId, ForeignKey("profiles.id"), nullable=False),
    Column("source_id", Integer, nullable=True),
    Column("first_message_id", String(100), nullable=True),
    Column("seen_at", UTCDateTime, nullable=False),  # event time of the first message that carried it
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("value", "type", "entity"),  # value leads, for the same reason as events' key
    Index("ix_identities_profile_id", "profile_id"),
)

merges = Table(
    "merges",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("entity", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),  # merged | refused
    Column("winner_id", BigId, nullable=False),
    Column("loser_id", BigId, nullable=False),
    Column("rule", Text, nullable=False),  # why: the call and the identifier that linked the two
    Column("identifier_type", String(64), nullable=False),
    Column("identifier_value", Text, nullable=False),
    Column("message_id", String(100), nullable=True),
    Column("source_id", Integer, nullable=True),
    Column("identity_ids", JSONDocument, nullable=True),  # the loser's identities, to undo the merge
    Column("created_at", UTCDateTime, nullable=False),
    Column("split_at", UTCDateTime, nullable=True),
    Index("ix_merges_winner_id", "winner_id"),
    Index("ix_merges_loser_id", "loser_id"),
)

trait_changes = Table(
    "trait_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("profile_id", BigId, nullable=False),
    Column("name", Text, nullable=False),
    Column("value", JSONDocument, nullable=True),
    Column("class", String(16), nullable=False),  # identify | computed | predicted | audience
    Column("source_id", Integer, nullable=True),
    Column("message_id", String(100), nullable=True),
    Column("event_time", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_trait_changes_profile_id_name", "profile_id", "name"),
)

profile_traits = Table(
    "profile_traits",
    metadata,
    Column("profile_id", BigId, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("value", JSONDocument, nullable=True),
    Column("class", String(16), nullable=False),
    Column("source_id", Integer, nullable=True),
    Column("event_time", UTCDateTime, nullable=False),  # newest event time wins, not newest arrival
    Column("received_at", UTCDateTime, nullable=False),
    # A computed trait is recomputed for every profile holding it: read by name, not by profile.
    Index("ix_profile_traits_name", "name"),
)

profile_links = Table(
    "profile_links",
    metadata,
    Column("profile_id", BigId, primary_key=True),  # a user
    Column("linked_id", BigId, primary_key=True),  # an account (group) or custom entity
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_profile_links_linked_id", "linked_id"),
)

regulations = Table(
    "regulations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("regulation_type", String(32), nullable=False),
    Column("subject_type", String(16), nullable=False),
    Column("subject_ids", JSONDocument, nullable=False),
    Column("status", String(16), nullable=False),  # INITIALIZED | RUNNING | FINISHED | FAILED
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("error", Text, nullable=True),
    Column("counts", JSONDocument, nullable=True),  # what was deleted / suppressed
    Index("ix_regulations_status", "status"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("value", Text, nullable=False),
    Column("origin", Text, nullable=False),  # the subject ("user_id:u1") whose graph it came from
    Column("regulation_id", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("type", "value"),
    Index("ix_suppressions_value", "value"),
    Index("ix_suppressions_origin", "origin"),
)

tracking_plans = Table(
    "tracking_plans",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Versions are never changed: a plan change is a new version, so what a violation was checked
# against stays known. Sources always use their plan's newest version.
tracking_plan_versions = Table(
    "tracking_plan_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("plan_id", Integer, ForeignKey("tracking_plans.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("rules", JSONDocument, nullable=False),  # see cdp.governance.check
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("plan_id", "version"),
)

source_plans = Table(
    "source_plans",
    metadata,
    Column("source_id", Integer, ForeignKey("sources.id"), primary_key=True),
    Column("plan_id", Integer, ForeignKey("tracking_plans.id"), nullable=False),
    Column("mode", String(8), nullable=False),  # allow | flag | block
    Column("updated_at", UTCDateTime, nullable=False),
)

# One row per violation found at ingestion (replays add none), counted over 1 h / 24 h / 7 d.
violations = Table(
    "violations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source_id", Integer, nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("type", String(16), nullable=False),
    Column("event", Text, nullable=True),
    Column("kind", String(32), nullable=False),  # Unplanned-Event, Required-Missing, Datatype-Mismatch, ...
    Column("field", Text, nullable=False),  # dotted path in the message, e.g. properties.products[0].price
    Column("detail", Text, nullable=False),
    Column("plan_id", Integer, nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_violations_received_at_source_id", "received_at", "source_id"),
)

computed_traits = Table(
    "computed_traits",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("definition", JSONDocument, nullable=False),  # cdp.computed.schemas.ComputedTrait
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # As of when it was last computed for every profile; until then ingestion leaves it alone.
    Column("last_computed_at", UTCDateTime, nullable=True),
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(64), nullable=False),
    # Every change of a definition is a new version; the newest is the one trained and scored.
    Column("version", Integer, nullable=False),
    Column("definition", JSONDocument, nullable=False),  # cdp.predictions.schemas.PredictionDefinition
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("key", "version"),
)

# Imported item descriptions (``cdp catalog import``): they override what interaction events say
# about an item, and ``available`` is the in-stock flag serving filters on.
catalog_items = Table(
    "catalog_items",
    metadata,
    Column("item_id", String(200), primary_key=True),
    Column("name", Text, nullable=True),
    Column("category", Text, nullable=True),
    Column("brand", Text, nullable=True),
    Column("price", Float, nullable=True),
    Column("available", Boolean, nullable=False, default=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

# -- audiences and destinations (cdp.audiences, cdp.destinations) --------------------------------

audiences = Table(
    "audiences",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(128), nullable=False, unique=True),  # also the name of its ``audience`` trait
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", JSONDocument, nullable=False),  # cdp.audiences.schemas.AudienceDefinition
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_computed_at", UTCDateTime, nullable=True),
)

# Every version ever saved, never changed: which definition a history row was evaluated against.
audience_versions = Table(
    "audience_versions",
    metadata,
    Column("audience_id", Integer, ForeignKey("audiences.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("definition", JSONDocument, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

audience_members = Table(
    "audience_members",
    metadata,
    Column("audience_id", Integer, ForeignKey("audiences.id", ondelete="CASCADE"), primary_key=True),
    Column("profile_id", BigId, primary_key=True),
    Column("entered_at", UTCDateTime, nullable=False),
    Index("ix_audience_members_profile_id", "profile_id"),
)

audience_history = Table(
    "audience_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("audience_id", Integer, ForeignKey("audiences.id", ondelete="CASCADE"), nullable=False),
    Column("profile_id", BigId, nullable=False),
    Column("change", String(8), nullable=False),  # entered | exited
    Column("version", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_audience_history_profile_id", "profile_id", "id"),
    Index("ix_audience_history_audience_id", "audience_id", "id"),
)

destinations = Table(
    "destinations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("type", String(16), nullable=False),  # webhook | segment
    Column("name", String(200), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    # Kept in clear: signing needs it. The API never shows it again after creation.
    Column("secret", Text, nullable=False),
    Column("write_key", Text, nullable=True),  # segment: Basic auth user of the receiving workspace
    Column("created_at", UTCDateTime, nullable=False),
)

# The durable outbox: written in the transaction that changed a membership, so a message exists
# if and only if the change does. ``next_attempt_at`` doubles as the lease of a delivery in flight.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("destination_id", Integer, ForeignKey("destinations.id", ondelete="CASCADE"), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("payload", JSONDocument, nullable=False),
    Column("status", String(12), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    UniqueConstraint("idempotency_key", "destination_id"),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_destination_id", "destination_id", "id"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("outbox_id", BigId, ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False),
    Column("destination_id", Integer, ForeignKey("destinations.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_delivery_attempts_destination_id", "destination_id", "id"),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),  # stored lower-cased
    Column("role", String(16), nullable=False),  # admin | marketer | analyst
    Column("password_hash", Text, nullable=False),  # scrypt$n$r$p$salt$hash (cdp.auth.users)
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime, nullable=True),
)

user_sessions = Table(
    "user_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    # sha256 of the cookie's random token: a leaked table does not sign anyone in.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_user_sessions_user_id", "user_id"),
)

# -- journeys and the contact policy (cdp.journeys) -----------------------------------------------

journeys = Table(
    "journeys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(128), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", JSONDocument, nullable=False),  # cdp.journeys.schemas.JourneyDefinition
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Every version ever saved: a profile finishes the journey on the version it entered.
journey_versions = Table(
    "journey_versions",
    metadata,
    Column("journey_id", Integer, ForeignKey("journeys.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("definition", JSONDocument, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# One profile's way through a journey. ``due_at`` is when its timer fires (a delay, a wait's
# timeout, a send held by quiet hours); the journey worker advances those that are due.
journey_instances = Table(
    "journey_instances",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("journey_id", Integer, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("profile_id", BigId, nullable=False),
    Column("reentry_value", Text, nullable=False),  # the entry event's reentry_key property; '' without one
    Column("holdout", Boolean, nullable=False),
    Column("status", String(12), nullable=False),  # active | completed | exited
    Column("step_id", String(64), nullable=True),  # where it is now; null once ended
    Column("due_at", UTCDateTime, nullable=True),
    Column("context", JSONDocument, nullable=False),  # journey_context: triggering event, branches taken
    Column("entered_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("exit_reason", Text, nullable=True),
    # One active instance per profile and re-entry value (the insert does nothing on a conflict).
    Index("ix_journey_instances_one_active", "journey_id", "profile_id", "reentry_value", unique=True,
          sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
    Index("ix_journey_instances_profile_id", "profile_id", "status"),
    Index("ix_journey_instances_due", "status", "due_at"),
    Index("ix_journey_instances_journey_id", "journey_id", "entered_at"),
)

# Every send step reached: sent (queued in the outbox), holdout (never sent), suppressed (a
# frequency cap or a higher-priority journey) or deferred (quiet hours), with the reason.
journey_sends = Table(
    "journey_sends",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("journey_id", Integer, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
    Column("instance_id", BigId, ForeignKey("journey_instances.id", ondelete="CASCADE"), nullable=False),
    Column("profile_id", BigId, nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("destination_id", Integer, nullable=False),
    Column("status", String(12), nullable=False),  # sent | holdout | suppressed | deferred
    Column("reason", Text, nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_journey_sends_caps", "profile_id", "destination_id", "at"),
    Index("ix_journey_sends_journey_id", "journey_id", "status"),
)

contact_policy = Table(
    "contact_policy",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one policy
    Column("policy", JSONDocument, nullable=False),  # cdp.journeys.schemas.ContactPolicy
    Column("updated_at", UTCDateTime, nullable=False),
)

# -- background jobs (cdp.jobs) and failed console sign-ins (cdp.auth.sign_in_limit) --------------

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(64), nullable=False),  # what runs: "prediction_readiness", "audience_save" ...
    Column("scope", String(64), nullable=False),  # the scope a caller needs to read the job
    Column("state", String(16), nullable=False),  # queued | running | done | failed | interrupted
    Column("done", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=True),  # null while the amount of work is unknown
    Column("message", Text, nullable=False),  # what it is doing now, in plain words
    Column("result", JSONDocument, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_by", String(320), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    # Renewed by the process running it: a job whose heartbeat stopped was left by a dead process.
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Index("ix_jobs_state", "state"),
)

sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),  # as typed, lower-cased: accounts or not
    Column("address", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_sign_in_failures_email", "email", "address", "at"),
    Index("ix_sign_in_failures_at", "at"),
)
