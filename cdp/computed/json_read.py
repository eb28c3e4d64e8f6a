"""Typed reads of a JSON column in SQL, alike on SQLite and PostgreSQL (computed traits, audiences)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Numeric, Text, case, false, func, literal, literal_column, not_
from sqlalchemy.dialects.postgresql import JSONB

from cdp.computed.schemas import is_number


class JsonRead:
    """Reads of ``column`` under the object keys ``prefix`` (an event's ``properties``, a trait's value).

    A value counts as a number, a string or a boolean only when the JSON says so: a string "42"
    is not summed, as in ``cdp.computed.schemas`` (PostgreSQL would fail the whole query on a cast).
    A ``path`` of None reads the value at the prefix itself.
    """

    def __init__(self, dialect: str, column: ColumnElement[Any], prefix: Sequence[str] = ()) -> None:
        self.postgres = dialect == "postgresql"
        self.column = column
        self.prefix = tuple(prefix)

    def _parts(self, path: str | None) -> tuple[ColumnElement[Any], ColumnElement[str], ColumnElement[str]]:
        """(node, text of a scalar, JSON type name) of the path."""
        steps = [*self.prefix, *(path.split(".") if path else ())]
        if self.postgres:
            # An empty text[] parameter has no type psycopg can infer: spell the root path out.
            where = literal(steps, ARRAY(Text)) if steps else literal_column("'{}'::text[]")
            node = self.column.op("#>", return_type=JSONB)(where)
            return node, self.column.op("#>>", return_type=Text)(where), func.jsonb_typeof(node)
        location = literal("$" + "".join(f'."{step}"' for step in steps))
        node = func.json_extract(self.column, location)
        return node, node, func.json_type(self.column, location)

    def number(self, path: str | None) -> ColumnElement[Any]:
        scalar = self._parts(path)[1]
        return case((self.is_number(path), scalar.cast(Numeric) if self.postgres else scalar))

    def string(self, path: str | None) -> ColumnElement[Any]:
        _, scalar, kind = self._parts(path)
        return case((kind == ("string" if self.postgres else "text"), scalar))

    def json_text(self, path: str | None) -> ColumnElement[Any]:
        """The value as JSON text; null when missing or JSON null."""
        node, _, kind = self._parts(path)
        if self.postgres:
            return case((kind != "null", node.cast(Text)))
        # One json_type per row. json_extract gives booleans as 1 / 0, so their type name is their
        # text; json_quote keeps objects and arrays as they are.
        return case({"null": None, "true": "true", "false": "false"}, value=func.coalesce(kind, "null"),
                    else_=func.json_quote(node))

    def present(self, path: str | None) -> ColumnElement[bool]:
        """The path holds a value (not JSON null): a cheaper test than the value itself being not null."""
        return self._parts(path)[2] != "null"

    def is_number(self, path: str | None) -> ColumnElement[bool]:
        kind = self._parts(path)[2]
        return kind == "number" if self.postgres else kind.in_(("integer", "real"))

    def ordered(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """Code point order, as Python compares strings (PostgreSQL's default collation may be a locale's)."""
        return column.collate("C") if self.postgres else column

    def contains(self, path: str | None, wanted: str) -> ColumnElement[bool]:
        text = self.string(path)
        return (func.strpos(text, wanted) if self.postgres else func.instr(text, wanted)) > 0

    def matches(self, path: str | None, op: str, wanted: Any) -> ColumnElement[bool]:
        """The value at ``path`` against ``wanted`` with op eq, neq, gt, gte, lt, lte, contains or exists."""
        if op == "exists":
            return self.json_text(path).is_not(None)
        if op == "contains":
            return self.contains(path, wanted)
        if op in ("eq", "neq"):
            if isinstance(wanted, bool):
                equal = self.json_text(path) == ("true" if wanted else "false")
            elif is_number(wanted):
                equal = self.number(path) == wanted
            else:
                equal = self.string(path) == wanted
            # A missing property is "not equal": null must not leak through the negation.
            return equal if op == "eq" else not_(func.coalesce(equal, false()))
        operand = self.number(path) if is_number(wanted) else self.ordered(self.string(path))
        return {"gt": operand > wanted, "gte": operand >= wanted, "lt": operand < wanted, "lte": operand <= wanted}[op]
