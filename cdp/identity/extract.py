"""Which identifiers a message carries."""

from __future__ import annotations

from typing import Any, NamedTuple

from cdp.identity.schemas import ACCOUNTS, USERS, Identifier, IdentityRules


class MessageIdentifiers(NamedTuple):
    """The person's identifiers (highest priority first) and the entities the message links them to.
    A named tuple: one is built per message."""

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

    def identifier(type_: str, value: Any) -> Identifier | None:
        text = _text(value)
        return None if text is None or rules.is_blocked(text) else Identifier(type_.lower(), text)

    def add(type_: str, value: Any) -> None:
        if (found_id := identifier(type_, value)) is not None:
            found.append(found_id)

    def link(entity: str, type_: str, value: Any) -> None:
        if (linked := identifier(type_, value)) is not None:
            links.append((entity, linked))

    add("user_id", message.get("userId"))
    add("anonymous_id", message.get("anonymousId"))
    # Group traits describe the account, not the person: its email is the company's.
    email = (properties.get("email") or traits.get("email")) if kind == "track" else traits.get("email")
    if kind != "group" and isinstance(email, str) and "@" in email:
        add("email", email.strip().lower())
    for external in context.get("externalIds") or []:
        if isinstance(external, dict) and isinstance(external.get("type"), str):
            if external.get("collection", USERS) == ACCOUNTS:
                link(ACCOUNTS, external["type"], external.get("id"))
            elif external["type"].lower() not in ("user_id", "anonymous_id"):
                add(external["type"], external.get("id"))
    if kind == "group":
        link(ACCOUNTS, "group_id", message.get("groupId"))
    for entity, key in rules.entities.items():
        for bag in (context, properties, traits):
            if bag.get(key) is not None:
                link(entity, key, bag[key])
                break
    previous = _text(message.get("previousId")) if kind == "alias" else None
    if previous is not None and rules.is_blocked(previous):
        previous = None
    # Most messages carry one identifier: nothing to deduplicate or order.
    person = tuple(found) if len(found) < 2 else tuple(sorted(dict.fromkeys(found), key=rules.rank))
    return MessageIdentifiers(person, tuple(dict.fromkeys(links)) if links else (), previous)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) else None
