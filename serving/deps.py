"""FastAPI dependencies, as ``Annotated`` aliases."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

from cdp.auth.service import Source, Token, hash_secret, source_for_write_key, token_for_secret
from cdp.config import Settings
from cdp.errors import Forbidden, Unauthorized
from cdp.store.db import reader


# The dependencies are ``async def`` although they don't await: FastAPI runs a plain ``def``
# dependency in its thread pool, a hop per dependency per request that costs more than their work.
async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


C = TypeVar("C")

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


def bearer_or_basic(authorization: str | None) -> str | None:
    """An API token: ``Bearer TOKEN``, or Basic with the token as user name (Segment's Profile API)."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return basic_user(authorization)


class CredentialCache(Generic[C]):
    """Secret -> what it grants, cached briefly so the hot path makes no lookup per request.

    A disabled source or revoked token stops being accepted within ``ttl`` seconds.
    """

    def __init__(self, engine: Engine, resolve: Callable[[Connection, str], C | None], *, ttl: float = 10.0) -> None:
        self._engine = reader(engine)
        self._resolve = resolve
        self._ttl = ttl
        self._cache: dict[str, tuple[C, float]] = {}

    def lookup(self, secret: str) -> C | None:
        key_hash = hash_secret(secret)
        hit = self._cache.get(key_hash)
        now = time.monotonic()
        if hit and hit[1] > now:
            return hit[0]
        with self._engine.connect() as conn:
            found = self._resolve(conn, secret)
        if found is not None:
            self._cache[key_hash] = (found, now + self._ttl)
        return found


def write_key_cache(engine: Engine) -> CredentialCache[Source]:
    return CredentialCache(engine, lambda conn, key: source_for_write_key(conn, write_key=key))


def token_cache(engine: Engine) -> CredentialCache[Token]:
    return CredentialCache(engine, lambda conn, secret: token_for_secret(conn, token=secret))


def require_scope(scope: str) -> Any:
    """A dependency admitting API tokens that carry ``scope`` (admin carries every scope)."""

    async def authorize(request: Request) -> Token:
        # In the event loop (see get_settings_dep): a cache hit; a miss, once per token and ttl, reads the store.
        secret = bearer_or_basic(request.headers.get("authorization"))
        if not secret:
            raise Unauthorized("missing API token: send Authorization: Bearer TOKEN")
        token = request.app.state.tokens.lookup(secret)
        if token is None:
            raise Unauthorized("unknown or revoked API token (write keys can't read)")
        if not token.allows(scope):
            raise Forbidden(f"this token lacks the {scope!r} scope")
        return token

    return Depends(authorize)


ProfilesReader = Annotated[Token, require_scope("profiles:read")]
PredictionsReader = Annotated[Token, require_scope("predictions:read")]
Admin = Annotated[Token, require_scope("admin")]
RegulationsWriter = Annotated[Token, require_scope("regulations:write")]
RecommendationsReader = Annotated[Token, require_scope("recommendations:read")]
