"""Propose a tracking plan from the events already stored: the types seen, and what is nearly always there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from cdp.governance.check import json_type
from cdp.store.tables import events

# Where the rules of each planned call type look in the message.
FIELDS = {"track": "properties", "identify": "traits", "group": "traits"}
MAX_DEPTH = 6  # message > properties > products > item > field ...: deeper shapes are left open


@dataclass(frozen=True)
class ProposedPlan:
    rules: dict[str, Any]
    messages: int  # how many stored messages it was inferred from


@dataclass
class _Shape:
    """What was seen at one place in the messages: how often, as which JSON types, with which members."""

    seen: int = 0
    objects: int = 0  # how often it was an object: the base of its members' required share
    types: set[str] = field(default_factory=set)
    members: dict[str, _Shape] = field(default_factory=dict)
    items: _Shape | None = None

    def add(self, value: Any, depth: int = 0) -> None:
        self.seen += 1
        kind = json_type(value)
        self.types.add(kind)
        if depth >= MAX_DEPTH:
            return
        if kind == "object":
            self.objects += 1
            for key, member in value.items():
                self.members.setdefault(key, _Shape()).add(member, depth + 1)
        elif kind == "array" and value:
            self.items = self.items or _Shape()
            for item in value:
                self.items.add(item, depth + 1)

    def schema(self, required_share: float) -> dict[str, Any]:
        types = self.types - {"integer"} if "number" in self.types else self.types  # 3 and 2.5: a number
        schema: dict[str, Any] = {"type": next(iter(types)) if len(types) == 1 else sorted(types)}
        if self.members:
            schema["properties"] = {key: self.members[key].schema(required_share) for key in sorted(self.members)}
            required = [key for key in sorted(self.members) if self.members[key].seen >= required_share * self.objects]
            if required:
                schema["required"] = required
        if self.items is not None:
            schema["items"] = self.items.schema(required_share)
        return schema


def infer_plan(
    conn: Connection, *, source_id: int | None = None, sample: int = 20_000, required_share: float = 0.95
) -> ProposedPlan:
    """Rules that the newest ``sample`` track, identify and group messages follow.

    Per event name (and for identify and group traits): each field's JSON types, nested objects
    and arrays included; a field is required when present in at least ``required_share`` of the
    occurrences of its parent. Unplanned events are violations in the proposal.
    """
    query = (
        select(events.c.type, events.c.event, events.c.payload)
        .where(events.c.type.in_(list(FIELDS)))
        .order_by(events.c.id.desc())
        .limit(sample)
    )
    if source_id is not None:
        query = query.where(events.c.source_id == source_id)
    shapes: dict[tuple[str, str | None], _Shape] = {}
    messages = 0
    for kind, event, payload in conn.execute(query):
        messages += 1
        name = FIELDS[kind]
        # Only the planned part of the message: context and ids are the SDKs' business.
        shapes.setdefault((kind, event if kind == "track" else None), _Shape()).add(
            {name: payload[name]} if name in payload else {}
        )
    rules: dict[str, Any] = {
        "events": {
            event: shape.schema(required_share)
            for (kind, event), shape in sorted(shapes.items(), key=lambda item: str(item[0][1]))
            if kind == "track"
        },
        **{kind: shapes[(kind, None)].schema(required_share) for kind in ("identify", "group") if (kind, None) in shapes},
        "allow_unplanned": False,
    }
    return ProposedPlan(rules=rules, messages=messages)
