"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python; ``timestamptz`` on PostgreSQL, ISO text on SQLite.

    SQLite has no time zone type, so values are normalised to naive UTC on the way in and
    get their UTC zone back on the way out; comparisons in SQL stay lexicographic-correct.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL so features can index and query properties; JSON text elsewhere.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


def dumps_json(value: Any) -> str:
    """Serializer for JSON columns: orjson is several times faster than the stdlib here."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def id_list(dialect: str, ids: list[int]) -> Any:
    """``ids`` as one driver parameter: an array on PostgreSQL (for ``unnest(%b::bigint[])``), one
    JSON text on SQLite (for ``json_each(?)``), whatever the count (SQLite caps the parameters)."""
    return ids if dialect == "postgresql" else dumps_json(ids)


def sqlite_datetime(value: datetime | None) -> str | None:
    """The text SQLAlchemy stores for a ``UTCDateTime`` on SQLite, for driver-level bulk inserts."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # Cut before the "+00:00": half the cost of a copy without the time zone, on the writer's time.
    return value.isoformat(" ", "microseconds")[:26]


def loads_json(value: str | bytes | float) -> Any:
    """Deserializer for JSON columns. SQLite's JSON columns have numeric affinity and hand a stored
    number back as a number, which SQLAlchemy's SQLite type passes through only on a TypeError."""
    if isinstance(value, int | float):
        return value
    return orjson.loads(value)
