"""Labels from the window after the cutoff only, stacked training frames, and the readiness report."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from features import (
    ActiveWithin,
    ChurnLabel,
    GoalLabel,
    MinPurchases,
    NotReady,
    Requirements,
    ValueLabel,
    build_training_frame,
    readiness_report,
)
from features.read import labels_at, snapshot
from tests.features_data import iso, profile_of, store, track
from tests.test_features import CUTOFF, at, on_time, order, page

HORIZON = timedelta(days=30)
ORDER_EVENT = "Order Completed"


def labels(engine, label, cutoff=CUTOFF):  # type: ignore[no-untyped-def]
    with snapshot(engine) as view:
        return label.outcome(labels_at(view.conn, cutoff=cutoff, horizon=HORIZON, label=label))


def test_labels_use_only_the_window(engine) -> None:  # type: ignore[no-untyped-def]
    store(engine, [(order("ann", CUTOFF, 100.0), CUTOFF)] + on_time(  # at the cutoff: a feature, not a label
        order("ann", CUTOFF + HORIZON, 7.0),  # exactly at the end of the window: counts
        order("ann", CUTOFF + HORIZON + timedelta(microseconds=1), 1000.0),  # after it: doesn't
        track("ann", "Plan Upgraded", at(10), plan="pro", seats=3, annual=True),
        track("ann", "Plan Upgraded", at(11), plan="plus", seats=3, annual=False),
        page("bob", at(-1)),  # active before the cutoff, silent after it
        page("cy", at(-5)), page("cy", at(31)),
        order("dan", at(3), -20.0),  # a return only: worth nothing, not less
        order("eve", at(2), 10.0), order("eve", at(4), -4.0),  # a purchase, then a partial return
        track("fay", ORDER_EVENT, at(6), price=2.5, quantity=4),  # a flat order line: no revenue, no products
    ))
    ann, bob, cy, dan, eve, fay = (profile_of(engine, user) for user in ("ann", "bob", "cy", "dan", "eve", "fay"))
    assert labels(engine, ValueLabel()).to_dict() == {ann: 7.0, dan: 0.0, eve: 6.0, fay: 10.0}
    churn = labels(engine, ChurnLabel())
    assert churn[ann] == 0 and bob not in churn.index and cy not in churn.index  # absent = no event = churned
    assert labels(engine, GoalLabel(ORDER_EVENT, min_count=1))[ann] == 1
    assert labels(engine, GoalLabel(ORDER_EVENT, min_count=2))[ann] == 0
    assert labels(engine, GoalLabel("Plan Upgraded", properties={"plan": "pro", "seats": 3}))[ann] == 1
    assert labels(engine, GoalLabel("Plan Upgraded", properties={"annual": True}, min_count=2))[ann] == 0
    assert labels(engine, GoalLabel("Plan Upgraded", properties={"plan": "pro", "annual": False}))[ann] == 0
    assert labels(engine, GoalLabel("Plan Upgraded", where=lambda e: e.number("seats") >= 3, min_count=2))[ann] == 1
    assert labels(engine, ChurnLabel(events=("Plan Upgraded",)))[ann] == 0

    frame = build_training_frame(engine, cutoffs=[CUTOFF], horizon=HORIZON, label=ValueLabel(), feature_set="rfm",
                                 eligibility=())
    by_profile = frame.set_index("profile_id")
    assert by_profile.loc[ann, "label"] == 7.0 and by_profile.loc[ann, "monetary"] == 100.0
    assert by_profile.loc[bob, "label"] == 0.0 and cy in by_profile.index


def test_training_frame_stacks_cutoffs_with_eligibility(engine) -> None:  # type: ignore[no-untyped-def]
    store(engine, on_time(
        page("ann", at(-200)), order("ann", at(-50), 10.0), order("ann", at(-20), 10.0), page("ann", at(45)),
        page("bob", at(-150)),  # inactive for 150 days at the cutoff: not eligible
        order("cy", at(-10), 5.0),  # churns after the first cutoff
    ))
    cutoffs = [CUTOFF, CUTOFF - timedelta(days=30)]
    frame = build_training_frame(engine, cutoffs=cutoffs, horizon=timedelta(days=60), label=ChurnLabel(),
                                 feature_set="rfm", eligibility=(ActiveWithin(days=90),))
    assert list(frame.columns) == ["profile_id", "cutoff", "recency_days", "frequency", "monetary", "tenure_days", "label"]
    ann, bob, cy = (profile_of(engine, user) for user in ("ann", "bob", "cy"))
    rows = {(r.profile_id, r.cutoff.to_pydatetime()): r for r in frame.itertuples()}
    assert set(rows) == {(ann, cutoffs[1]), (ann, CUTOFF), (cy, CUTOFF)}  # cy had no event 30 days earlier
    assert rows[(ann, cutoffs[1])].frequency == 1 and rows[(ann, CUTOFF)].frequency == 2
    assert (rows[(ann, CUTOFF)].label, rows[(cy, CUTOFF)].label) == (0, 1)
    assert rows[(ann, cutoffs[1])].label == 0  # the order 20 days before CUTOFF is in its window
    assert frame["label"].dtype == "int64" and str(frame["cutoff"].dt.tz) == "UTC"
    assert frame["cutoff"].is_monotonic_increasing

    buyers = build_training_frame(engine, cutoffs=[CUTOFF], horizon=HORIZON, label=ValueLabel(), feature_set="rfm",
                                  eligibility=(MinPurchases(2),))
    assert buyers["profile_id"].tolist() == [ann]
    with pytest.raises(ValueError, match="timezone-aware"):
        build_training_frame(engine, cutoffs=[datetime(2025, 1, 1)], horizon=HORIZON, label=ChurnLabel())


def test_category_columns_that_appear_later_are_zero_for_buyers(engine) -> None:  # type: ignore[no-untyped-def]
    earlier = CUTOFF - timedelta(days=30)
    store(engine, on_time(order("ann", at(-40), 5.0, ("Books", 5.0, 1)), order("ann", at(-10), 5.0, ("Garden", 5.0, 1)),
                          page("bob", at(-40))))
    frame = build_training_frame(engine, cutoffs=[earlier, CUTOFF], horizon=HORIZON, label=ChurnLabel(),
                                 feature_set=["category_share"], eligibility=())
    assert list(frame.columns) == ["profile_id", "cutoff", "category_share__books", "category_share__garden", "label"]
    rows = frame.set_index(["profile_id", "cutoff"])
    ann, bob = profile_of(engine, "ann"), profile_of(engine, "bob")
    assert rows.loc[(ann, earlier)].tolist()[:2] == [1.0, 0.0]  # garden wasn't bought yet: 0, not missing
    assert rows.loc[(ann, CUTOFF)].tolist()[:2] == [0.5, 0.5]
    assert pd.isna(rows.loc[(bob, earlier)].iloc[:2]).all()  # bought nothing: no shares


def test_readiness_refuses_too_little_history_and_too_few_examples(engine) -> None:  # type: ignore[no-untyped-def]
    store(engine, on_time(*(page(f"u{i}", at(-20 + i / 10)) for i in range(30)), order("u1", at(5), 10.0)))
    frame = build_training_frame(engine, cutoffs=[CUTOFF], horizon=HORIZON, label=GoalLabel(ORDER_EVENT),
                                 feature_set="rfm")
    report = readiness_report(engine, frame, horizon=HORIZON, label=GoalLabel(ORDER_EVENT))
    assert not report.ok
    failed = {check.name: check for check in report.failures}
    assert set(failed) == {"history", "label_window", "positives", "negatives"}
    # Two kinds of events are too few to learn much from, but a transaction log trains: a warning.
    assert [check.name for check in report.warnings] == ["event_kinds"]
    assert "only 25 days of events" in failed["history"].message and failed["history"].required.startswith("90 days")
    assert failed["positives"].observed == "1 profiles" and "too few examples" in failed["positives"].message
    assert "the data ends" in failed["label_window"].message
    text = str(report)
    assert text.startswith("data readiness: NOT READY") and "FAIL positives" in text and "ok   target_frequency" in text
    assert "warn event_kinds" in text
    with pytest.raises(NotReady, match="not enough data to train: only 25 days"):
        report.raise_if_not_ready()
    with pytest.raises(NotReady, match="no eligible profile"):
        readiness_report(engine, frame.iloc[0:0], horizon=HORIZON, label=GoalLabel(ORDER_EVENT))


def test_readiness_passes_when_every_check_does(engine) -> None:  # type: ignore[no-untyped-def]
    kinds = ("Product Viewed", "Product Added", "Products Searched", "Signed Up")
    messages = [page(f"u{i}", at(-100 + i)) for i in range(10)]
    messages += [track(f"u{i}", kinds[i % 4], at(-1)) for i in range(10)]
    messages += [order(f"u{i}", at(10), 5.0) for i in range(0, 10, 2)] + [page("u9", at(40))]
    store(engine, on_time(*messages, {"type": "identify", "userId": "u0", "timestamp": iso(at(-3)), "traits": {}}))
    frame = build_training_frame(engine, cutoffs=[CUTOFF], horizon=HORIZON, label=ChurnLabel(), feature_set="rfm")
    relaxed = Requirements(min_positives=3, min_negatives=3, history_multiple=3.5)
    report = readiness_report(engine, frame, horizon=HORIZON, label=ChurnLabel(), requirements=relaxed)
    assert report.ok, str(report)
    report.raise_if_not_ready()
    assert pd.Series([c.passed for c in report.checks]).all() and len(report.checks) == 6


def test_unknown_times_are_refused(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="horizon must be positive"):
        build_training_frame(engine, cutoffs=[CUTOFF], horizon=timedelta(0), label=ChurnLabel())
    with pytest.raises(ValueError, match="distinct"):
        build_training_frame(engine, cutoffs=[CUTOFF, CUTOFF], horizon=HORIZON, label=ChurnLabel())
