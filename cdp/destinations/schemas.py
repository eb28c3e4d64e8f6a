"""A destination as registered: a webhook (one signed JSON message per request) or a Segment-compatible
batch endpoint (``{"batch": [message]}`` with the receiving workspace's write key)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdp.errors import validated


class DestinationIn(BaseModel):
    """``{"type": "webhook", "name", "url", "secret"}``; ``segment`` also takes ``write_key``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["webhook", "segment"] = "webhook"
    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=1, max_length=2000)
    secret: str | None = Field(default=None, min_length=16, max_length=200,
                               description="HMAC key of the CDP-Signature header; generated when absent.")
    write_key: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _write_key_for_segment(self) -> DestinationIn:
        if self.type == "segment" and not self.write_key:
            raise ValueError("a segment destination needs the write_key of the receiving source")
        if self.type == "webhook" and self.write_key is not None:
            raise ValueError("a webhook destination takes no write_key; it is signed with the secret")
        return self


def parse_destination(data: Any) -> DestinationIn:
    """A destination from JSON data, or ``InvalidInput`` naming the first problem."""
    return validated(DestinationIn, data, what="destination", named_by="name")