"""Synthetic interactions for the recommender benchmark, generated straight into numpy arrays.

Shape of the data (what real shops' logs show, in a form that scales to 20M rows in seconds):

* **power-law popularity**: item ``r`` of the catalog (in a shuffled order) has appeal ``r ** -zipf``;
* **latent structure**: items belong to ``topics``; each user likes a few topics (Dirichlet weights);
* **sessions**: a user's interactions come in sessions of a few steps; a session keeps to one of
  the user's topics most of the time, so the latest items say more than old ones;
* **repeat consumption**: a share of the steps return to an item the user had before;
* **event kinds**: views, cart adds and orders with the weights of Segment's e-commerce spec.

The arrays are cached as ``.npz`` under the cache folder, keyed by the shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

END = datetime(2026, 6, 1, tzinfo=UTC)
_KINDS = np.array([1.0, 3.0, 5.0])  # Product Viewed, Product Added, Order Completed
_KIND_P = np.array([0.80, 0.15, 0.05])


@dataclass(frozen=True)
class RecsShape:
    """How big and how structured the generated log is."""

    users: int
    items: int
    interactions: int
    topics: int = 200
    topics_per_user: int = 3
    zipf: float = 0.9
    session_steps: float = 4.0  # mean steps per session
    on_topic: float = 0.8  # share of a session's steps in its topic (the rest: anywhere, by popularity)
    repeat: float = 0.1  # share of steps that return to an earlier item of the user
    days: int = 180
    seed: int = 3

    @property
    def label(self) -> str:
        return f"{self.users:,} users x {self.items:,} items x {self.interactions:,} interactions"

    @property
    def key(self) -> str:
        return "-".join(str(v) for v in asdict(self).values())


@dataclass(frozen=True)
class RecsLog:
    """Interactions sorted by user then time: int32 ``user``, ``item``; int64 ``timestamp`` (epoch
    microseconds); float32 ``weight``."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    weight: np.ndarray

    def frame(self) -> pd.DataFrame:
        """As :func:`features.interactions.read_interactions` rows (item ids categorical, ``p000001``)."""
        n_items = int(self.item.max()) + 1
        return pd.DataFrame({
            "profile_id": self.user.astype("int64") + 1,
            "item_id": pd.Categorical.from_codes(self.item, categories=item_ids(n_items)),
            "timestamp": pd.to_datetime(self.timestamp, unit="us", utc=True),
            "weight": self.weight.astype("float64"),
        })


def item_ids(n: int) -> np.ndarray:
    return np.array([f"p{i:06d}" for i in range(n)], dtype=object)


def cached_log(shape: RecsShape, cache: Path) -> RecsLog:
    """The log of ``shape``, generated once and kept in ``cache``."""
    path = cache / f"recs-{shape.key}.npz"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        log = generate(shape)
        np.savez(path.with_suffix(".tmp.npz"), **asdict(log))
        path.with_suffix(".tmp.npz").rename(path)
        return log
    with np.load(path) as stored:
        return RecsLog(**{name: stored[name] for name in stored.files})


def generate(shape: RecsShape) -> RecsLog:
    rng = np.random.default_rng(shape.seed)
    n_u, n_i, n = shape.users, shape.items, shape.interactions
    # Items: appeal by a shuffled Zipf rank, each in one topic.
    appeal = (1.0 + rng.permutation(n_i)) ** -shape.zipf
    topic_of = rng.integers(0, shape.topics, n_i)
    by_topic = np.argsort(topic_of, kind="stable")
    topic_start = np.searchsorted(topic_of[by_topic], np.arange(shape.topics + 1))
    topic_cdf = np.cumsum(appeal[by_topic])  # one running sum: a topic's range is [start, end)
    global_cdf = np.cumsum(appeal) / appeal.sum()

    # Users: activity is heavy-tailed (lognormal), scaled to the wanted total.
    activity = rng.lognormal(0.0, 1.0, n_u)
    counts = 1 + rng.multinomial(n - n_u, activity / activity.sum()).astype(np.int64)
    total = n
    user = np.repeat(np.arange(n_u, dtype=np.int32), counts)
    first = np.cumsum(counts) - counts
    position = np.arange(total) - np.repeat(first, counts)

    # Each user's topics and their weights.
    liked = rng.integers(0, shape.topics, (n_u, shape.topics_per_user))
    liking = rng.dirichlet(np.ones(shape.topics_per_user), n_u)

    # Sessions: a new one starts with probability 1 / session_steps (always at a user's first step).
    starts = (rng.random(total) < 1.0 / shape.session_steps) | (position == 0)
    session = np.cumsum(starts) - 1
    session_user = user[starts]
    pick = (rng.random(len(session_user))[:, None] > np.cumsum(liking[session_user], axis=1)).sum(axis=1)
    session_topic = liked[session_user, np.minimum(pick, shape.topics_per_user - 1)]
    topic = session_topic[session]

    # Items: in the session's topic by appeal, else anywhere by appeal.
    low, high = topic_start[topic], topic_start[topic + 1]
    base = np.where(low > 0, topic_cdf[np.maximum(low - 1, 0)], 0.0)
    target = base + rng.random(total) * (topic_cdf[high - 1] - base)
    in_topic = by_topic[np.minimum(np.searchsorted(topic_cdf, target, side="right"), high - 1)]
    anywhere = np.minimum(np.searchsorted(global_cdf, rng.random(total), side="right"), n_i - 1)
    item = np.where(rng.random(total) < shape.on_topic, in_topic, anywhere).astype(np.int32)
    again = (rng.random(total) < shape.repeat) & (position > 0)
    earlier = np.repeat(first, counts)[again] + np.floor(rng.random(again.sum()) * position[again]).astype(np.int64)
    item[again] = item[earlier]

    # Time: each user starts somewhere in the period; sessions days apart, steps minutes apart.
    span_us = shape.days * 86_400_000_000
    gaps = np.where(starts, rng.exponential(3 * 86_400e6, total), rng.exponential(120e6, total))
    gaps[position == 0] = 0.0
    offset = np.cumsum(gaps)
    offset -= np.repeat(offset[first], counts)
    user_start = rng.random(n_u) * span_us * 0.7
    moment = np.repeat(user_start, counts) + offset
    moment = np.minimum(moment, span_us - 1)  # the busiest users run to the end of the period
    end_us = int(END.timestamp() * 1e6)
    timestamp = (end_us - span_us + moment).astype(np.int64)
    weight = _KINDS[np.searchsorted(np.cumsum(_KIND_P), rng.random(total), side="right").clip(0, 2)]
    return RecsLog(user, item, timestamp, weight.astype(np.float32))
