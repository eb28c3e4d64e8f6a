"""A small shop whose answer is known, as Segment e-commerce messages: the recommender checkerboard
(users of the left half browse items i00-i09, of the right half i10-i19), with a catalog."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.features_data import iso, track
from tests.recommend_data import AS_OF, HALF, checkerboard, half_of

LEFT, RIGHT = "left", "right"
TRAINED_AS_OF = AS_OF + timedelta(hours=1)


def user_id(profile: int) -> str:
    return f"u{profile - 1000:02d}"


def describe(item: str) -> dict[str, Any]:
    """Category by half; brand ``acme`` for the even items; price = the item's number."""
    number = int(item[1:])
    return {"product_id": item, "name": f"Item {number}", "category": LEFT if half_of(item) == 0 else RIGHT,
            "brand": "acme" if number % 2 == 0 else "zenith", "price": float(number)}


def shop_messages(seed: int = 0) -> list[tuple[dict[str, Any], datetime]]:
    """Every checkerboard interaction as a ``Product Viewed`` with its description, received on time."""
    rows = checkerboard(seed, seen_per_user=6)
    return [(track(user_id(r.profile_id), "Product Viewed", r.timestamp.to_pydatetime(), **describe(r.item_id)),
             r.timestamp.to_pydatetime() + timedelta(seconds=1)) for r in rows.itertuples()]


def anonymous_views(anonymous_id: str, items: list[str], start: datetime) -> list[dict[str, Any]]:
    """A visitor who never signed in viewing ``items`` a minute apart."""
    return [{"type": "track", "anonymousId": anonymous_id, "event": "Product Viewed",
             "timestamp": iso(start + timedelta(minutes=step)), "properties": describe(item)}
            for step, item in enumerate(items)]


LEFT_ITEMS = [f"i{n:02d}" for n in range(HALF)]
RIGHT_ITEMS = [f"i{n:02d}" for n in range(HALF, 2 * HALF)]
