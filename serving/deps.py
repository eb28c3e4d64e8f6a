"""FastAPI dependencies, as ``Annotated`` aliases."""

from __future__ import annotations

import base64
import time
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from cdp.auth.service import Source, hash_secret, source_for_write_key
from cdp.config import Settings
from cdp.store.db import reader


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[Engine, Depends(get_engine)]


def basic_user(authorization: str | None) -> str | None:
    """The user name of an HTTP Basic header (the write key; the password is empty)."""
    if not authorization or not authorization[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


class WriteKeyCache:
    """Write key -> source, cached briefly so the hot path makes no lookup per request.

    A disabled or deleted source stops being accepted within ``ttl`` seconds.
    """

    def __init__(self, engine: Engine, *, ttl: float = 10.0) -> None:
        self._engine = reader(engine)
        self._ttl = ttl
        self._cache: dict[str, tuple[Source, float]] = {}

    def lookup(self, write_key: str) -> Source | None:
        key_hash = hash_secret(write_key)
        hit = self._cache.get(key_hash)
        now = time.monotonic()
        if hit and hit[1] > now:
            return hit[0]
        with self._engine.connect() as conn:
            source = source_for_write_key(conn, write_key=write_key)
        if source:
            self._cache[key_hash] = (source, now + self._ttl)
        return source
