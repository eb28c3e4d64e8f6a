"""Is the data good enough to train on? Segment Predictions' checks, made explicit.

Segment refuses a prediction without 3x the target window of history, or without 100 users who
perform the target and 100 who don't, and asks for at least 5 event types; we add that the data
must reach the end of the last label window and that the target must be neither too rare nor
too common. Each check says what it saw, what it needs, and what to do, instead of a bad model.

The event types are advice, not a refusal: a transaction log (orders only, the data of every
classic LTV study) is what BTYD models are made for, and the model's purchase features and BTYD
columns beat them on it; more kinds of events only give it more to learn from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine

from cdp.errors import CdpError
from features.labels import Label
from features.read import History, history, snapshot


class NotReady(CdpError):
    """The data can't support the model asked for; the message lists the failed checks."""

    code = "not_ready"


@dataclass(frozen=True)
class Requirements:
    """Thresholds of the readiness checks (Segment's where Segment has one)."""

    history_multiple: float = 3.0
    min_positives: int = 100
    min_negatives: int = 100
    min_event_kinds: int = 5
    min_positive_share: float = 0.01
    max_positive_share: float = 0.99
    # The last hours before the data ends may simply be quiet: allow the data to end this early.
    label_window_slack: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    observed: str
    required: str
    message: str
    advisory: bool = False  # a failure is reported as a warning and does not stop training


@dataclass(frozen=True)
class ReadinessReport:
    """Every check with its verdict; ``ok`` when all pass."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed and not check.advisory)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed and check.advisory)

    def __str__(self) -> str:
        width = max(len(check.name) for check in self.checks)
        lines = [f"data readiness: {'ready' if self.ok else 'NOT READY'}"]
        for check in self.checks:
            mark = "ok  " if check.passed else "warn" if check.advisory else "FAIL"
            lines.append(f"  {mark} {check.name:<{width}}  {check.observed} (needs {check.required}): {check.message}")
        return "\n".join(lines)

    @property
    def verdict(self) -> str:
        """One line: "ready to train" with any warnings, or why not."""
        if self.ok:
            return "ready to train" + "".join(f"; warning: {c.message}" for c in self.warnings)
        return "not enough data to train: " + "; ".join(c.message for c in self.failures)

    def raise_if_not_ready(self) -> None:
        if not self.ok:
            raise NotReady(self.verdict)


def readiness_report(
    engine: Engine,
    frame: pd.DataFrame,
    *,
    horizon: timedelta,
    label: Label,
    requirements: Requirements = Requirements(),
    backfilled_until: datetime | None = None,
) -> ReadinessReport:
    """Check a training frame (of :func:`features.training.build_training_frame`) and its store.

    Parameters
    ----------
    engine : Engine
        The store the frame was built from (for the span and variety of its events).
    frame : pandas.DataFrame
        Columns ``profile_id``, ``cutoff`` and ``label`` at least.
    horizon : timedelta
        The label window the frame was built with.
    label : Label
        The label (for its wording, and whether it is binary).
    requirements : Requirements
        Thresholds.
    backfilled_until : datetime, optional
        As given to :func:`~features.training.build_training_frame`.
    """
    if frame.empty:
        raise NotReady("no eligible profile at any cutoff: nothing to train on (check the cutoffs and eligibility; "
                       "history imported without --backfill counts only from the day it was imported)")
    last_cutoff = pd.Timestamp(frame["cutoff"].max()).to_pydatetime()
    with snapshot(engine) as view:
        seen = history(view.conn, as_of=last_cutoff, backfilled_until=backfilled_until)
    return ReadinessReport(checks=(
        _history(seen, last_cutoff, horizon, requirements),
        _label_window(seen, last_cutoff, horizon, requirements),
        _event_kinds(seen, requirements),
        *_outcomes(frame, label, requirements),
    ))


def _days(span: timedelta) -> float:
    return span.total_seconds() / 86400


def _history(seen: History, last_cutoff: datetime, horizon: timedelta, req: Requirements) -> Check:
    needed = horizon * req.history_multiple
    required = f"{_days(needed):.0f} days ({req.history_multiple:g} x the {_days(horizon):g}-day horizon)"
    if seen.first_event is None or seen.last_event is None:
        return Check("history", False, "no events", required, "the store holds no event attributed to a profile")
    span = min(last_cutoff + horizon, seen.last_event) - seen.first_event
    passed = span >= needed
    message = (
        f"events from {seen.first_event:%Y-%m-%d} cover the features and the last label window"
        if passed
        else f"only {_days(span):.0f} days of events since {seen.first_event:%Y-%m-%d}; wait until "
        f"{seen.first_event + needed:%Y-%m-%d}, import older history, or shorten the horizon"
    )
    return Check("history", passed, f"{_days(span):.0f} days", required, message)


def _label_window(seen: History, last_cutoff: datetime, horizon: timedelta, req: Requirements) -> Check:
    window_end = last_cutoff + horizon
    required = f"events until {window_end:%Y-%m-%d %H:%M}"
    if seen.last_event is None:
        return Check("label_window", False, "no events", required, "the store holds no event attributed to a profile")
    passed = seen.last_event >= window_end - req.label_window_slack
    message = (
        "the last label window is fully observed"
        if passed
        else f"the data ends {seen.last_event:%Y-%m-%d %H:%M}, before the last label window does: its labels would "
        f"be incomplete (churn overstated); use cutoffs up to {seen.last_event - horizon:%Y-%m-%d}"
    )
    return Check("label_window", passed, f"last event {seen.last_event:%Y-%m-%d %H:%M}", required, message)


def _event_kinds(seen: History, req: Requirements) -> Check:
    passed = seen.event_kinds >= req.min_event_kinds
    message = (
        "enough kinds of events to learn from"
        if passed
        else f"only {seen.event_kinds} kinds of events (type and name) are tracked: the model learns from purchase "
        "history alone (as BTYD does); browsing and engagement events would give it more"
    )
    return Check("event_kinds", passed, str(seen.event_kinds), f"at least {req.min_event_kinds}", message, advisory=True)


def _outcomes(frame: pd.DataFrame, label: Label, req: Requirements) -> tuple[Check, ...]:
    target = label.describe()
    positive = frame["label"] > 0
    positives = frame.loc[positive, "profile_id"].nunique()
    negatives = frame.loc[~positive, "profile_id"].nunique()
    share = float(positive.mean())
    yes, no = ("with a positive value", "without") if not label.binary else ("reaching it", "not reaching it")
    return (
        Check(
            "positives", positives >= req.min_positives, f"{positives} profiles", f"at least {req.min_positives}",
            f"{positives} profiles {yes} for {target}" + ("" if positives >= req.min_positives else
            ": too few examples to learn from; add cutoffs, lengthen the horizon or widen the goal"),
        ),
        Check(
            "negatives", negatives >= req.min_negatives, f"{negatives} profiles", f"at least {req.min_negatives}",
            f"{negatives} profiles {no} for {target}" + ("" if negatives >= req.min_negatives else
            ": almost everyone has the outcome, so there is nothing to tell apart; shorten the horizon or narrow the goal"),
        ),
        Check(
            "target_frequency",
            req.min_positive_share <= share <= req.max_positive_share,
            f"{share:.1%} of rows",
            f"{req.min_positive_share:.0%} to {req.max_positive_share:.0%}",
            f"{target} holds for {share:.1%} of eligible profiles"
            + ("" if req.min_positive_share <= share <= req.max_positive_share else
               ": a target this lopsided gives an uninformative model; choose another horizon, event or eligibility"),
        ),
    )
