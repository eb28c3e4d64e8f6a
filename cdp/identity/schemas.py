"""Identity rules and identifiers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

from cdp.config import Settings
from cdp.errors import InvalidInput

USERS = "users"
ACCOUNTS = "accounts"


class Identifier(NamedTuple):
    """A typed identifier value. A named tuple, not a dataclass: resolution hashes and compares
    these millions of times, and a tuple does both in C."""

    type: str
    value: str


@dataclass(frozen=True)
class Limit:
    """At most ``count`` distinct values of a type per profile; within ``window`` if given, else ever."""

    count: int
    window: timedelta | None = None

    def describe(self, kind: str) -> str:
        days = f" per {self.window.days} days" if self.window else " ever"
        return f"{kind} limit {self.count}{days}"


@dataclass(frozen=True)
class IdentityRules:
    priority: tuple[str, ...] = ("user_id", "email")
    limits: dict[str, Limit] = field(default_factory=lambda: {"user_id": Limit(1), "anonymous_id": Limit(5, timedelta(7))})
    blocked: re.Pattern[str] | None = None  # all blocked-value patterns as one alternation
    entities: dict[str, str] = field(default_factory=dict)  # custom entity -> the message key carrying its id

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentityRules:
        patterns = settings.identity_blocked_values
        try:
            blocked = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        except re.error as exc:
            raise InvalidInput(f"CDP_IDENTITY_BLOCKED_VALUES has an invalid regular expression: {exc}") from None
        priority = tuple(p.strip() for p in settings.identity_priority.split(",") if p.strip())
        return cls(priority=priority, limits=parse_limits(settings.identity_limits), blocked=blocked,
                   entities=dict(settings.entities))

    def rank(self, identifier: Identifier) -> tuple[int, str]:
        """Sort key: listed types by their position, the rest after them alphabetically."""
        if identifier.type in self.priority:
            return (self.priority.index(identifier.type), "")
        return (len(self.priority), identifier.type)

    def is_blocked(self, value: str) -> bool:
        return self.blocked is not None and self.blocked.search(value) is not None


def parse_limits(text: str) -> dict[str, Limit]:
    """``"user_id=1,anonymous_id=5/7d"`` -> limits; a clear error for anything else."""
    limits = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"([a-z0-9_]+)=(\d+)(?:/(\d+)d)?", part)
        if not match or int(match[2]) < 1:
            raise InvalidInput(f"CDP_IDENTITY_LIMITS: expected TYPE=N or TYPE=N/Dd (e.g. anonymous_id=5/7d), got {part!r}")
        window = timedelta(days=int(match[3])) if match[3] else None
        limits[match[1]] = Limit(int(match[2]), window)
    return limits
