"""The ``daily`` flow: every step of :data:`flows.steps.STEPS`, in order, as of one moment."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow

from cdp.config import get_settings
from flows.runtime import task_runner
from flows.steps import STEPS


@flow(name="daily")
def daily(as_of: datetime | None = None) -> dict[str, Any]:
    """Every step (features; training, scoring, audiences as they land) as of one moment (default: now)."""
    as_of, runner = as_of or datetime.now(UTC), task_runner(get_settings())
    return {name: step.with_options(task_runner=runner)(as_of=as_of) for name, step in STEPS.items()}
