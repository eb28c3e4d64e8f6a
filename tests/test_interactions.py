"""Interactions and the item catalog from the store, on SQLite and PostgreSQL: the Segment
e-commerce events, order lines, anonymous browsing attributed after sign-up, point-in-time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from features.interactions import InteractionEvent, InteractionSpec, decayed_weights, read_catalog, read_interactions
from tests.features_data import iso, profile_of, store, track

CUTOFF = datetime(2025, 3, 1, 12, tzinfo=UTC)


def at(days: float, **more: float) -> datetime:
    return CUTOFF + timedelta(days=days, **more)


def on_time(*messages: dict) -> list[tuple[dict, datetime]]:
    return [(m, datetime.fromisoformat(m["timestamp"]) + timedelta(seconds=1)) for m in messages]


def product(product_id: object, **more: object) -> dict:
    return {"product_id": product_id, **more}


def test_default_events_order_lines_and_weights(engine) -> None:  # type: ignore[no-untyped-def]
    anonymous = {"type": "track", "anonymousId": "device-1", "event": "Product Viewed", "timestamp": iso(at(-9)),
                 "properties": product("p4")}
    sign_up = {"type": "identify", "userId": "ann", "anonymousId": "device-1", "timestamp": iso(at(-8)), "traits": {}}
    store(engine, on_time(
        anonymous, sign_up,
        track("ann", "Product Viewed", at(-7), **product("p1", name="Lamp", category="Home", brand="Oak", price=20.0)),
        track("ann", "Product Clicked", at(-7, minutes=1), **product("p1")),
        track("ann", "Product Added", at(-6), **product("p2")),
        track("ann", "Product Reviewed", at(-5), **product("p1", rating=5)),
        track("ann", "Product Reviewed", at(-5, minutes=1), **product("p2", rating=1)),
        track("ann", "Product Reviewed", at(-5, minutes=2), **product("p2")),  # no rating: no evidence
        track("ann", "Order Completed", at(-4), revenue=30.0,
              products=[product("p2", price=10.0), product(42, price=20.0, quantity=2), {"sku": "no id"}]),
        track("ann", "Order Completed", at(-3), products={"product_id": "not an array"}),
        track("ann", "Products Searched", at(-2), query="lamp"),
        track("ann", "Product Viewed", at(-1), product_id=None),
    ))
    found = read_interactions(engine, as_of=CUTOFF)
    ann = profile_of(engine, "ann")
    assert (found["profile_id"] == ann).all()  # the anonymous view belongs to ann since she signed up
    rows = [(r.item_id, r.event, r.weight) for r in found.itertuples()]
    assert rows == [
        ("p4", "Product Viewed", 1.0),
        ("p1", "Product Viewed", 1.0),
        ("p1", "Product Clicked", 1.0),
        ("p2", "Product Added", 3.0),
        ("p1", "Product Reviewed", 2.0),  # rating 5 around the center 3
        ("p2", "Product Reviewed", -2.0),
        ("p2", "Order Completed", 5.0),
        ("42", "Order Completed", 5.0),  # a numeric id reads as its JSON text on both stores
    ]
    assert found["timestamp"].is_monotonic_increasing and str(found["timestamp"].dt.tz) == "UTC"


def test_future_and_late_received_interactions_never_appear(engine) -> None:  # type: ignore[no-untyped-def]
    store(engine, [
        *on_time(track("bob", "Product Viewed", at(-2), **product("seen"))),
        (track("bob", "Product Viewed", at(0, microseconds=1), **product("future")), at(0, seconds=1)),
        (track("bob", "Product Added", at(-1), **product("late")), at(0, microseconds=1)),
        (track("bob", "Order Completed", at(-1), products=[product("late-line")]), at(2)),
    ])
    assert read_interactions(engine, as_of=CUTOFF)["item_id"].tolist() == ["seen"]
    assert set(read_catalog(engine, as_of=CUTOFF).index) == {"seen"}
    later = read_interactions(engine, as_of=at(3))
    assert later["item_id"].tolist() == ["seen", "late", "late-line", "future"]


def test_catalog_describes_items_by_their_latest_event(engine) -> None:  # type: ignore[no-untyped-def]
    store(engine, on_time(
        track("cy", "Product Viewed", at(-9), **product("p1", name="Lamp", category="Home", brand="Oak", price=20.0)),
        track("cy", "Product Viewed", at(-5), **product("p1", name="Desk Lamp", price=18.5)),  # renamed, no brand
        track("cy", "Order Completed", at(-3), products=[product("p2", name="Mug", category="Kitchen", price=7)]),
        track("cy", "Product Viewed", at(-2), **product("p3", price="cheap")),  # not a number
    ))
    catalog = read_catalog(engine, as_of=CUTOFF)
    assert list(catalog.index) == ["p1", "p2", "p3"]
    assert catalog.loc["p1"].tolist() == ["Desk Lamp", "Home", "Oak", 18.5]
    assert catalog.loc["p2"].tolist() == ["Mug", "Kitchen", None, 7.0]
    assert catalog.loc["p3", "name"] is None and np.isnan(catalog.loc["p3", "price"])


def test_a_custom_spec_reads_other_events_and_keys(engine) -> None:  # type: ignore[no-untyped-def]
    store(engine, on_time(
        track("di", "Wishlist Product Added", at(-2), sku="S-1", product_id="ignored"),
        track("di", "Cart Viewed", at(-1), items=[{"sku": "S-2"}, {"sku": "S-3"}]),
        track("di", "Product Viewed", at(-1), sku="S-4"),
    ))
    spec = InteractionSpec(events=(InteractionEvent("Wishlist Product Added", 2.0),
                                   InteractionEvent("Cart Viewed", 0.5, products="items")), item_key="sku")
    found = read_interactions(engine, as_of=CUTOFF, spec=spec)
    assert list(zip(found["item_id"], found["weight"])) == [("S-1", 2.0), ("S-2", 0.5), ("S-3", 0.5)]


def test_decay_halves_weights_every_half_life() -> None:
    rows = pd.DataFrame({"timestamp": pd.to_datetime([at(0), at(-10), at(-20), at(1)], utc=True),
                         "weight": [1.0, 1.0, 4.0, 1.0]})
    assert decayed_weights(rows, as_of=CUTOFF, half_life_days=10).tolist() == [1.0, 0.5, 1.0, 1.0]
    assert decayed_weights(rows, as_of=CUTOFF, half_life_days=None).tolist() == [1.0, 1.0, 4.0, 1.0]


def test_spec_rules() -> None:
    with pytest.raises(ValueError, match="distinct"):
        InteractionSpec(events=(InteractionEvent("A", 1.0), InteractionEvent("A", 2.0)))
    with pytest.raises(ValueError, match="half_life_days"):
        InteractionSpec(half_life_days=0)
