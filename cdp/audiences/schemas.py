"""An audience's definition: conditions on traits, predictions, events and other audiences, joined by AND / OR / NOT.

Segment Engage's operators, spelled for JSON. Every trait operator except ``not_exists`` needs the
trait to be present (not null): "plan not equals pro" holds for profiles whose plan is something
else; wrap a condition in ``not`` to mean "everyone else", those without the trait included.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cdp.computed.schemas import NAME, Filter, is_number
from cdp.errors import invalid_input, validated
from cdp.events.timestamps import BadTimestamp, parse_timestamp

Scalar = str | bool | int | float
TraitOp = Literal[
    "eq", "neq", "lt", "gt", "lte", "gte", "in", "contains", "not_contains", "starts_with", "ends_with",
    "exists", "not_exists", "before", "after", "within_last", "within_next",
]
ORDERED = frozenset({"lt", "gt", "lte", "gte"})
TEXT = frozenset({"contains", "not_contains", "starts_with", "ends_with"})
DAYS = frozenset({"within_last", "within_next"})
DATES = frozenset({"before", "after"})
NO_VALUE = frozenset({"exists", "not_exists"})
CALLS = ("track", "page", "screen", "identify", "group")
MAX_DEPTH = 12  # deeper nesting is a mistake, and each level is a subquery


class _Condition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TraitCondition(_Condition):
    """``{"type": "trait", "trait": "plan", "op": "eq", "value": "pro"}``; ``class`` narrows to one trait class."""

    type: Literal["trait"] = "trait"
    trait: str
    trait_class: Literal["identify", "computed", "predicted"] | None = Field(default=None, alias="class")
    op: TraitOp
    value: Scalar | list[Scalar] | None = Field(
        default=None, description="in: a list; within_last / within_next: days; before / after: an ISO date.")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _value_fits_op(self) -> TraitCondition:
        op, value = self.op, self.value
        if op in NO_VALUE:
            if value is not None:
                raise ValueError(f"op {op} takes no value")
        elif op == "in":
            if not isinstance(value, list) or not value:
                raise ValueError("op in needs a non-empty list of values")
        elif isinstance(value, list) or value is None:
            raise ValueError(f"op {op} needs one value")
        elif op in DAYS:
            if not is_number(value) or value != int(value) or value < 1:
                raise ValueError(f"op {op} needs a whole number of days, at least 1")
        elif op in DATES:
            try:
                parse_timestamp(value, f"op {op} value")
            except BadTimestamp as error:
                raise ValueError(str(error)) from None
        elif op in TEXT and not isinstance(value, str):
            raise ValueError(f"op {op} needs a string value")
        elif op in ORDERED and isinstance(value, bool):
            raise ValueError(f"op {op} compares numbers or strings, not booleans")
        return self

    @property
    def moment(self) -> datetime:
        """The date of ``before`` / ``after``."""
        parsed = parse_timestamp(self.value, "value")
        assert parsed is not None
        return parsed


class PredictionCondition(_Condition):
    """``{"type": "prediction", "prediction": "churn", "top_percent": 20}``: the ``churn_percentile`` trait
    (class predicted) is at least 0.8; ``bottom_percent`` N: at most N / 100."""

    type: Literal["prediction"] = "prediction"
    prediction: str
    top_percent: float | None = Field(default=None, gt=0, le=100)
    bottom_percent: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _one_bound(self) -> PredictionCondition:
        if (self.top_percent is None) == (self.bottom_percent is None):
            raise ValueError("give exactly one of top_percent and bottom_percent")
        return self

    @property
    def trait(self) -> str:
        return f"{self.prediction}_percentile"


class EventCondition(_Condition):
    """Performed ``event`` at least ``at_least`` times within the last ``within_days`` (all time when
    none), counting events whose properties pass every filter; ``performed: false`` means "and not who"."""

    type: Literal["event"] = "event"
    event: str | None = Field(default=None, description="Track event or page / screen name; none: any.")
    call: Literal["track", "page", "screen", "identify", "group"] = "track"
    filters: tuple[Filter, ...] = ()
    at_least: int = Field(default=1, ge=1, le=1_000_000)
    within_days: int | None = Field(default=None, ge=1, le=36500)
    performed: bool = True


class AudienceCondition(_Condition):
    """``{"type": "audience", "audience": "key"}``: a member of another audience now."""

    type: Literal["audience"] = "audience"
    audience: str


class AllOf(_Condition):
    type: Literal["and"] = "and"
    conditions: tuple[Condition, ...] = Field(min_length=1)


class AnyOf(_Condition):
    type: Literal["or"] = "or"
    conditions: tuple[Condition, ...] = Field(min_length=1)


class Not(_Condition):
    type: Literal["not"] = "not"
    condition: Condition


Condition = Annotated[
    TraitCondition | PredictionCondition | EventCondition | AudienceCondition | AllOf | AnyOf | Not,
    Field(discriminator="type"),
]
for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()


class AudienceDefinition(_Condition):
    """An audience: its key (also the name of the ``audience`` trait its members get), the condition,
    and the destinations its entered / exited changes are synced to."""

    key: str
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    condition: Condition
    destinations: tuple[int, ...] = Field(default=(), description="Destination ids that receive its changes.")

    @model_validator(mode="after")
    def _consistent(self) -> AudienceDefinition:
        if not NAME.match(self.key) or len(self.key) > 128:
            raise ValueError("key must be 1-128 letters, digits, '_', '-' or '.', not starting with '-' or '.'")
        if depth(self.condition) > MAX_DEPTH:
            raise ValueError(f"conditions nest deeper than {MAX_DEPTH} levels")
        return self

    @property
    def title(self) -> str:
        return self.name or self.key


def children(condition: Any) -> tuple[Any, ...]:
    if isinstance(condition, AllOf | AnyOf):
        return condition.conditions
    if isinstance(condition, Not):
        return (condition.condition,)
    return ()


def depth(condition: Any) -> int:
    return 1 + max((depth(child) for child in children(condition)), default=0)


def referenced_audiences(condition: Any) -> set[str]:
    """Keys of the audiences a condition reads, at any depth."""
    found = {condition.audience} if isinstance(condition, AudienceCondition) else set()
    for child in children(condition):
        found |= referenced_audiences(child)
    return found


def parse_audience(data: Any) -> AudienceDefinition:
    """A definition from JSON data, or ``InvalidInput`` naming the first problem."""
    return validated(AudienceDefinition, data, what="audience", named_by="key")


def parse_condition(data: Any) -> Any:
    """A condition alone (preview), or ``InvalidInput``."""
    try:
        return AudienceDefinition.model_validate({"key": "preview", "condition": data}).condition
    except ValidationError as error:
        raise invalid_input(error, "audience: ") from None
