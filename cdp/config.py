"""The one settings object. Every knob is an environment variable with the ``CDP_`` prefix."""

from __future__ import annotations

import ipaddress
import os
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDP_", extra="ignore")

    home: Path = Field(default=Path(".cdp"), description="Data folder: SQLite store, MLflow store, artifacts.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under home.")
    # PostgreSQL connections per process: kept ones stay open between requests; beyond them, up to
    # the overflow, one is opened for a request and closed after it. Mind the server's
    # max_connections: each `cdp serve` worker and each CLI process has a pool of its own.
    database_pool_size: int = Field(default=16, ge=1, le=1000,
                                    description="PostgreSQL connections kept open per process.")
    database_max_overflow: int = Field(default=16, ge=0, le=1000,
                                       description="PostgreSQL connections opened beyond the kept ones under a burst.")
    # Read as plain strings: pydantic-settings would parse list-typed env vars as JSON.
    write_keys: str = Field(default="", description="Comma-separated write keys registered at start.")
    admin_token: str | None = Field(default=None, description="Admin token registered at start.")
    mlflow_tracking_uri: str | None = None
    destinations_allowlist: str = Field(
        default="", description="Comma-separated hosts, addresses or CIDRs destinations may reach though not public.")
    # Delivery of the outbox (cdp.destinations): a failed attempt waits backoff * 2^(attempt - 1),
    # at most delivery_backoff_max_s; after delivery_max_attempts the message is dead (replayable).
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
    delivery_backoff_s: float = Field(default=2.0, gt=0)
    delivery_backoff_max_s: float = Field(default=3600.0, gt=0)
    delivery_timeout_s: float = Field(default=10.0, gt=0, le=300)
    delivery_poll_s: float = Field(default=0.2, gt=0, description="How often the worker looks for due messages.")
    # A claimed message is taken up again after this long: a worker killed mid-delivery loses nothing.
    delivery_lease_s: float = Field(default=60.0, gt=0)
    journeys_poll_s: float = Field(
        default=1.0, gt=0, description="How often the journey worker fires due timers (delays, waits, quiet hours).")

    serve_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    sqlite_cache_mb: int = Field(default=256, ge=2, description="SQLite page cache per connection.")
    # FULL fsyncs the WAL on every commit, so a 200 survives a power cut, not only a crash.
    sqlite_synchronous: str = "FULL"
    sqlite_background_checkpoint: bool = Field(
        default=True, description="Servers copy the SQLite WAL into the database from a thread, off the writers' lock.")

    # Identity resolution (Segment Unify's rules). Types not listed in the priority come after,
    # alphabetically. A limit is "N" (ever) or "N/7d" (distinct values within a window).
    identity_priority: str = "user_id,email"
    attribution_batch: int = Field(
        default=500, ge=1, le=20_000,
        description="Events the server attributes to profiles per transaction, behind the Tracking API.")
    attribution_lag_ms: int = Field(
        default=50, ge=0,
        description="While attribution keeps up, events are attributed at most this long after they are stored.")
    attribution_share: float = Field(
        default=0.1, gt=0, le=1,
        description="While requests wait for the store's writer back to back (a burst), attribution takes at most this share of its time.")
    attribution_idle_ms: int = Field(
        default=200, ge=0,
        description="Behind a burst, attribution waits for this long a pause in requests, or for the writer to be free.")
    attribution_at_ingest: bool | None = Field(
        default=None,
        description="The Tracking API attributes a returning person's track, page and screen calls in its own "
                    "transaction, instead of leaving them to the follower. Unset: on PostgreSQL, not on SQLite, "
                    "whose single writer would take it from a burst's acknowledgements.")
    identity_limits: str = "user_id=1,anonymous_id=5/7d"
    identity_blocked_values: list[str] = Field(
        default=[r"^[0-]*$", r"^-1$", r"(?i:^null$)", r"(?i:^none$)", r"(?i:^anonymous$)", r"(?i:^undefined$)",
                 r"^\s*$"],
        description="Regular expressions (JSON list in the environment) of placeholder values never used as ids.",
    )
    # Custom entities beyond users and accounts: {"households": "household_id"} links a user to the
    # household whose id a message carries in context, properties or traits under that key.
    entities: dict[str, str] = Field(default_factory=dict)

    computed_traits_file: Path | None = Field(
        default=None, description="JSON file of computed trait definitions (one or a list) declared at start.")

    # Scheduled flows (flows/, `cdp flows ...`).
    flows_schedule: str = Field(default="0 3 * * *", description="Cron (UTC) of the daily flow under `cdp flows serve`.")
    flows_partitions: int = Field(default=1, ge=1, description="Slices of the profiles built as separate tasks.")
    task_runner: Literal["threads", "dask"] = Field(default="threads", description="Where the tasks of a flow run.")
    dask_address: str | None = Field(default=None, description="Scheduler of an existing Dask cluster; else a local one.")
    dask_workers: int | None = Field(default=None, ge=1, description="Workers of the local Dask cluster; default Dask's.")
    # History imported in bulk (received by then) counts from its event time in features and
    # training frames, instead of from the day of the import (see features.sql.known_by);
    # `cdp import --backfill` records its own (cdp.events.backfills), the later of the two applies.
    backfilled_until: datetime | None = None

    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30,
                                         description="How long a console sign-in lasts.")

    max_message_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    max_batch_messages: int = 2500
    import_chunk_rows: int = Field(default=5000, ge=1)

    tracking_poll_seconds: float = Field(
        default=10.0, gt=0, description="How often a server asks MLflow whether a model card, a champion or the latest "
                                        "trainings changed (it keeps what it read until then).")

    # Recommendations (models/recommend, serving/routes/recommendations).
    recs_poll_seconds: float = Field(
        default=10.0, gt=0, description="How often a server asks the MLflow registry for a new recommender champion.")
    recs_exclude_seen: bool = Field(default=True, description="Leave out items the user already interacted with.")
    recs_session_items: int = Field(
        default=5, ge=1, description="Latest interactions of a profile the model has not seen that seed its cold start.")
    recs_trait_items: int = Field(default=10, ge=1, le=100, description="Items in the recommended_items trait.")
    recs_affinity_audiences: str = Field(
        default="", description="Product-based audiences refreshed after each training: kind=value:top_pct, "
        "comma-separated, e.g. brand=acme:10,category=shoes:5 (traits affinity_<kind>_<value>).")

    @field_validator("sqlite_synchronous")
    @classmethod
    def _known_synchronous(cls, value: str) -> str:
        value = value.upper()
        if value not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError("CDP_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        return value

    @field_validator("destinations_allowlist")
    @classmethod
    def _valid_allowlist(cls, value: str) -> str:
        for entry in _split(value):
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)
        return value

    @field_validator("backfilled_until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("CDP_BACKFILLED_UNTIL needs a time zone, e.g. 2026-06-01T00:00:00Z")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'cdp.sqlite').resolve()}"

    @property
    def resolved_mlflow_tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def write_key_list(self) -> list[str]:
        return _split(self.write_keys)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
