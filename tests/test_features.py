"""Point-in-time features on SQLite and PostgreSQL: planted leaks, hand-computed values, the pandas
reference on random data, and features users register."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func

import features
from cdp.store.tables import PURCHASE_FACT_EVENTS
from features.definitions import BUILTIN_NAMES, resolve
from features.read import export, read_features
from features.reference import REFERENCE, reference_features
from features.schemas import Purchases
from tests.features_data import START, iso, profile_of, random_shop, store, track

CUTOFF = datetime(2025, 3, 1, 12, tzinfo=UTC)
ORDER = "Order Completed"


def at(days: float, **more: float) -> datetime:
    """``days`` (and hours / minutes / ...) before CUTOFF when negative, after it when positive."""
    return CUTOFF + timedelta(days=days, **more)


def order(user: str, when: datetime, revenue: float | str | None, *lines: tuple[str | None, float, int | None]) -> dict:
    products = [{"category": c, "price": p, **({"quantity": q} if q is not None else {})} for c, p, q in lines]
    for line in products:
        if line["category"] is None:
            del line["category"]
    properties = {"products": products} if revenue is None else {"revenue": revenue, "products": products}
    return track(user, ORDER, when, **properties)


def identify(user: str, when: datetime, **traits: object) -> dict:
    return {"type": "identify", "userId": user, "timestamp": iso(when), "traits": traits}


def page(user: str, when: datetime) -> dict:
    return {"type": "page", "userId": user, "name": "Home", "timestamp": iso(when)}


def on_time(*messages: dict) -> list[tuple[dict, datetime]]:
    """Each message received a second after it happened."""
    return [(m, datetime.fromisoformat(m["timestamp"]) + timedelta(seconds=1)) for m in messages]


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_index_equal(actual.index, expected.index, exact=False)
    assert list(actual.columns) == list(expected.columns)
    for column in actual.columns:
        a, b = actual[column], expected[column]
        if a.dtype == object or b.dtype == object:
            assert a.tolist() == b.tolist(), column
        else:
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=1e-9, atol=1e-6, err_msg=column)


def test_planted_future_and_late_received_facts_never_appear(engine) -> None:  # type: ignore[no-untyped-def]
    past = [order("ann", at(-10), 40.0, ("Books", 20.0, 2)), identify("ann", at(-20), plan="free"), page("ann", at(-3))]
    planted = [
        # Happened after the cutoff.
        (order("ann", at(0, microseconds=1), 1000.0, ("Planted", 1000.0, 1)), at(0, seconds=2)),
        (identify("ann", at(1), plan="future"), at(1, seconds=1)),
        # Happened before the cutoff but only received after it (an offline phone, a backfill).
        (order("ann", at(-2), 500.0, ("Planted", 500.0, 1)), at(0, microseconds=1)),
        (identify("ann", at(-1), plan="late"), at(2)),
        (page("ann", at(-1)), at(3)),
    ]
    store(engine, [*on_time(*past), *planted])
    chosen = resolve("default", [features.trait_feature("plan")])
    frame = read_features(engine, as_of=CUTOFF, features=chosen)
    ann = frame.loc[profile_of(engine, "ann")]
    assert ann["frequency"] == 1 and ann["monetary"] == 40.0 and ann["purchases_7d"] == 0
    assert ann["events_7d"] == 1 and ann["page_7d"] == 1 and ann["identify_30d"] == 1 and ann["events_90d"] == 3
    assert ann["days_since_last_event"] == pytest.approx(3) and ann["recency_days"] == pytest.approx(10)
    assert ann["trait__plan"] == "free"
    assert ann["sessions_7d"] == 1 and ann["sessions_90d"] == 3
    assert [c for c in frame.columns if c.startswith("category_share")] == ["category_share__books"]
    # Once received, the late facts count as of their reception, and the future ones once they happened.
    later = read_features(engine, as_of=at(3), features=chosen).loc[profile_of(engine, "ann")]
    assert later["frequency"] == 3 and later["monetary"] == 1540.0 and later["trait__plan"] == "future"
    assert later["category_share__planted"] == pytest.approx(2 / 4)


def test_hand_computed_values(engine) -> None:  # type: ignore[no-untyped-def]
    ann = [
        order("ann", datetime(2025, 1, 1, 10, tzinfo=UTC), 10.0, ("Books", 10.0, 1)),
        # Same day, no revenue property: worth its lines, 2 x 1.5 + 4 (quantity 1 when absent).
        order("ann", datetime(2025, 1, 1, 15, tzinfo=UTC), None, ("Home & Kitchen", 1.5, 2), ("Home-Kitchen", 4.0, None)),
        # A revenue that is not a number is ignored in favour of the lines.
        order("ann", datetime(2025, 1, 11, 9, tzinfo=UTC), "20", (None, 20.0, 1)),
        order("ann", datetime(2025, 2, 10, 23, 59, 59, 999_999, tzinfo=UTC), 30.0),
        # Sessions: 10 and 35 minutes apart, a 30-minute timeout.
        page("ann", at(-1)), page("ann", at(-1, minutes=10)), page("ann", at(-1, minutes=45)),
    ]
    bob = [order("bob", at(-5), 7.0), page("bob", at(-100))]
    store(engine, on_time(*ann, *bob, page("cy", at(-40))))
    frame = read_features(engine, as_of=CUTOFF, features=resolve("default"))

    a = frame.loc[profile_of(engine, "ann")]
    # BTYD as lifetimes' summary_data_from_transaction_data(freq="D"): purchase days Jan 1, Jan 11, Feb 10.
    assert (a["btyd_frequency"], a["btyd_recency"], a["btyd_T"]) == (2, 40, 59)
    assert a["btyd_monetary_value"] == pytest.approx((20.0 + 30.0) / 2)
    assert a["monetary"] == pytest.approx(10 + 7 + 20 + 30) and a["frequency"] == 4
    assert a["avg_order_value"] == pytest.approx(67 / 4)
    gaps = np.array([5 / 24, 10 - 1 / 24 * 6, 30 + (14 + 59 / 60 + 59.999999 / 3600) / 24])
    assert a["inter_purchase_days_mean"] == pytest.approx(gaps.mean())
    assert a["inter_purchase_days_std"] == pytest.approx(gaps.std(ddof=1))
    assert a["sessions_7d"] == 2 and a["events_7d"] == 3 and a["page_7d"] == 3 and a["track_90d"] == 4
    # Shares of purchased quantity; the line without a category counts in the total only.
    assert a["category_share__books"] == pytest.approx(1 / 5)
    assert a["category_share__home_kitchen"] == pytest.approx(3 / 5)
    assert a["tenure_days"] == pytest.approx((CUTOFF - datetime(2025, 1, 1, 10, tzinfo=UTC)) / timedelta(days=1))

    b = frame.loc[profile_of(engine, "bob")]
    assert (b["btyd_frequency"], b["btyd_recency"], b["btyd_T"], b["btyd_monetary_value"]) == (0, 0, 5, 0.0)
    assert np.isnan(b["inter_purchase_days_mean"]) and np.isnan(b["inter_purchase_days_std"])
    assert b["revenue_30d"] == 7.0 and b["revenue_trend_90d"] == 7.0 and b["sessions_90d"] == 1
    assert b["category_share__books"] == 0.0 or np.isnan(b["category_share__books"])

    c = frame.loc[profile_of(engine, "cy")]
    assert c["frequency"] == 0 and c["monetary"] == 0.0 and np.isnan(c["recency_days"]) and np.isnan(c["btyd_T"])
    assert c["sessions_30d"] == 0 and c["sessions_90d"] == 1 and np.isnan(c["category_share__books"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sql_equals_the_pandas_reference_on_random_data(engine, seed: int) -> None:  # type: ignore[no-untyped-def]
    store(engine, random_shop(seed, users=40, start=START, days=200))
    chosen = resolve("default", [features.trait_feature("plan"), features.trait_feature("age")])
    exported = export(engine)
    for cutoff in (START + timedelta(days=d, hours=seed) for d in (20, 110, 200)):
        expected = reference_features(exported, as_of=cutoff, features=chosen)
        assert_same(read_features(engine, as_of=cutoff, features=chosen), expected)


def test_purchases_named_outside_the_mirror_are_read_from_the_events(engine) -> None:  # type: ignore[no-untyped-def]
    """``purchase_facts`` mirrors Order Completed only; another name takes the events' path, same answers."""
    store(engine, random_shop(4, users=40, start=START, days=200))
    bought = Purchases(events=("Order Completed", "Signed Up"))
    assert not set(bought.events) <= set(PURCHASE_FACT_EVENTS)
    chosen = resolve("default")
    exported = export(engine, purchases=bought)
    cutoff = START + timedelta(days=150)
    frame = read_features(engine, as_of=cutoff, features=chosen, purchases=bought)
    assert_same(frame, reference_features(exported, as_of=cutoff, features=chosen, purchases=bought))
    orders_only = read_features(engine, as_of=cutoff, features=chosen)
    assert (frame["btyd_frequency"] > orders_only["btyd_frequency"].reindex(frame.index).fillna(-1)).any()


