"""Synthetic interactions with a known answer for the recommender tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

ITEMS = 20
HALF = ITEMS // 2
USERS_PER_GROUP = 30
SEEN_PER_USER = 5
AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
COLUMNS = ["profile_id", "item_id", "timestamp", "weight"]


def item_id(i: int) -> str:
    return f"i{i:02d}"


def checkerboard(seed: int = 0, *, seen_per_user: int = SEEN_PER_USER) -> pd.DataFrame:
    """Users 1000-1029 browse items 0-9, users 1030-1059 items 10-19 (implicit's checkerboard);
    each sees ``seen_per_user`` of their half, two minutes apart, the low-numbered items of a
    half more often (they are the popular ones)."""
    rng = np.random.default_rng(seed)
    rows = []
    appeal = 1.0 / np.arange(1, HALF + 1)
    for user in range(2 * USERS_PER_GROUP):
        half = user // USERS_PER_GROUP
        picked = rng.choice(HALF, seen_per_user, replace=False, p=appeal / appeal.sum()) + half * HALF
        start = AS_OF - timedelta(days=int(rng.integers(1, 30)))
        for step, item in enumerate(picked):
            rows.append((1000 + user, item_id(int(item)), start + timedelta(minutes=2 * step), 1.0))
    return pd.DataFrame(rows, columns=COLUMNS)


def half_of(item: str) -> int:
    return int(item[1:]) // HALF
