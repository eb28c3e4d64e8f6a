"""FastAPI dependencies, as ``Annotated`` aliases."""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from sqlalchemy import Connection, Engine

from cdp.auth.service import Source, Token, hash_secret, source_for_write_key, token_for_secret
from cdp.auth.users import Session, User, session_for_token
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


SESSION_COOKIE = "cdp_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_of(request: Request) -> Session | None:
    """The console session the request's cookie opens, if any (looked up each time: sign-out is immediate)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with reader(request.app.state.engine).connect() as conn:
        return session_for_token(conn, token=token, now=datetime.now(UTC))


def csrf_matches(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf_token.encode(), sent.encode())  # type: ignore[union-attr]


async def authorize(request: Request, scope: str | None) -> Token | User:
    """The API token, or the console user of the session cookie, if it carries ``scope`` (admin carries every
    scope; ``None`` admits any caller, for answers that check their own scope). A cookie only authorizes a
    change with the session's CSRF token in ``X-CSRF-Token``: the browser sends cookies on requests other
    sites make it send, but only our pages know that token."""
    # In the event loop: a token is a cache hit (a miss, once per token and ttl, reads the store);
    # a console session reads the store, so in the thread pool.
    secret = bearer_or_basic(request.headers.get("authorization"))
    caller: Token | User
    if secret:
        token = request.app.state.tokens.lookup(secret)
        if token is None:
            raise Unauthorized("unknown or revoked API token (write keys can't read)")
        caller = token
    else:
        session = await run_in_threadpool(session_of, request)
        if session is None:
            raise Unauthorized("missing API token: send Authorization: Bearer TOKEN")
        if request.method not in SAFE_METHODS and not csrf_matches(session, request.headers.get(CSRF_HEADER)):
            raise Forbidden("missing or wrong CSRF token: reload the page and try again", code="csrf_failed")
        caller = session.user
    if scope is not None:
        check_scope(caller, scope)
    return caller


def check_scope(caller: Token | User, scope: str) -> None:
    if caller.allows(scope):
        return
    if isinstance(caller, User):
        raise Forbidden(f"{caller.a_role} can't do this (needs the {scope!r} scope)")
    raise Forbidden(f"this token lacks the {scope!r} scope")


def caller_name(caller: Token | User) -> str:
    """Who asked, as a job records it: the user's email or the token's name."""
    return caller.email if isinstance(caller, User) else f"token {caller.name}"


def require_scope(scope: str) -> Any:
    """A dependency admitting the callers :func:`authorize` admits for ``scope``."""

    async def authorized(request: Request) -> Token | User:
        return await authorize(request, scope)

    return Depends(authorized)


Caller = Token | User
ProfilesReader = Annotated[Caller, require_scope("profiles:read")]
PredictionsReader = Annotated[Caller, require_scope("predictions:read")]
Admin = Annotated[Caller, require_scope("admin")]
RegulationsWriter = Annotated[Caller, require_scope("regulations:write")]
RECOMMENDATIONS_READ = "recommendations:read"
RecommendationsReader = Annotated[Caller, require_scope(RECOMMENDATIONS_READ)]
AudiencesReader = Annotated[Caller, require_scope("audiences:read")]
AudiencesWriter = Annotated[Caller, require_scope("audiences:write")]
DestinationsReader = Annotated[Caller, require_scope("destinations:read")]
DestinationsWriter = Annotated[Caller, require_scope("destinations:write")]
GovernanceReader = Annotated[Caller, require_scope("governance:read")]
JourneysReader = Annotated[Caller, require_scope("journeys:read")]
JourneysWriter = Annotated[Caller, require_scope("journeys:write")]
