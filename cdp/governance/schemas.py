"""Shapes crossing the governance boundary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from cdp.governance.check import Rules

Mode = Literal["allow", "flag", "block"]
# allow: store, count the violations; flag: also mark the stored event with them;
# block: store nothing, keep the message in the quarantine until a plan change lets it through.
MODES: tuple[Mode, ...] = ("allow", "flag", "block")
# The windows of the violation counts, as Segment shows them.
Window = Literal["1h", "24h", "7d"]
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}


@dataclass(frozen=True)
class Violation:
    """One way a message breaks its plan; ``path`` locates the field in the message."""

    kind: str  # Unplanned-Event, Required-Missing, Datatype-Mismatch, Additional-Properties, ...
    path: tuple[str | int, ...]
    message: str
    schema_path: str  # JSON pointer into the plan's rules document

    @property
    def field(self) -> str:
        return dotted(self.path)

    def as_context(self) -> dict[str, Any]:
        """The entry of ``context.violationErrors`` on a flagged event, RudderStack's shape."""
        meta = {"instancePath": json_pointer(self.path), "schemaPath": self.schema_path}
        return {"type": self.kind, "message": self.message, "meta": meta}


def dotted(path: tuple[str | int, ...]) -> str:
    """A path in a message as Segment shows it: ``properties.products[0].price``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text or "message"


def json_pointer(path: Iterable[str | int]) -> str:
    """``path`` as a JSON Pointer (RFC 6901): ``/properties/products/0/price``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


@dataclass(frozen=True)
class ActivePlan:
    """What ingestion enforces for one source: its plan's newest version, compiled, and the mode."""

    source_id: int
    plan_id: int
    name: str
    version: int
    mode: Mode
    rules: Rules


@dataclass(frozen=True)
class SourcePlan:
    source: str
    plan: str
    mode: Mode


@dataclass(frozen=True)
class TrackingPlan:
    """One version of a plan, with the sources that enforce the plan."""

    id: int
    name: str
    version: int
    versions: int
    rules: Mapping[str, Any]
    created_at: datetime
    sources: tuple[SourcePlan, ...]


@dataclass(frozen=True)
class ViolationCount:
    """Violations of one kind on one event of one source, per window of ``WINDOWS``."""

    source: str
    type: str
    event: str | None
    kind: str
    counts: Mapping[str, int]
