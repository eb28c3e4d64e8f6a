"""Which identifiers a message carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdp.identity.schemas import ACCOUNTS, USERS, Identifier, IdentityRules


@dataclass(frozen=True)
class MessageIdentifiers:
    """The person's identifiers (highest priority first) and the entities the message links them to."""

    person: tuple[Identifier, ...]
    links: tuple[tuple[str, Identifier], ...]  # (entity, identifier of the account / household ...)
    previous_id: str | None  # alias: typed later, as the user_id or anonymous_id it already is


def identifiers_of(message: dict[str, Any], rules: IdentityRules) -> MessageIdentifiers:
    context = _object(message.get("context"))
    traits = {**_object(context.get("traits")), **_object(message.get("traits"))}
    properties = _object(message.get("properties"))
    kind = message.get("type")

    found: list[Identifier] = []
    links: list[tuple[str, Identifier]] = []

    def add(target: list[Any], type_: str, value: Any, entity: str | None = None) -> None:
        text = _text(value)
        if text is not None and not rules.is_blocked(text):
            identifier = Identifier(type_.lower(), text)
            target.append((entity, identifier) if entity else identifier)

    add(found, "user_id", message.get("userId"))
    add(found, "anonymous_id", message.get("anonymousId"))
    # Group traits describe the account, not the person: its email is the company's.
    email = (properties.get("email") or traits.get("email")) if kind == "track" else traits.get("email")
    if kind != "group" and isinstance(email, str) and "@" in email:
        add(found, "email", email.strip().lower())
    for external in context.get("externalIds") or []:
        if isinstance(external, dict) and isinstance(external.get("type"), str):
            if external.get("collection", USERS) == ACCOUNTS:
                add(links, external["type"], external.get("id"), ACCOUNTS)
            elif external["type"].lower() not in ("user_id", "anonymous_id"):
                add(found, external["type"], external.get("id"))
    if kind == "group":
        add(links, "group_id", message.get("groupId"), ACCOUNTS)
    for entity, key in rules.entities.items():
        for bag in (context, properties, traits):
            if bag.get(key) is not None:
                add(links, key, bag[key], entity)
                break
    previous = _text(message.get("previousId")) if kind == "alias" else None
    if previous is not None and rules.is_blocked(previous):
        previous = None
    person = tuple(sorted(dict.fromkeys(found), key=rules.rank))
    return MessageIdentifiers(person=person, links=tuple(dict.fromkeys(links)), previous_id=previous)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) else None
