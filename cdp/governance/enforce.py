"""Enforce a source's tracking plan on the messages it sends: count, flag or block what breaks it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from cdp.events.schemas import Rejection
from cdp.governance.check import check_message
from cdp.governance.schemas import ActivePlan, Violation
from cdp.store.tables import violations

PLAN_VIOLATION = "plan_violation"  # the quarantine code of blocked messages


def enforce(plan: ActivePlan, row: dict[str, Any], found: list[dict[str, Any]] | None = None) -> dict[str, Any] | Rejection:
    """``row`` to store (flagged in flag mode), or in block mode why it goes to the quarantine.

    The violations are appended to ``found`` as rows of the violations log, for ``record_violations``.
    """
    payload = row["payload"]
    broken = check_message(payload, plan.rules)
    if not broken:
        return row
    if found is not None:
        found += (_log_row(plan, row, violation) for violation in broken)
    if plan.mode == "block":
        reason = f"tracking plan {plan.name!r} v{plan.version}: " + "; ".join(v.message for v in broken)
        return Rejection(PLAN_VIOLATION, reason, payload, row["message_id"])
    if plan.mode == "flag":
        # A new context dict: the message's own may be shared with the request's batch envelope.
        payload["context"] = {**(payload.get("context") or {}), "violationErrors": [v.as_context() for v in broken]}
        row.pop("payload_json", None)  # serialized before the flags: stored from the payload again
    return row


def _log_row(plan: ActivePlan, row: dict[str, Any], violation: Violation) -> dict[str, Any]:
    return {
        "source_id": plan.source_id,
        "message_id": row["message_id"],
        "type": row["type"],
        "event": row["event"],
        "kind": violation.kind,
        "field": violation.field,
        "detail": violation.message,
        "plan_id": plan.plan_id,
        "plan_version": plan.version,
        "received_at": row["received_at"],
    }


def record_violations(conn: Connection, found: list[dict[str, Any]]) -> None:
    """Add ``enforce``'s findings to the violations log, in one statement."""
    if found:
        conn.execute(violations.insert(), found)
