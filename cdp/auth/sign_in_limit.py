"""Failed console sign-ins per email and client address: past a limit in a window, sign-in waits.

Kept in the store, so the limit holds across the server's worker processes and its restarts: online
password guessing gets tens of tries an hour, not thousands. Keyed on the pair, so that someone
guessing at a victim's email from elsewhere does not lock the victim out.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select

from cdp.store.tables import sign_in_failures

MAX_FAILURES = 10
WINDOW = timedelta(minutes=15)


def _key(email: str, address: str) -> tuple:
    return sign_in_failures.c.email == email.strip().lower()[:320], sign_in_failures.c.address == address[:64]


def sign_in_wait(conn: Connection, *, email: str, address: str, now: datetime,
                 limit: int = MAX_FAILURES, window: timedelta = WINDOW) -> timedelta | None:
    """How long until this email may be tried again from this address; None when it may now."""
    recent = conn.execute(select(sign_in_failures.c.at).where(*_key(email, address), sign_in_failures.c.at > now - window)
                          .order_by(sign_in_failures.c.at.desc()).limit(limit)).scalars().all()
    if len(recent) < limit:
        return None
    return recent[-1] + window - now


def record_failed_sign_in(conn: Connection, *, email: str, address: str, now: datetime,
                          window: timedelta = WINDOW) -> None:
    conn.execute(delete(sign_in_failures).where(sign_in_failures.c.at <= now - window))  # the table stays small
    conn.execute(insert(sign_in_failures).values(email=email.strip().lower()[:320], address=address[:64], at=now))


def clear_failed_sign_ins(conn: Connection, *, email: str, address: str) -> None:
    conn.execute(delete(sign_in_failures).where(*_key(email, address)))
