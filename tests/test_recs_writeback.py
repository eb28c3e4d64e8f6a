"""Write-back after training: the recommended_items trait and product-based affinity audiences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, select

from cdp.profiles.traits import trait_values
from cdp.store.tables import events
from models.recommend import EASERecommender, PopularityRecommender
from models.recommend.evaluate import Candidate
from models.recommend.train import train_recommender
from models.recommend.writeback import Affinity, affinity_audience, write_recommended_items
from tests.features_data import store
from tests.recs_data import LEFT_ITEMS, TRAINED_AS_OF, shop_messages

SMALL = [Candidate("popularity", PopularityRecommender, {"half_life_days": [None]}),
         Candidate("ease", EASERecommender, {"l2": [100.0]})]
LEFT_USERS = range(1000, 1030)


@pytest.fixture
def bundle(engine: Engine, settings):  # type: ignore[no-untyped-def]
    store(engine, shop_messages())
    return train_recommender(engine, settings, as_of=TRAINED_AS_OF, candidates=SMALL, track=False).bundle


def test_recommended_items_are_written_once_per_change(engine: Engine, bundle) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    assert write_recommended_items(engine, bundle, n=3, now=now) == 60
    assert write_recommended_items(engine, bundle, n=3, now=now) == 0
    with engine.connect() as conn:
        values = trait_values(conn, name="recommended_items")
    assert set(values) == set(bundle.model.user_ids_.tolist()) and len(values) == 60 and all(len(items) == 3 for items in values.values())
    assert write_recommended_items(engine, bundle, n=4, now=now + timedelta(seconds=1)) == 60


def test_affinity_audience_is_the_top_share_and_drops_former_members(engine: Engine, bundle) -> None:  # type: ignore[no-untyped-def]
    left = Affinity("category", "left", 50)
    assert left.trait == "affinity_category_left"
    members = affinity_audience(engine, bundle, left, now=datetime.now(UTC))
    # The model's profile ids follow the store's: the left half's users are the ones who viewed left items.
    with engine.connect() as conn:
        viewers = _left_viewers(conn)
    assert set(members) == viewers and len(members) == 30
    narrower = Affinity("category", "left", 10)
    assert narrower.trait == left.trait
    kept = affinity_audience(engine, bundle, narrower, now=datetime.now(UTC))
    with engine.connect() as conn:
        values = trait_values(conn, name=left.trait)
    assert len(kept) == 6 and set(kept) <= viewers and {p for p, v in values.items() if v is True} == set(kept)
    assert sum(v is False for v in values.values()) == 24  # former members say false; nobody else holds it
    item = affinity_audience(engine, bundle, Affinity("item", LEFT_ITEMS[0], 5), now=datetime.now(UTC), write=False)
    assert set(item) <= viewers


def test_affinity_specs_parse_and_refuse_nonsense() -> None:
    assert Affinity.parse_list("brand=Acme Co:10, category=shoes:5") == [
        Affinity("brand", "Acme Co", 10.0), Affinity("category", "shoes", 5.0)]
    assert Affinity("brand", "Acme Co", 10).trait == "affinity_brand_acme_co"
    with pytest.raises(ValueError, match="kind=value:top_pct"):
        Affinity.parse_list("brand acme")
    with pytest.raises(ValueError, match="one of item, category, brand"):
        Affinity("colour", "red", 5)


def _left_viewers(conn: Connection) -> set[int]:
    rows = conn.execute(select(events.c.profile_id, events.c.payload))
    return {r.profile_id for r in rows if r.payload.get("properties", {}).get("category") == "left"}
