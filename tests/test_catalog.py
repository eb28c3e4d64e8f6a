"""The imported catalog over what events say, and one profile's recent items (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine

from cdp.catalog.service import import_catalog
from features.interactions import read_catalog, read_imported_catalog, recent_items, with_imported
from tests.features_data import profile_of, store, track
from tests.recs_data import TRAINED_AS_OF, describe


def test_imported_values_win_and_flag_availability(engine: Engine) -> None:
    t = TRAINED_AS_OF - timedelta(days=1)
    store(engine, [(track("ann", "Product Viewed", t, **describe("i01")), t),
                   (track("ann", "Product Viewed", t, **describe("i02")), t)])
    with engine.begin() as conn:
        import_catalog(conn, iter([
            {"item_id": "i01", "name": None, "category": "lamps", "brand": None, "price": 9.5, "available": False},
            {"item_id": "i77", "name": "New", "category": None, "brand": "oak", "price": None, "available": True},
        ]), now=datetime.now(UTC))
    imported = read_imported_catalog(engine)
    assert imported["available"].tolist() == [False, True]
    catalog = with_imported(read_catalog(engine, as_of=TRAINED_AS_OF), imported)
    assert list(catalog.index) == ["i01", "i02", "i77"]
    assert catalog.loc["i01"].tolist() == ["Item 1", "lamps", "zenith", 9.5, False]  # a missing value erases nothing
    assert catalog.loc["i02", "available"] and catalog.loc["i77", "brand"] == "oak" and np.isnan(catalog.loc["i77", "price"])


def test_recent_items_are_distinct_newest_first_and_point_in_time(engine: Engine) -> None:
    t = TRAINED_AS_OF - timedelta(hours=1)
    store(engine, [(track("bo", "Product Viewed", t + timedelta(minutes=m), **describe(item)), t + timedelta(minutes=m))
                   for m, item in enumerate(["i01", "i02", "i01", "i03", "i04"])])
    store(engine, [(track("cy", "Product Viewed", t, **describe("i09")), t)])
    bo = profile_of(engine, "bo")
    with engine.connect() as conn:
        assert recent_items(conn, profile_id=bo, as_of=TRAINED_AS_OF, limit=3) == ["i04", "i03", "i01"]
        assert recent_items(conn, profile_id=bo, as_of=t + timedelta(minutes=1), limit=5) == ["i02", "i01"]
