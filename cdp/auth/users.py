"""Console users: roles mapped to API scopes, scrypt password hashes, server-side sessions.

A session is a random token in an HTTP-only cookie; the store keeps only its sha256 (as for API
tokens) and the session's CSRF token, so signing out or disabling a user takes effect at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update

from cdp.auth.service import hash_secret
from cdp.errors import Conflict, InvalidInput, NotFound, Unauthorized
from cdp.store.tables import user_sessions, users

READ = frozenset({"profiles:read", "audiences:read", "journeys:read", "predictions:read", "recommendations:read",
                  "destinations:read", "governance:read"})
# What each role may do, as the scopes the HTTP APIs check (admin implies every scope).
ROLE_SCOPES = {
    "admin": frozenset({"admin"}),
    "marketer": READ | {"audiences:write", "journeys:write"},
    "analyst": READ,
}
ROLES = tuple(ROLE_SCOPES)
MIN_PASSWORD = 10
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
# scrypt at 16 MiB of memory per hash (OWASP's minimum is n=2**17 with r=8 for interactive logins
# on servers with memory to spare; 2**14 keeps a sign-in near 50 ms on a small machine).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: str

    @property
    def scopes(self) -> frozenset[str]:
        return ROLE_SCOPES[self.role]

    @property
    def a_role(self) -> str:
        """The role with its article, for messages: "an analyst", "a marketer"."""
        return f"{'an' if self.role[0] in 'aeiou' else 'a'} {self.role}"

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    expires_at: datetime


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        expected = base64.urlsafe_b64decode(digest)
        found = hashlib.scrypt(password.encode(), salt=base64.urlsafe_b64decode(salt), n=int(n), r=int(r), p=int(p),
                               dklen=len(expected))
    except ValueError:
        return False
    return kind == "scrypt" and hmac.compare_digest(found, expected)


def create_user(conn: Connection, *, email: str, role: str, password: str, now: datetime) -> User:
    """Register a console user; the password is stored as a scrypt hash only."""
    email = email.strip().lower()
    if not EMAIL.match(email):
        raise InvalidInput(f"{email!r} is not an email address")
    if role not in ROLE_SCOPES:
        raise InvalidInput(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password needs at least {MIN_PASSWORD} characters")
    if conn.execute(select(users.c.id).where(users.c.email == email)).first():
        raise Conflict(f"a user {email!r} already exists")
    user_id = conn.execute(insert(users).values(
        email=email, role=role, password_hash=hash_password(password), created_at=now)).inserted_primary_key[0]
    return User(id=user_id, email=email, role=role)


def set_password(conn: Connection, *, email: str, password: str) -> None:
    """Give an existing user a new password (their sessions end)."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password needs at least {MIN_PASSWORD} characters")
    row = conn.execute(select(users.c.id).where(users.c.email == email.strip().lower())).first()
    if row is None:
        raise NotFound(f"no user {email!r}")
    conn.execute(update(users).where(users.c.id == row.id).values(password_hash=hash_password(password)))
    conn.execute(delete(user_sessions).where(user_sessions.c.user_id == row.id))


def list_users(conn: Connection) -> list[User]:
    query = select(users.c.id, users.c.email, users.c.role).where(users.c.disabled_at.is_(None)).order_by(users.c.id)
    return [User(id=r.id, email=r.email, role=r.role) for r in conn.execute(query)]


def disable_user(conn: Connection, *, email: str, now: datetime) -> None:
    """Disable a user and end their sessions."""
    row = conn.execute(select(users.c.id).where(users.c.email == email.strip().lower())).first()
    if row is None:
        raise NotFound(f"no user {email!r}")
    conn.execute(update(users).where(users.c.id == row.id).values(disabled_at=now))
    conn.execute(delete(user_sessions).where(user_sessions.c.user_id == row.id))


def sign_in(conn: Connection, *, email: str, password: str, now: datetime, lifetime: timedelta) -> tuple[Session, str]:
    """A new session for a user whose password matches; returns it and the cookie's token (stored hashed)."""
    row = conn.execute(select(users).where(users.c.email == email.strip().lower(), users.c.disabled_at.is_(None))).first()
    # The same message whether the email or the password is wrong: it must not reveal who has an account.
    if row is None or not verify_password(password, row.password_hash):
        raise Unauthorized("wrong email or password")
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    conn.execute(delete(user_sessions).where(user_sessions.c.expires_at < now))
    conn.execute(insert(user_sessions).values(token_hash=hash_secret(token), user_id=row.id, csrf_token=csrf,
                                              created_at=now, expires_at=now + lifetime))
    return Session(User(id=row.id, email=row.email, role=row.role), csrf, now + lifetime), token


def session_for_token(conn: Connection, *, token: str, now: datetime) -> Session | None:
    """The live session a cookie's token opens, if any."""
    row = conn.execute(
        select(users.c.id, users.c.email, users.c.role, user_sessions.c.csrf_token, user_sessions.c.expires_at)
        .join(users, users.c.id == user_sessions.c.user_id)
        .where(user_sessions.c.token_hash == hash_secret(token), user_sessions.c.expires_at > now,
               users.c.disabled_at.is_(None))
    ).first()
    return Session(User(id=row.id, email=row.email, role=row.role), row.csrf_token, row.expires_at) if row else None


def sign_out(conn: Connection, *, token: str) -> None:
    conn.execute(delete(user_sessions).where(user_sessions.c.token_hash == hash_secret(token)))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()
