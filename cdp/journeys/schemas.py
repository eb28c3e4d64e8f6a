"""A journey's definition (Segment Journeys V2 semantics) and the global contact policy, as JSON.

A journey starts when a live track event matches its entry (event name, property filters and, when
given, membership of an audience), then walks a tree of steps: ``delay``, ``wait_for_event`` (an
``arrived`` and a ``timed_out`` branch), ``data_split`` (first branch whose condition holds),
``random_split`` (sticky per profile) and ``send``. A branch that runs out of steps ends the journey.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdp.audiences.schemas import Condition, referenced_audiences
from cdp.computed.schemas import NAME, Filter, check_path
from cdp.errors import validated

MAX_STEPS = 50  # Segment's limit per journey; a longer tree is a mistake
STEP_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Duration(_Model):
    """``{"hours": 1, "minutes": 30}``: the parts add up."""

    days: float = Field(default=0, ge=0)
    hours: float = Field(default=0, ge=0)
    minutes: float = Field(default=0, ge=0)
    seconds: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _positive(self) -> Duration:
        if self.delta <= timedelta(0):
            raise ValueError("a duration needs days, hours, minutes or seconds above 0")
        if self.delta > timedelta(days=366):
            raise ValueError("a duration is at most 366 days")
        return self

    @property
    def delta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds)


class EventMatch(_Model):
    """A track event by name whose properties pass every filter."""

    event: str = Field(min_length=1, max_length=200)
    filters: tuple[Filter, ...] = ()

    def matches(self, row: dict[str, Any]) -> bool:
        return (row["type"] == "track" and row.get("event") == self.event
                and all(f.matches(row["payload"].get("properties")) for f in self.filters))


class Entry(EventMatch):
    """Who enters: the event, its property filters, and optionally members of an audience (by key)."""

    audience: str | None = None


class _Step(_Model):
    id: str

    @model_validator(mode="after")
    def _valid_id(self) -> _Step:
        if not STEP_ID.match(self.id):
            raise ValueError(f"step id {self.id!r} must be 1-64 letters, digits, '_', '-' or '.'")
        return self


class Delay(_Step):
    type: Literal["delay"] = "delay"
    duration: Duration


class WaitForEvent(_Step):
    """Hold until the profile performs ``event`` (then ``arrived``) or ``timeout`` passes (then ``timed_out``)."""

    type: Literal["wait_for_event"] = "wait_for_event"
    event: str = Field(min_length=1, max_length=200)
    filters: tuple[Filter, ...] = ()
    timeout: Duration
    arrived: tuple[Step, ...] = ()
    timed_out: tuple[Step, ...] = ()

    @property
    def awaited(self) -> EventMatch:
        return EventMatch(event=self.event, filters=self.filters)


class DataBranch(_Model):
    """Taken when the profile meets ``condition`` (an audience condition) and the triggering event's
    properties pass ``event_filters``; both optional."""

    name: str = Field(min_length=1, max_length=100)
    condition: Condition | None = None
    event_filters: tuple[Filter, ...] = ()
    steps: tuple[Step, ...] = ()


class DataSplit(_Step):
    """The first branch that holds; ``otherwise`` when none does."""

    type: Literal["data_split"] = "data_split"
    branches: tuple[DataBranch, ...] = Field(min_length=1, max_length=9)
    otherwise: tuple[Step, ...] = ()


class RandomBranch(_Model):
    name: str = Field(min_length=1, max_length=100)
    percent: float = Field(gt=0, le=100)
    steps: tuple[Step, ...] = ()


class RandomSplit(_Step):
    """A branch by weight, the same one every time for a profile (a hash of journey, step and profile)."""

    type: Literal["random_split"] = "random_split"
    branches: tuple[RandomBranch, ...] = Field(min_length=2, max_length=5)

    @model_validator(mode="after")
    def _whole(self) -> RandomSplit:
        if abs(sum(b.percent for b in self.branches) - 100) > 1e-9:
            raise ValueError(f"random split {self.id!r}: branch percents must add up to 100")
        return self


class Send(_Step):
    """A track call to a destination, ``properties.journey_context`` saying what triggered it and which
    branches led here; ``traits`` copies those profile traits into the properties."""

    type: Literal["send"] = "send"
    destination: int
    event: str | None = Field(default=None, max_length=200, description="Event name sent; default: the journey's name.")
    traits: tuple[str, ...] = ()


Step = Annotated[Delay | WaitForEvent | DataSplit | RandomSplit | Send, Field(discriminator="type")]
for _model in (WaitForEvent, DataBranch, DataSplit, RandomBranch, RandomSplit):
    _model.model_rebuild()


class Goal(_Model):
    """A conversion for the lift report: ``event`` performed within ``within`` of entering."""

    event: str = Field(min_length=1, max_length=200)
    within: Duration


class JourneyDefinition(_Model):
    key: str
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    entry: Entry
    reentry_key: str | None = Field(
        default=None, description="Property of the entry event: one instance per value at a time (e.g. cart_id); "
        "without it, one per profile at a time.")
    exit_events: tuple[EventMatch, ...] = Field(default=(), description="Any of these ends a profile's instance.")
    holdout: float = Field(default=0, ge=0, lt=1, description="Share of profiles that go through but are never sent.")
    goal: Goal | None = None
    steps: tuple[Step, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> JourneyDefinition:
        if not NAME.match(self.key) or len(self.key) > 128:
            raise ValueError("key must be 1-128 letters, digits, '_', '-' or '.', not starting with '-' or '.'")
        if self.reentry_key is not None:
            check_path(self.reentry_key, "reentry_key")
        ids = [step.id for step in walk(self.steps)]
        if len(ids) > MAX_STEPS:
            raise ValueError(f"a journey has at most {MAX_STEPS} steps")
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"step id {repeated[0]!r} is used more than once")
        return self

    @property
    def title(self) -> str:
        return self.name or self.key

    def audiences(self) -> set[str]:
        """Keys of the audiences the entry and the data splits read."""
        found = {self.entry.audience} if self.entry.audience else set()
        for step in walk(self.steps):
            if isinstance(step, DataSplit):
                for branch in step.branches:
                    if branch.condition is not None:
                        found |= referenced_audiences(branch.condition)
        return found

    def destinations(self) -> set[int]:
        return {step.destination for step in walk(self.steps) if isinstance(step, Send)}


def branches(step: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """(branch label, steps) of a branching step, in the order they are tried."""
    if isinstance(step, WaitForEvent):
        return [("arrived", step.arrived), ("timed out", step.timed_out)]
    if isinstance(step, DataSplit):
        return [(b.name, b.steps) for b in step.branches] + [("otherwise", step.otherwise)]
    if isinstance(step, RandomSplit):
        return [(b.name, b.steps) for b in step.branches]
    return []


def walk(steps: tuple[Any, ...]) -> list[Any]:
    """Every step of a tree, depth first."""
    found = []
    for step in steps:
        found.append(step)
        for _, inner in branches(step):
            found += walk(inner)
    return found


def parse_journey(data: Any) -> JourneyDefinition:
    """A definition from JSON data, or ``InvalidInput`` naming the first problem."""
    return validated(JourneyDefinition, data, what="journey", named_by="key")


# -- the global contact policy --------------------------------------------------------------------


class FrequencyCap(_Model):
    """At most ``max`` journey sends per profile to ``destination`` (each destination alone when none)
    within ``window``."""

    destination: int | None = None
    max: int = Field(ge=0, le=10_000)
    window: Duration


class QuietHours(_Model):
    """Local ``start`` to ``end`` (may pass midnight): sends wait until ``end``. The profile's local time
    comes from its ``timezone_trait`` (an IANA name such as Europe/Oslo), else ``timezone``."""

    start: time
    end: time
    timezone: str = "UTC"
    timezone_trait: str | None = "timezone"

    @model_validator(mode="after")
    def _known_zone(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours need different start and end times")
        if zone(self.timezone) is None:
            raise ValueError(f"unknown time zone {self.timezone!r}")
        return self


class ContactPolicy(_Model):
    """Across journeys: frequency caps, quiet hours, and the order in which journeys win a capped slot
    (``priority``: journey keys, highest first; others after, in key order)."""

    frequency_caps: tuple[FrequencyCap, ...] = ()
    quiet_hours: QuietHours | None = None
    priority: tuple[str, ...] = ()

    def rank(self, journey_key: str) -> tuple[int, str]:
        """Sort key: lower wins."""
        return (self.priority.index(journey_key) if journey_key in self.priority else len(self.priority), journey_key)


def zone(name: Any) -> ZoneInfo | None:
    """The IANA time zone of that name, or None when it is not one."""
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def parse_policy(data: Any) -> ContactPolicy:
    return validated(ContactPolicy, data, what="contact policy")

