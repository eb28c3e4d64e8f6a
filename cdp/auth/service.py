"""Create and resolve sources (write keys) and scoped API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

from cdp.errors import Conflict, InvalidInput
from cdp.store.tables import api_tokens, sources

# "admin" implies every other scope.
SCOPES = frozenset(
    {"admin", "profiles:read", "recommendations:read", "audiences:read", "audiences:write", "journeys:read",
     "journeys:write", "predictions:read", "regulations:write", "destinations:read", "destinations:write",
     "governance:read"}
)


@dataclass(frozen=True)
class Source:
    id: int
    name: str


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_write_key() -> str:
    return secrets.token_urlsafe(24)


def new_api_token() -> str:
    return "cdp_" + secrets.token_urlsafe(32)


def create_source(conn: Connection, *, name: str, now: datetime, write_key: str | None = None) -> tuple[Source, str]:
    """Register a source; returns it with its write key (shown once, stored hashed)."""
    name = name.strip()
    if not name:
        raise InvalidInput("a source needs a non-empty name")
    if conn.execute(select(sources.c.id).where(sources.c.name == name)).first():
        raise Conflict(f"a source named {name!r} already exists")
    key = write_key or new_write_key()
    source_id = conn.execute(
        insert(sources).values(name=name, write_key_hash=hash_secret(key), enabled=True, created_at=now)
    ).inserted_primary_key[0]
    return Source(id=source_id, name=name), key


def ensure_write_key(conn: Connection, *, write_key: str, now: datetime) -> Source:
    """Register ``write_key`` (from ``CDP_WRITE_KEYS``) unless it already is; idempotent."""
    found = source_for_write_key(conn, write_key=write_key)
    if found:
        return found
    name = f"env-{hash_secret(write_key)[:12]}"
    return create_source(conn, name=name, now=now, write_key=write_key)[0]


def source_for_write_key(conn: Connection, *, write_key: str) -> Source | None:
    row = conn.execute(
        select(sources.c.id, sources.c.name).where(
            sources.c.write_key_hash == hash_secret(write_key), sources.c.enabled.is_(True)
        )
    ).first()
    return Source(id=row.id, name=row.name) if row else None


def list_sources(conn: Connection) -> list[Source]:
    return [Source(id=r.id, name=r.name) for r in conn.execute(select(sources.c.id, sources.c.name).order_by(sources.c.id))]


def create_token(
    conn: Connection, *, name: str, scopes: list[str], now: datetime, token: str | None = None
) -> tuple[Token, str]:
    """Create an API token with ``scopes``; returns it with the secret (shown once, stored hashed)."""
    unknown = sorted(set(scopes) - SCOPES)
    if unknown or not scopes:
        raise InvalidInput(
            f"unknown scope {', '.join(unknown)}; choose from {', '.join(sorted(SCOPES))}"
            if unknown
            else f"a token needs at least one scope: {', '.join(sorted(SCOPES))}"
        )
    secret = token or new_api_token()
    token_id = conn.execute(
        insert(api_tokens).values(
            name=name, token_hash=hash_secret(secret), scopes=" ".join(sorted(set(scopes))), created_at=now
        )
    ).inserted_primary_key[0]
    return Token(id=token_id, name=name, scopes=frozenset(scopes)), secret


def ensure_admin_token(conn: Connection, *, token: str, now: datetime) -> Token:
    """Register ``token`` (from ``CDP_ADMIN_TOKEN``) as an admin token unless it already is."""
    return token_for_secret(conn, token=token) or create_token(
        conn, name="env-admin", scopes=["admin"], now=now, token=token
    )[0]


def token_for_secret(conn: Connection, *, token: str) -> Token | None:
    row = conn.execute(
        select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.scopes).where(
            api_tokens.c.token_hash == hash_secret(token), api_tokens.c.revoked_at.is_(None)
        )
    ).first()
    return Token(id=row.id, name=row.name, scopes=frozenset(row.scopes.split())) if row else None
