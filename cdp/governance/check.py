"""Check a message against a tracking plan's rules: JSON Schema draft-07, compiled once per version.

A plan version's rules document::

    {"events": {"Order Completed": <schema>, ...}, "identify": <schema>, "group": <schema>,
     "common": <schema>, "allow_unplanned": false}

Each schema applies to the whole message, as in Segment Protocols and RudderStack (so plans
written for them carry over): an event's property rules sit under ``properties.properties``,
identify and group trait rules under ``properties.traits``. ``common`` applies to every message,
``events`` to track calls by event name, ``identify`` / ``group`` to those calls. A track event
missing from ``events`` is an ``Unplanned-Event`` unless ``allow_unplanned`` is true.

Validation runs on every ingested message, so it uses jsonschema-rs: about a hundred times
faster than the pure-Python ``jsonschema`` on the same schemas (1.5 µs against 140 µs for a
valid Order Completed), which keeps a 100-message batch's checks well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Any

import jsonschema_rs
import orjson

from cdp.errors import InvalidInput
from cdp.governance.schemas import Violation, dotted, json_pointer

RULE_KEYS = ("events", "identify", "group", "common", "allow_unplanned")
UNPLANNED = "Unplanned-Event"
_Kind = jsonschema_rs.ValidationErrorKind
# RudderStack's violation types, plus Invalid-Value for the value constraints it lumps together.
KINDS: dict[type, str] = {
    _Kind.Required: "Required-Missing",
    _Kind.Type: "Datatype-Mismatch",
    _Kind.AdditionalProperties: "Additional-Properties",
    **dict.fromkeys(
        (_Kind.Enum, _Kind.Constant, _Kind.Pattern, _Kind.Format, _Kind.Minimum, _Kind.Maximum,
         _Kind.ExclusiveMinimum, _Kind.ExclusiveMaximum, _Kind.MultipleOf, _Kind.MinLength, _Kind.MaxLength,
         _Kind.MinItems, _Kind.MaxItems, _Kind.UniqueItems),
        "Invalid-Value",
    ),
}
UNKNOWN = "Unknown-Violation"
# One broken message (say, an array of a thousand wrong items) must not flood the violations log.
MAX_VIOLATIONS = 10


@dataclass(frozen=True)
class Schema:
    validator: jsonschema_rs.Draft7Validator
    pointer: str  # where the schema sits in the rules document, for the violations' schema paths


@dataclass(frozen=True)
class Rules:
    """One plan version's rules, compiled."""

    events: Mapping[str, Schema]
    by_type: Mapping[str, Schema]  # identify, group
    common: Schema | None
    allow_unplanned: bool


def compile_rules(rules: Any) -> Rules:
    """The compiled rules, or ``InvalidInput`` saying what is wrong with them; cached by content."""
    try:
        canonical = orjson.dumps(rules, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise InvalidInput(f"the rules are not JSON: {exc}") from None
    return _compile(canonical)


@lru_cache(maxsize=64)
def _compile(canonical: bytes) -> Rules:
    rules = orjson.loads(canonical)
    if not isinstance(rules, dict):
        raise InvalidInput('the rules must be a JSON object such as {"events": {"Order Completed": {...}}}')
    unknown = sorted(set(rules) - set(RULE_KEYS))
    if unknown:
        raise InvalidInput(f"unknown key {unknown[0]!r} in the rules; expected {', '.join(RULE_KEYS)}")
    events = rules.get("events", {})
    if not isinstance(events, dict):
        raise InvalidInput("rules.events must be an object from event name to JSON Schema")
    allow_unplanned = rules.get("allow_unplanned", False)
    if not isinstance(allow_unplanned, bool):
        raise InvalidInput("rules.allow_unplanned must be true or false")
    return Rules(
        events={name: _schema(schema, ("events", name)) for name, schema in events.items()},
        by_type={kind: _schema(rules[kind], (kind,)) for kind in ("identify", "group") if kind in rules},
        common=_schema(rules["common"], ("common",)) if "common" in rules else None,
        allow_unplanned=allow_unplanned,
    )


def _schema(schema: Any, path: tuple[str, ...]) -> Schema:
    where = ".".join(("rules", *path))
    if not isinstance(schema, dict | bool):
        raise InvalidInput(f"{where} must be a JSON Schema (an object)")
    try:
        _validator(schema, mask=None)  # unmasked, so that the error quotes the schema's mistake
    except jsonschema_rs.ValidationError as exc:
        inside = ".".join(str(part) for part in exc.instance_path)
        first_line = str(exc).strip().splitlines()[0]
        raise InvalidInput(f"{where} is not a valid JSON Schema{' at ' + inside if inside else ''}: {first_line}") from None
    # Masked: violation texts never quote the message's values, which may be personal data.
    return Schema(_validator(schema, mask="the value"), "#" + json_pointer(path))


def _validator(schema: Any, *, mask: str | None) -> jsonschema_rs.Draft7Validator:
    return jsonschema_rs.Draft7Validator(schema, retriever=_no_remote_refs, mask=mask, validate_formats=True)


def _no_remote_refs(uri: str) -> Any:
    # A plan comes from API users: fetching its $refs would let them make the server call any URL.
    raise ValueError(f"remote $ref {uri} is not fetched; put the definition in the schema")


def check_message(message: Mapping[str, Any], rules: Rules) -> list[Violation]:
    """How ``message`` breaks ``rules`` (at most ``MAX_VIOLATIONS``); empty when it follows them."""
    found: list[Violation] = []
    if rules.common is not None:
        found += _violations(rules.common, message)
    kind = message.get("type")
    if kind == "track":
        name = message.get("event")
        schema = rules.events.get(name)  # type: ignore[arg-type]
        if schema is not None:
            found += _violations(schema, message)
        elif not rules.allow_unplanned:
            found.append(Violation(UNPLANNED, ("event",), f"event {name!r} is not in the tracking plan", "#/events"))
    elif kind in rules.by_type:
        found += _violations(rules.by_type[kind], message)
    return found[:MAX_VIOLATIONS]


def _violations(schema: Schema, message: Mapping[str, Any]) -> Iterator[Violation]:
    for error in islice(schema.validator.iter_errors(message), MAX_VIOLATIONS):
        path = tuple(error.instance_path)
        schema_path = schema.pointer + json_pointer(error.schema_path)
        detail = error.kind
        kind = KINDS.get(type(detail), UNKNOWN)
        if isinstance(detail, _Kind.Required):
            missing = (*path, detail.property)
            yield Violation(kind, missing, f"{dotted(missing)} is required", schema_path)
        elif isinstance(detail, _Kind.AdditionalProperties):
            for name in detail.unexpected:
                extra = (*path, name)
                yield Violation(kind, extra, f"{dotted(extra)} is not in the plan", schema_path)
        elif isinstance(detail, _Kind.Type):
            expected = " or ".join(detail.types)
            yield Violation(kind, path, f"{dotted(path)} must be {expected}, got {json_type(error.instance)}", schema_path)
        else:
            yield Violation(kind, path, f"{dotted(path)}: {error.message}", schema_path)


def json_type(value: Any) -> str:
    """The JSON Schema type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
