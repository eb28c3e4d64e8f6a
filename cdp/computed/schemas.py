"""A computed trait's definition, and how one event matches it (the Python side of the SQL in ``compute``)."""

from __future__ import annotations

import builtins
import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdp.errors import InvalidInput, validated

Kind = Literal["count", "sum", "avg", "min", "max", "most_frequent", "first", "last", "unique_list", "unique_count"]
Op = Literal["eq", "neq", "gt", "gte", "lt", "lte", "contains", "exists"]

NUMERIC_KINDS = frozenset({"sum", "avg", "min", "max"})
# Kept up to date on ingestion when also unwindowed and per user: their value after new events
# follows from the current value and those events (first / last re-read the profile's events).
INCREMENTAL_KINDS = frozenset({"count", "sum", "min", "max", "first", "last", "unique_list"})
# The value of a profile with no qualifying event: what a profile that left the window gets.
EMPTY: dict[str, Any] = {"count": 0, "unique_count": 0, "sum": 0, "unique_list": []}
UNIQUE_LIST_LIMIT = 100  # mParticle's cap; the list is sorted, so the cap is the same in batch and on ingestion

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Object keys only: PostgreSQL reads a digit path step as an array position, SQLite as a key.
PATH_STEP = re.compile(r'^(?!\d+$)[^."\\\[\]]+$')


class Filter(BaseModel):
    """A condition on one property of the event: ``{"property": "plan", "op": "eq", "value": "pro"}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    property: str
    op: Op = "eq"
    value: str | bool | int | float | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Filter:
        check_path(self.property, "filter property")
        if self.op == "exists":
            if self.value is not None:
                raise ValueError("filter op exists takes no value")
        elif self.value is None:
            raise ValueError(f"filter op {self.op} needs a value")
        elif self.op in ("gt", "gte", "lt", "lte") and isinstance(self.value, bool):
            raise ValueError(f"filter op {self.op} compares numbers or strings, not booleans")
        elif self.op == "contains" and not isinstance(self.value, str):
            raise ValueError("filter op contains needs a string value")
        return self

    def matches(self, properties: Any) -> bool:
        """Whether an event's properties pass; the SQL in ``compute`` says the same thing."""
        found = value_at(properties, self.property)
        if self.op == "exists":
            return found is not None
        if self.op == "neq":
            return not _equal(found, self.value)
        if self.op == "eq":
            return _equal(found, self.value)
        if self.op == "contains":
            return isinstance(found, str) and self.value in found  # type: ignore[operator]
        if not _same_category(found, self.value):
            return False
        return {"gt": found > self.value, "gte": found >= self.value,  # type: ignore[operator]
                "lt": found < self.value, "lte": found <= self.value}[self.op]  # type: ignore[operator]


class ComputedTrait(BaseModel):
    """One computed trait: an aggregate of a profile's matching events, over a window, after filters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Kind
    type: Literal["track", "page", "screen", "identify"] = "track"
    event: str | None = Field(default=None, description="Track event or page / screen name; none means any.")
    property: str | None = Field(default=None, description="Dotted path into properties (traits for identify).")
    window_days: int | None = Field(default=None, ge=1, le=36500, description="None: all time (incremental).")
    filters: tuple[Filter, ...] = ()
    entity: Literal["users", "accounts"] = "users"

    @model_validator(mode="after")
    def _consistent(self) -> ComputedTrait:
        if not NAME.match(self.name):
            raise ValueError("name must be 1-128 letters, digits, '_', '-' or '.', not starting with '-' or '.'")
        if self.type == "identify" and self.event is not None:
            raise ValueError("identify calls have no event name; leave event out")
        if self.kind == "count":
            if self.property is not None:
                raise ValueError("count counts events and takes no property")
        elif self.property is None:
            raise ValueError(f"{self.kind} needs a property")
        else:
            check_path(self.property, "property")
        return self

    @builtins.property  # the field ``property`` hides the builtin in the class body
    def incremental(self) -> bool:
        """Kept up to date on ingestion; the others change only when ``compute_traits`` runs."""
        return self.entity == "users" and self.window_days is None and self.kind in INCREMENTAL_KINDS

    @builtins.property
    def root(self) -> str:
        """Where ``property`` and filters point in the message."""
        return "traits" if self.type == "identify" else "properties"

    def contribution(self, call: str, name: str | None, payload: dict[str, Any]) -> Any:
        """What one event adds: True to a count, else its property's value; None when it does not count."""
        if call != self.type or (self.event is not None and name != self.event):
            return None
        properties = payload.get(self.root)
        if not all(f.matches(properties) for f in self.filters):
            return None
        if self.property is None:
            return True
        found = value_at(properties, self.property)
        return found if self.kind not in NUMERIC_KINDS or is_number(found) else None


def parse_definitions(data: Any) -> list[ComputedTrait]:
    """One definition or a list of them (JSON already parsed), each validated; names must not repeat."""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise InvalidInput("no computed trait definitions given")
    parsed = [parse_definition(item) for item in items]
    names = [d.name for d in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInput(f"computed trait {repeated[0]!r} is defined more than once")
    return parsed


def parse_definition(data: Any) -> ComputedTrait:
    """A definition from JSON data, or ``InvalidInput`` naming the first problem."""
    return validated(ComputedTrait, data, what="computed trait", named_by="name")


def check_path(path: str, what: str) -> None:
    if not path or not all(PATH_STEP.match(step) for step in path.split(".")):
        raise ValueError(f"{what} {path!r} must be a dotted path of object keys "
                         "(no quotes, backslashes, brackets or array positions)")


def value_at(document: Any, path: str) -> Any:
    """The value at a dotted path of object keys; None when missing (as JSON null is)."""
    for step in path.split("."):
        if not isinstance(document, dict):
            return None
        document = document.get(step)
    return document


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_category(a: Any, b: Any) -> bool:
    """Comparable the way the SQL compares: numbers with numbers, strings with strings."""
    return (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))


def _equal(found: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(found, bool):
        return found is wanted
    return _same_category(found, wanted) and found == wanted


def number(value: Any) -> int | float | None:
    """A stored number, the same whichever path computed it: integral values as int, 15 significant digits.

    The SQL sums in a different order (and PostgreSQL in ``numeric``) than the running sum on
    ingestion; rounding away the last binary digits makes both give the same JSON.
    """
    if value is None:
        return None
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        value = float(f"{value:.15g}")
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
    return value
