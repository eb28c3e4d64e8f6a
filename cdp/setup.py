"""Prepare a store for use: schema at the newest migration, configured credentials registered."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from cdp.auth.service import ensure_admin_token, ensure_write_key
from cdp.computed.service import sync_from_file
from cdp.config import Settings
from cdp.store.db import create_store_engine, migrate


def prepare_store(settings: Settings, *, pool: bool = True) -> Engine:
    """An engine on a migrated store holding the configured write keys, admin token and computed traits."""
    engine = create_store_engine(settings, pool=pool)
    migrate(engine)
    register_configured_credentials(engine, settings)
    if settings.computed_traits_file is not None:
        with engine.begin() as conn:
            sync_from_file(conn, path=settings.computed_traits_file, now=datetime.now(UTC))
    return engine


def register_configured_credentials(engine: Engine, settings: Settings) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Workers start together; serialise the check-then-insert below across them.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727275)")
        for key in settings.write_key_list:
            ensure_write_key(conn, write_key=key, now=now)
        if settings.admin_token:
            ensure_admin_token(conn, token=settings.admin_token, now=now)