def test_an_export_read_in_chunks_equals_one_read(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's rows come in one COPY, not in chunks")
    store(engine, random_shop(4, users=15, start=START, days=60))
    whole = export(engine)
    monkeypatch.setattr(features.read, "_FETCH_ROWS", 7)
    chunked = export(engine)
    assert isinstance(chunked.events["event"].dtype, pd.CategoricalDtype)  # not strings again after the concat
    pd.testing.assert_frame_equal(chunked.events, whole.events)
    pd.testing.assert_frame_equal(chunked.lines, whole.lines)


def test_the_reference_covers_every_builtin_feature() -> None:
    computed = {f.name for f in resolve("default") if f.family not in ("categories", "traits")}
    assert computed <= set(REFERENCE) and set(BUILTIN_NAMES) - {"category_share"} <= set(REFERENCE)


@pytest.fixture
def user_features() -> Iterator[None]:
    @features.sql_feature("signups_30d", window_days=30, dtype="int64", missing=0)
    def signups(e):  # type: ignore[no-untyped-def]
        """Signed Up calls in the last 30 days"""
        return e.count(e.named("Signed Up"))

    @features.pandas_feature("distinct_products_viewed", events=("Product Viewed",), properties=("product_id",),
                             missing=0.0)
    def distinct_products(events: pd.DataFrame, as_of: datetime) -> pd.Series:
        """distinct products viewed"""
        return events.groupby("profile_id")["product_id"].nunique().astype("float64")

    features.register_feature("largest_order", sql=lambda p: func.max(p.c.revenue), family="purchases")
    yield
    for name in ("signups_30d", "distinct_products_viewed", "largest_order"):
        features.unregister_feature(name)


def test_user_registered_features_appear_in_load(settings, engine, user_features) -> None:  # type: ignore[no-untyped-def]
    store(engine, on_time(
        track("ann", "Signed Up", at(-40), trial=True), track("ann", "Signed Up", at(-2), trial=False),
        track("ann", "Product Viewed", at(-3), product_id="p1"), track("ann", "Product Viewed", at(-2), product_id="p1"),
        track("ann", "Product Viewed", at(-1), product_id="p2"), track("bob", "Product Added", at(-1), product_id="p3"),
        order("bob", at(-9), 12.0), order("bob", at(-8), 30.0),
    ))
    frame = features.load(settings, as_of=CUTOFF)  # Settings: the notebook's way in
    assert {"signups_30d", "distinct_products_viewed", "tenure_days"} <= set(frame.columns)
    ann, bob = profile_of(engine, "ann"), profile_of(engine, "bob")
    assert frame.loc[ann, ["signups_30d", "distinct_products_viewed"]].tolist() == [1, 2.0]
    assert frame.loc[bob, ["signups_30d", "distinct_products_viewed"]].tolist() == [0, 0.0]
    assert frame["signups_30d"].dtype == "int64"
    assert frame.loc[bob, "largest_order"] == 30.0 and np.isnan(frame.loc[ann, "largest_order"])
    # The pandas function is its own reference; a SQL-only feature has none.
    chosen = resolve(["distinct_products_viewed"])
    reference = reference_features(export(engine, properties=["product_id"]), as_of=CUTOFF, features=chosen)
    assert_same(features.load(engine, as_of=CUTOFF, feature_set=chosen), reference)
    exported = export(engine, properties=["trial", "plan", "product_id"]).events.sort_values("id").set_index("event")
    assert exported.loc["Signed Up", "trial"].tolist() == [True, False]  # JSON booleans stay booleans
    assert exported.loc["Product Viewed", "product_id"].tolist() == ["p1", "p1", "p2"]
    with pytest.raises(NotImplementedError, match="SQL only"):
        reference_features(export(engine), as_of=CUTOFF, features=resolve(["signups_30d"]))


def test_registry_rules() -> None:
    with pytest.raises(ValueError, match="built-in"):
        features.register_feature("frequency", sql=lambda e: e.count())
    with pytest.raises(ValueError, match="identifier"):
        features.register_feature("two words", sql=lambda e: e.count())
    with pytest.raises(ValueError, match="give the feature a SQL expression"):
        features.register_feature("nothing")
    with pytest.raises(KeyError, match="no feature set"):
        resolve("nope")
    assert [f.name for f in resolve("btyd")] == ["btyd_frequency", "btyd_recency", "btyd_T", "btyd_monetary_value"]
    first = features.register_feature("again", sql=lambda e: e.count(), feature_sets=())
    second = features.register_feature("again", sql=lambda e: e.count(e.type == "page"), feature_sets=())
    assert features.get_feature("again") is second is not first  # a notebook cell run twice
    features.unregister_feature("again")


def test_named_sets_and_empty_store(engine) -> None:  # type: ignore[no-untyped-def]
    empty = features.load(engine, as_of=CUTOFF, feature_set="rfm")
    assert empty.empty and list(empty.columns) == ["recency_days", "frequency", "monetary", "tenure_days"]
    store(engine, on_time(order("ann", at(-1), 5.0)))
    frame = features.load(engine, as_of=CUTOFF, feature_set="rfm", traits=["plan"])
    assert list(frame.columns) == ["recency_days", "frequency", "monetary", "tenure_days", "trait__plan"]
    assert frame.index.name == "profile_id" and frame["trait__plan"].tolist() == [None]
    with pytest.raises(ValueError, match="timezone-aware"):
        features.load(engine, as_of=datetime(2025, 1, 1), feature_set="rfm")
