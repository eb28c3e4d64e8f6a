"""A journey's steps drawn as a flow, in HTML on the server, from the definition ``GET /v1/journeys/{key}`` answers."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from markupsafe import Markup


def flow(journey: dict[str, Any], destinations: dict[int, str]) -> Markup:
    """The entry, then each step; a branching step's branches side by side, each ending in "end"."""
    entry = journey["entry"]
    who = f"{_event(entry)}" + (f" · members of <code>{escape(entry['audience'])}</code>" if entry.get("audience") else "")
    head = _box("entry", "Enters on", who)
    return Markup(f'<div class="flow">{head}{_steps(journey["steps"], destinations)}</div>')


def duration(value: dict[str, float]) -> str:
    """``{"hours": 1, "minutes": 30}`` as "1 h 30 min"."""
    units = (("days", "d"), ("hours", "h"), ("minutes", "min"), ("seconds", "s"))
    return " ".join(f"{value[name]:g} {unit}" for name, unit in units if value.get(name)) or "0 s"


def _steps(steps: Sequence[dict[str, Any]], destinations: dict[int, str]) -> str:
    parts = [_arrow() + _step(step, destinations) for step in steps]
    if not steps or not _branches(steps[-1]):
        parts.append(_arrow() + _box("end", "", "end"))
    return "".join(parts)


def _step(step: dict[str, Any], destinations: dict[int, str]) -> str:
    kind = step["type"]
    if kind == "delay":
        what = f"wait {duration(step['duration'])}"
    elif kind == "wait_for_event":
        what = f"until {_event(step)}, at most {duration(step['timeout'])}"
    elif kind == "send":
        name = destinations.get(step["destination"], f"destination {step['destination']}")
        what = f"<code>{escape(step.get('event') or 'the journey name')}</code> to {escape(name)}"
    elif kind == "data_split":
        what = "first branch whose condition holds"
    else:
        what = "by chance, sticky per profile"
    box = _box(kind, f"{kind.replace('_', ' ')} · {escape(step['id'])}", what)
    branches = _branches(step)
    if not branches:
        return box
    columns = "".join(f'<div class="branch"><div class="name">{escape(label)}</div>{_steps(inner, destinations)}</div>'
                      for label, inner in branches)
    return f'{box}<div class="branches">{columns}</div>'


def _branches(step: dict[str, Any]) -> list[tuple[str, Sequence[dict[str, Any]]]]:
    """(label, steps) of a branching step, as :func:`cdp.journeys.schemas.branches` orders them."""
    if step["type"] == "wait_for_event":
        return [("arrived", step.get("arrived", ())), ("timed out", step.get("timed_out", ()))]
    if step["type"] == "data_split":
        return [(b["name"], b.get("steps", ())) for b in step["branches"]] + [("otherwise", step.get("otherwise", ()))]
    if step["type"] == "random_split":
        return [(f"{b['name']} ({b['percent']:g}%)", b.get("steps", ())) for b in step["branches"]]
    return []


def _event(match: dict[str, Any]) -> str:
    filters = " and ".join(f"{escape(f['property'])} {escape(f.get('op', 'eq'))}"
                           + (f" {escape(str(f['value']))}" if f.get("value") is not None else "")
                           for f in match.get("filters", ()))
    return f"<code>{escape(match['event'])}</code>" + (f" where {filters}" if filters else "")


def _box(kind: str, title: str, body: str) -> str:
    return f'<div class="step {kind}">{f"<b>{title}</b>" if title else ""}{body}</div>'


def _arrow() -> str:
    return '<div class="arrow"></div>'
