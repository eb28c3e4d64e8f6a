"""Shapes crossing the ingestion boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
MessageType = Literal["identify", "track", "page", "screen", "group", "alias"]


@dataclass(frozen=True)
class Rejection:
    """Why one message was not stored as an event (it goes to the quarantine)."""

    code: str
    reason: str
    message: Any
    message_id: str | None = None
    index: int | None = None  # position in the request's batch


@dataclass
class IngestResult:
    accepted: int = 0
    quarantined: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    deferred: list[dict[str, Any]] = field(default_factory=list)  # stored pending (``defer_attribution``)


@dataclass(frozen=True)
class Envelope:
    """What arrives with the messages: the request's time and the batch-level fields."""

    received_at: datetime
    sent_at: datetime | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None


class SpecMessage(BaseModel):
    """A Segment Spec message, as documented for OpenAPI; parsing is done by hand for speed."""

    model_config = ConfigDict(extra="allow")

    type: MessageType | None = Field(None, description="Implied by the path on single-call endpoints.")
    messageId: str | None = Field(None, max_length=100, description="Dedup key per source; generated when absent.")
    userId: str | None = None
    anonymousId: str | None = None
    event: str | None = Field(None, description="track: the event name.")
    name: str | None = Field(None, description="page / screen: the page name.")
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    groupId: str | None = None
    previousId: str | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None
    writeKey: str | None = None


class BatchRequest(BaseModel):
    """``/v1/batch``, ``/v1/import`` and ``/v1/b``: up to 2,500 messages and 500 KB."""

    model_config = ConfigDict(extra="allow")

    batch: list[SpecMessage]
    sentAt: datetime | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    writeKey: str | None = None
