"""Synthetic Segment-spec event stream of an online store, with the ground truth behind it.

The simulator plants the structure that churn, lifetime-value and recommendation models are
meant to recover, and records it per profile so that such models can be scored:

* **Catalog** -- ``items`` products in 12 categories and 40 brands (each brand sells in 1-3
  categories), log-normal prices per category and Zipf-like popularity.
* **Profiles** -- ``profiles`` rows of three kinds: registered *customers* (about 78 %),
  anonymous *visitors* who browse a little and never sign up (about 21 %) and *bots* (0.5 %,
  hundreds of page and product views, never an order).  A customer has a purchase rate λ
  (gamma), a per-session dropout probability p (beta), a spend level (gamma-gamma: the mean
  value of an order), a taste (a Dirichlet concentrated on 1-3 categories), a favourite brand,
  three "staple" products they re-buy, and 1-3 devices, each with its own ``anonymousId``.
  About 40 % of the customers signed up before ``start`` (tenure up to two years); the others
  arrive during the simulated period, at a slowly growing rate.
* **Sessions** -- a Poisson process per profile whose rate follows the time of day (US
  evenings), the day of the week (weekends are busier), the holiday season and a mild growth
  trend.  After each session a customer (or visitor, or bot) leaves for good with probability
  p: a BG/NBD-like dropout.  Long-tenured customers are, as in real data, the loyal survivors:
  their p is drawn from the beta posterior given the sessions they survived before ``start``.
* **Identity** -- a device's first sessions are anonymous.  A new customer signs up during
  one of their first sessions on their first device (an ``identify`` with traits); on any
  other device the customer logs in (another ``identify``) after 0-2 anonymous sessions.  From
  then on the device's messages carry both ``userId`` and ``anonymousId``.  Some customers
  upgrade their plan later (an ``identify`` with the new ``plan`` only).
* **Inside a session** -- a landing ``page`` (``screen`` in the apps), more pages, ``Product
  Viewed`` (item drawn from taste x popularity, the price nudged toward the spend level;
  brand loyalists keep to their brand; staples come back), ``Product Clicked`` before some
  views, ``Products Searched``, abandoned ``Product Added``, ``Product Reviewed`` for earlier
  purchases, and -- in a converting, logged-in session -- views and adds of the ordered items
  followed by a server-side ``Order Completed``.
* **Delivery noise** -- ``late_fraction`` of the messages are sent hours to days after they
  happened (an offline phone), ``duplicate_fraction`` are sent twice with the same
  ``messageId`` (an SDK retry).  ``receivedAt`` is not written: the receiving server sets it.

Events stop at ``end = start + days``; the same processes then run for another 365 days
without emitting anything, and what happens there (orders, revenue, items, dropout) goes into
the truth file.  Profiles are simulated in blocks of 5000 with numpy and streamed out, so
memory stays flat however many profiles are asked for.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["SimulationConfig", "SimulationSummary", "generate", "iter_events"]

FUTURE_DAYS = 365
_CHUNK_PROFILES = 5000  # profiles simulated together; results depend on it, so it is fixed
_EMIT_SLICE = 65536  # messages whose strings are formatted at once: bounds the Python objects alive
_DAY_MS = 86_400_000
_HOUR = 1.0 / 24.0
_MAX_SESSION_MS = 50 * 60_000  # kept under the 1 h minimum gap so sessions never overlap
_SITE = "https://shop.example.com"

_KIND_NAMES = ("customer", "visitor", "bot")
_CUSTOMER, _VISITOR, _BOT = 0, 1, 2
_KIND_P = (0.785, 0.21, 0.005)
_PRESTART_P = 0.3
_PRESTART_MAX_DAYS = 730.0

# (name, median price, log-sd of price, share of catalog and demand, product nouns)
_CATEGORIES = (
    ("Electronics", 79.0, 0.9, 1.2, ("Headphones", "Speaker", "Charger", "Smartwatch", "Keyboard")),
    ("Home & Kitchen", 32.0, 0.8, 1.3, ("Blender", "Knife Set", "Frying Pan", "Desk Lamp", "Towel Set")),
    ("Beauty", 17.0, 0.6, 1.1, ("Serum", "Lipstick", "Moisturizer", "Shampoo", "Perfume")),
    ("Clothing", 29.0, 0.6, 1.4, ("T-Shirt", "Jeans", "Rain Jacket", "Sneakers", "Hoodie")),
    ("Sports & Outdoors", 39.0, 0.9, 0.8, ("Yoga Mat", "Tent", "Water Bottle", "Dumbbells", "Backpack")),
    ("Toys & Games", 24.0, 0.7, 0.7, ("Puzzle", "Board Game", "Building Set", "Plush Bear", "RC Car")),
    ("Books", 14.0, 0.4, 0.9, ("Novel", "Cookbook", "Biography", "Notebook", "Comic")),
    ("Grocery", 7.0, 0.6, 1.0, ("Coffee Beans", "Green Tea", "Olive Oil", "Granola", "Dark Chocolate")),
    ("Pet Supplies", 21.0, 0.8, 0.7, ("Dog Food", "Cat Litter", "Leash", "Pet Bed", "Chew Toy")),
    ("Garden", 26.0, 0.8, 0.5, ("Planter", "Garden Hose", "Seed Kit", "Pruner", "String Lights")),
    ("Health", 15.0, 0.6, 0.8, ("Vitamins", "Protein Powder", "Thermometer", "First Aid Kit", "Massager")),
    ("Office", 18.0, 0.7, 0.6, ("Desk Organizer", "Gel Pens", "Monitor Stand", "Seat Cushion", "Planner")),
)
_N_CAT = len(_CATEGORIES)
_BRAND_STEMS = ("Nord", "Blue", "Sun", "Oak", "Iron", "Luma", "Terra", "Vela", "Pico", "Zen")
_BRAND_ENDINGS = ("ware", "ly", "craft", "works")
_ADJECTIVES = ("Classic", "Pro", "Eco", "Compact", "Deluxe", "Everyday", "Ultra", "Mini", "Premium", "Essential")

_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "Lucas",
    "Mia", "Mateo", "Amelia", "Benjamin", "Harper", "Ethan", "Evelyn", "Henry", "Aria", "Daniel",
    "Chloe", "Jack", "Layla", "Samuel", "Nora", "Wei", "Priya", "Omar", "Yuki", "Fatima",
)
_LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Nguyen", "Patel", "Kim", "Chen", "Khan",
)
_CITIES = (
    "New York", "Los Angeles", "Chicago", "Houston", "Phoenix", "Philadelphia", "San Antonio", "San Diego",
    "Dallas", "Austin", "Jacksonville", "Columbus", "Charlotte", "Indianapolis", "Seattle", "Denver",
    "Boston", "Nashville", "Portland", "Atlanta", "Miami", "Minneapolis", "Tampa", "Raleigh",
)
_PLANS = ("free", "plus", "premium")

# Platforms of a device: where its messages come from and what they look like.
_DESKTOP, _MOBILE_WEB, _IOS, _ANDROID = 0, 1, 2, 3
_PLATFORM_P = (0.5, 0.25, 0.15, 0.10)
_USER_AGENTS = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    ),
)
_BOT_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"
_APP_DEVICES = (
    (("Apple", "iPhone15,2"), ("Apple", "iPhone16,1"), ("Apple", "iPhone14,7")),
    (("samsung", "SM-S918B"), ("Google", "Pixel 8"), ("motorola", "moto g 5G")),
)
_LIBRARIES = {
    _DESKTOP: ("analytics.js", "next-1.76.0"),
    _MOBILE_WEB: ("analytics.js", "next-1.76.0"),
    _IOS: ("analytics-ios", "4.1.8"),
    _ANDROID: ("analytics-android", "4.11.3"),
}
_SERVER_LIBRARY = ("analytics-python", "2.4.0")
_OS = {_IOS: ("iOS", "18.1"), _ANDROID: ("Android", "14")}
_APP = ("Example Shop", "3.12.0", "3120")

# Event codes of the simulation tables.
_PAGE, _IDENTIFY, _SEARCH, _VIEW, _CLICK, _ADD, _ORDER, _REVIEW = range(8)
_TRACK_NAMES = {
    _SEARCH: "Products Searched",
    _VIEW: "Product Viewed",
    _CLICK: "Product Clicked",
    _ADD: "Product Added",
    _ORDER: "Order Completed",
    _REVIEW: "Product Reviewed",
}
_SIGNUP, _LOGIN, _UPGRADE = 0, 1, 2
# Generic pages; pages from len(_GENERIC_PAGES) on are the category pages, in category order.
_GENERIC_PAGES = (("Home", "/"), ("Deals", "/deals"), ("Cart", "/cart"), ("Account", "/account"))
_PAGE_TYPE_P = (0.3, 0.1, 0.1, 0.05, 0.45)  # the generic pages, then "some category page"

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_HEX_POS = np.r_[0:8, 9:13, 14:18, 19:23, 24:36]


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate.

    Parameters
    ----------
    profiles : int
        Number of profiles (customers, anonymous visitors and bots), one truth row each.
    days : int
        Length of the period whose events are written, starting at ``start``.
    seed : int
        Seed of every random draw; the same config gives byte-identical output.
    start : datetime
        First instant simulated; must be timezone-aware.
    items : int
        Catalog size, at least the 12 categories.
    late_fraction : float
        Share of messages sent hours to days after they happened.
    duplicate_fraction : float
        Share of messages sent a second time with the same ``messageId``.
    """

    profiles: int = 2000
    days: int = 180
    seed: int = 7
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    items: int = 500
    late_fraction: float = 0.01
    duplicate_fraction: float = 0.005

    def __post_init__(self) -> None:
        if self.profiles < 1 or self.days < 1:
            raise ValueError("profiles and days must be positive")
        if self.items < _N_CAT:
            raise ValueError(f"items must be at least {_N_CAT}, one per category")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        for name in ("late_fraction", "duplicate_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")

    @property
    def end(self) -> datetime:
        """First instant after the simulated period."""
        return self.start.astimezone(UTC) + timedelta(days=self.days)


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`generate` wrote."""

    profiles: int
    events: int
    items: int
    events_path: Path
    truth_path: Path
    catalog_path: Path
    end: datetime


def iter_events(config: SimulationConfig) -> Iterator[dict]:
    """Yield the simulated Segment-spec messages, streaming.

    Each profile's messages come in time order.  The stream is time-ordered within blocks of
    5000 profiles, block after block, as an import gathered from several sources would be.
    Memory stays bounded by one block.

    Parameters
    ----------
    config : SimulationConfig
        What to simulate.

    Yields
    ------
    dict
        One Segment message (``identify``, ``track``, ``page`` or ``screen``) with ``type``,
        ``messageId``, ``timestamp``, ``sentAt``, ``context``, ``integrations`` and ``userId``
        and/or ``anonymousId``.  A duplicate (same ``messageId``, later ``sentAt``) directly
        follows its original.
    """
    catalog = _Catalog.build(config)
    clock = _Clock.build(config)
    for index, first in enumerate(range(0, config.profiles, _CHUNK_PROFILES)):
        n = min(_CHUNK_PROFILES, config.profiles - first)
        yield from _simulate_chunk(config, catalog, clock, index, first, n).messages()


def generate(out_dir: Path, config: SimulationConfig) -> SimulationSummary:
    """Write the events, the catalog and the ground truth of a simulation into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Directory to write into; created if missing.  Existing files are replaced.
    config : SimulationConfig
        What to simulate.

    Returns
    -------
    SimulationSummary
        Counts (``events`` includes the duplicates) and the paths written.

    Notes
    -----
    ``events.jsonl`` holds the messages of :func:`iter_events`, one JSON object per line.

    ``catalog.csv`` has one row per product: ``product_id`` ("p00042"), ``sku``, ``name``,
    ``category``, ``brand``, ``price`` (USD, 2 decimals) and ``popularity`` (the product's share
    of the popularity weight, which sums to 1 over the catalog).

    ``truth.parquet`` has one row per profile:

    =======================  ===================  ==============================================
    column                   type                 meaning
    =======================  ===================  ==============================================
    ``user_id``              string, nullable     "u000123"; null for visitors and bots
    ``kind``                 string               "customer", "visitor" or "bot"
    ``anonymous_ids``        string               the devices' ``anonymousId``, comma-joined
    ``first_seen_at``        timestamp[ms, UTC]   first visit; the sign-up for pre-start customers
    ``signup_at``            timestamp, nullable  the sign-up (before ``start`` for pre-start
                                                  customers); null if it never happens
    ``true_churn_at``        timestamp, nullable  start of the last session ever; null if the
                                                  profile is still active 365 days after ``end``
    ``is_active_at_end``     bool                 has a session at or after ``end``
    ``purchase_rate``        float64              orders per day while active (λ); 0 for visitors
                                                  and bots
    ``dropout_p``            float64              probability of leaving for good after a session
    ``spend_level``          float64              the order value in USD the customer aims at
                                                  (gamma-gamma mean); realised orders scatter
                                                  around it, a little lower in cheap categories;
                                                  0 for visitors and bots
    ``top_categories``       string               the 1-3 favourite categories, strongest first,
                                                  comma-joined; empty for bots
    ``future_orders_Nd``     int64                orders in [end, end + N days), N = 30, 90, 365
    ``future_revenue_Nd``    float64              their revenue in USD
    ``future_item_ids_90d``  string               product ids bought in [end, end + 90 days),
                                                  distinct, first bought first, comma-joined;
                                                  empty if none
    =======================  ===================  ==============================================

    Events end at ``end``; what the truth calls future is simulated but never emitted.  A
    pre-start customer with a very low rate may have no session at all in the window: such
    rows exist in the truth but not in the events.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    catalog = _Catalog.build(config)
    clock = _Clock.build(config)
    catalog_path = out_dir / "catalog.csv"
    catalog.write_csv(catalog_path)

    events_path = out_dir / "events.jsonl"
    truth_path = out_dir / "truth.parquet"
    events = 0
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with events_path.open("wb", buffering=1 << 20) as out, pq.ParquetWriter(truth_path, _TRUTH_SCHEMA) as truth:
        write = out.write
        for index, first in enumerate(range(0, config.profiles, _CHUNK_PROFILES)):
            n = min(_CHUNK_PROFILES, config.profiles - first)
            chunk = _simulate_chunk(config, catalog, clock, index, first, n)
            for message in chunk.messages():
                write(dumps(message, option=newline))
                events += 1
            truth.write_table(chunk.truth())
    return SimulationSummary(
        profiles=config.profiles,
        events=events,
        items=config.items,
        events_path=events_path,
        truth_path=truth_path,
        catalog_path=catalog_path,
        end=config.end,
    )


_TIMESTAMP = pa.timestamp("ms", tz="UTC")
_TRUTH_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("kind", pa.string()),
        ("anonymous_ids", pa.string()),
        ("first_seen_at", _TIMESTAMP),
        ("signup_at", _TIMESTAMP),
        ("true_churn_at", _TIMESTAMP),
        ("is_active_at_end", pa.bool_()),
        ("purchase_rate", pa.float64()),
        ("dropout_p", pa.float64()),
        ("spend_level", pa.float64()),
        ("top_categories", pa.string()),
        ("future_orders_30d", pa.int64()),
        ("future_orders_90d", pa.int64()),
        ("future_orders_365d", pa.int64()),
        ("future_revenue_30d", pa.float64()),
        ("future_revenue_90d", pa.float64()),
        ("future_revenue_365d", pa.float64()),
        ("future_item_ids_90d", pa.string()),
    ]
)


def _rng(config: SimulationConfig, *key: int) -> np.random.Generator:
    # Independent streams per purpose and per block: a block's draws do not depend on how
    # many profiles other blocks hold, and skipping ahead needs no replay.
    return np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=key))


def _uuids(raw: np.ndarray) -> list[str]:
    """Rows of 16 random bytes as version-4 UUID strings."""
    raw = raw.copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    nibbles = np.empty((len(raw), 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    text = np.full((len(raw), 36), ord("-"), dtype=np.uint8)
    text[:, _UUID_HEX_POS] = _HEX[nibbles]
    joined = text.tobytes().decode("ascii")
    return [joined[i : i + 36] for i in range(0, len(joined), 36)]


def _iso(ms: np.ndarray) -> list[str]:
    return np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms", timezone="UTC").tolist()


def _categorical(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One draw per row of a matrix of cumulative probabilities."""
    picks = (rng.random(len(cdf))[:, None] > cdf).sum(axis=1)
    return np.minimum(picks, cdf.shape[1] - 1)


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's run of equal, adjacent keys."""
    n = len(keys)
    new = np.ones(n, dtype=bool)
    new[1:] = keys[1:] != keys[:-1]
    return np.maximum.accumulate(np.where(new, np.arange(n), 0))


@dataclass(frozen=True)
class _GroupSampler:
    """Popularity-weighted draws of an item within a group (a category, a brand), vectorised.

    Items are laid out group after group with their cumulative weight, so a draw in group g is
    a uniform number between g's first and last cumulative weight, found by binary search.
    """

    order: np.ndarray
    cum: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def build(cls, groups: np.ndarray, weight: np.ndarray, n_groups: int) -> _GroupSampler:
        order = np.argsort(groups, kind="stable")
        cum = np.cumsum(weight[order])
        ends = np.searchsorted(groups[order], np.arange(n_groups), side="right")
        high = cum[np.maximum(ends - 1, 0)]
        starts = np.searchsorted(groups[order], np.arange(n_groups), side="left")
        low = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
        return cls(order=order, cum=cum, low=low, high=high)

    def draw(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        target = self.low[groups] + rng.random(len(groups)) * (self.high[groups] - self.low[groups])
        pos = np.searchsorted(self.cum, target, side="right")
        return self.order[np.minimum(pos, len(self.order) - 1)]


@dataclass(frozen=True)
class _Catalog:
    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    log_price: np.ndarray
    popularity: np.ndarray
    product_ids: list[str]
    names: list[str]
    fields: list[tuple[str, str, str, str, str, float]]  # product_id, sku, name, category, brand, price
    by_category: _GroupSampler
    by_brand: _GroupSampler

    @classmethod
    def build(cls, config: SimulationConfig) -> _Catalog:
        rng = _rng(config, 0)
        n = config.items
        brand_names = [stem + ending for ending in _BRAND_ENDINGS for stem in _BRAND_STEMS]
        n_brands = len(brand_names)
        # Brand b's first category is b mod 12 so that every category has brands.
        sells = np.zeros((n_brands, _N_CAT), dtype=bool)
        sells[np.arange(n_brands), np.arange(n_brands) % _N_CAT] = True
        extra = rng.choice(3, n_brands, p=(0.4, 0.4, 0.2))
        for b in range(n_brands):
            sells[b, rng.choice(_N_CAT, extra[b], replace=False)] = True

        share = np.array([c[3] for c in _CATEGORIES])
        category = np.concatenate([np.arange(_N_CAT), rng.choice(_N_CAT, n - _N_CAT, p=share / share.sum())])
        brand = np.empty(n, dtype=np.int64)
        for c in range(_N_CAT):
            members = np.flatnonzero(category == c)
            brand[members] = rng.choice(np.flatnonzero(sells[:, c]), len(members))
        median = np.array([c[1] for c in _CATEGORIES])[category]
        sigma = np.array([c[2] for c in _CATEGORIES])[category]
        raw = np.exp(np.log(median) + sigma * rng.standard_normal(n))
        price = np.maximum(np.floor(raw), 1.0) + 0.99  # shop prices end in .99

        rank = rng.permutation(n)
        popularity = 1.0 / (rank + 1.0) ** 1.07
        popularity /= popularity.sum()

        adjective = rng.integers(0, len(_ADJECTIVES), n)
        noun = rng.integers(0, 5, n)
        names = [
            f"{brand_names[b]} {_ADJECTIVES[a]} {_CATEGORIES[c][4][k]}"
            for b, a, c, k in zip(brand.tolist(), adjective.tolist(), category.tolist(), noun.tolist())
        ]
        product_ids = [f"p{i:05d}" for i in range(n)]
        fields = [
            (pid, f"{brand_names[b][:3].upper()}-{i:05d}", name, _CATEGORIES[c][0], brand_names[b], cost)
            for i, (pid, name, b, c, cost) in enumerate(
                zip(product_ids, names, brand.tolist(), category.tolist(), price.tolist())
            )
        ]
        return cls(
            category=category,
            brand=brand,
            price=price,
            log_price=np.log(price),
            popularity=popularity,
            product_ids=product_ids,
            names=names,
            fields=fields,
            by_category=_GroupSampler.build(category, popularity, _N_CAT),
            by_brand=_GroupSampler.build(brand, popularity, n_brands),
        )

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["product_id", "sku", "name", "category", "brand", "price", "popularity"])
            for (pid, sku, name, category, brand, price), share in zip(self.fields, self.popularity.tolist()):
                writer.writerow([pid, sku, name, category, brand, f"{price:.2f}", f"{share:.8f}"])

    def product(self, item: int) -> dict[str, Any]:
        """The Segment product fields of an item (a fresh dict)."""
        pid, sku, name, category, brand, price = self.fields[item]
        return {"product_id": pid, "sku": sku, "name": name, "category": category, "brand": brand, "price": price}


@dataclass(frozen=True)
class _Clock:
    """Session intensity over time, as a warp between calendar days and "expected sessions".

    Sessions of a profile with rate ρ are a unit-rate Poisson process in warped time divided
    by ρ; mapping back through the inverse warp gives an inhomogeneous process whose rate
    follows the hourly, weekly and seasonal pattern.  Times are days since ``start``.
    """

    start_ms: int
    grid_days: np.ndarray
    grid_warp: np.ndarray

    @classmethod
    def build(cls, config: SimulationConfig) -> _Clock:
        start = config.start.astimezone(UTC)
        start_ms = int(start.timestamp() * 1000)
        hours = np.arange((config.days + FUTURE_DAYS) * 24)
        stamps = np.datetime64(start_ms, "ms") + hours * np.timedelta64(3_600_000, "ms")
        day = stamps.astype("datetime64[D]")
        weekday = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
        hour = stamps.astype("datetime64[h]").astype(np.int64) % 24
        day_of_year = (day - day.astype("datetime64[Y]")).astype(np.int64)

        weekly = np.array([0.92, 0.90, 0.92, 0.95, 1.05, 1.20, 1.15])
        # UTC hours of a US audience: evenings peak around 01:00 UTC, nights are quiet.
        hourly = np.array(
            [1.6, 1.7, 1.6, 1.3, 0.9, 0.6, 0.4, 0.3, 0.25, 0.25, 0.3, 0.4,
             0.6, 0.8, 1.0, 1.1, 1.2, 1.25, 1.2, 1.15, 1.2, 1.3, 1.45, 1.55]
        )
        holidays = np.where((day_of_year >= 327) & (day_of_year <= 358), 1.35, 1.0)
        january_lull = np.where(day_of_year < 20, 0.9, 1.0)
        growth = 1.0 + 0.08 * hours / (365.25 * 24)
        rate = (weekly / weekly.mean())[weekday] * (hourly / hourly.mean())[hour] * holidays * january_lull * growth
        return cls(
            start_ms=start_ms,
            grid_days=np.arange(len(hours) + 1) * _HOUR,
            grid_warp=np.concatenate([[0.0], np.cumsum(rate) * _HOUR]),
        )

    @property
    def horizon_warp(self) -> float:
        return float(self.grid_warp[-1])

    def warp(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.grid_days, self.grid_warp)

    def unwarp(self, s: np.ndarray) -> np.ndarray:
        return np.interp(s, self.grid_warp, self.grid_days)


@dataclass
class _Profiles:
    """The latent state of one block's profiles (index = position in the block)."""

    kind: np.ndarray
    prestart: np.ndarray
    arrival: np.ndarray  # days since start; the sign-up for pre-start customers (negative)
    purchase_rate: np.ndarray
    session_rate: np.ndarray
    conversion: np.ndarray
    dropout_p: np.ndarray
    spend: np.ndarray
    taste: np.ndarray
    taste_cdf: np.ndarray
    focus: np.ndarray
    fav_brand: np.ndarray
    loyalty: np.ndarray
    staples: np.ndarray
    plan: np.ndarray
    n_devices: np.ndarray
    device_cdf: np.ndarray
    platform: np.ndarray  # (n, 3)
    anon_sessions: np.ndarray  # (n, 3): anonymous sessions on the device before it logs in
    first_anon: np.ndarray  # new customers' anonymous sessions before signing up
    person: np.ndarray  # (n, 3): indexes of first name, last name and city

    @property
    def new_customer(self) -> np.ndarray:
        return (self.kind == _CUSTOMER) & ~self.prestart


def _draw_items(
    rng: np.random.Generator,
    catalog: _Catalog,
    pr: _Profiles,
    prof: np.ndarray,
    target_price: np.ndarray,
    *,
    candidates: int,
    staple_p: float,
) -> np.ndarray:
    """Items the profiles ``prof`` pick: taste x popularity, nudged toward ``target_price``.

    A draw first picks the favourite brand (with the profile's loyalty) or a category from the
    taste, then ``candidates`` popular items there, and keeps the one whose price is closest
    to the target: big spenders end up with dearer items of the same categories.
    """
    m = len(prof)
    brand_pick = rng.random(m) < pr.loyalty[prof]
    category = _categorical(rng, pr.taste_cdf[prof])
    pool = np.empty((m, candidates), dtype=np.int64)
    for k in range(candidates):
        pool[brand_pick, k] = catalog.by_brand.draw(rng, pr.fav_brand[prof[brand_pick]])
        pool[~brand_pick, k] = catalog.by_category.draw(rng, category[~brand_pick])
    miss = np.abs(catalog.log_price[pool] - np.log(target_price)[:, None])
    items = pool[np.arange(m), miss.argmin(axis=1)]
    if staple_p > 0:
        again = np.flatnonzero(rng.random(m) < staple_p)
        items[again] = pr.staples[prof[again], rng.integers(0, pr.staples.shape[1], len(again))]
    return items


def _draw_profiles(rng: np.random.Generator, config: SimulationConfig, catalog: _Catalog, n: int) -> _Profiles:
    kind = rng.choice(3, n, p=_KIND_P)
    customer = kind == _CUSTOMER
    prestart = customer & (rng.random(n) < _PRESTART_P)
    # Arrivals grow through the period: density ∝ 1 + g·x on [0, days], inverted in closed form.
    g = 0.6
    u = rng.random(n)
    arrival = config.days * (np.sqrt(1.0 + 2.0 * g * (1.0 + g / 2.0) * u) - 1.0) / g
    arrival = np.where(prestart, -rng.uniform(0.0, _PRESTART_MAX_DAYS, n), arrival)

    purchase_rate = np.clip(rng.gamma(0.6, 0.0375, n), 2e-4, 0.5)
    conversion = rng.beta(3.0, 9.0, n)
    session_rate = np.minimum(purchase_rate / conversion, 1.0)
    conversion = purchase_rate / session_rate
    # A pre-start customer survived ~ρ·tenure sessions: the beta posterior of their dropout.
    survived = np.where(prestart, session_rate * -arrival, 0.0)
    dropout_p = rng.beta(1.0, 8.0 + survived)
    spend = rng.gamma(2.0, 37.5, n)

    visitor, bot = kind == _VISITOR, kind == _BOT
    session_rate = np.select([visitor, bot], [0.4, 6.0], session_rate)
    dropout_p = np.select([visitor, bot], [0.5, 1.0 / 30.0], dropout_p)
    purchase_rate = np.where(customer, purchase_rate, 0.0)
    conversion = np.where(customer, conversion, 0.0)
    spend = np.where(customer, spend, 0.0)

    category_share = np.array([c[3] for c in _CATEGORIES])
    n_focus = rng.choice([1, 2, 3], n, p=(0.35, 0.45, 0.2))
    keys = np.log(category_share) + rng.gumbel(size=(n, _N_CAT))
    focus = (-keys).argsort(axis=1).argsort(axis=1) < n_focus[:, None]
    weight = rng.gamma(2.0, 1.0, (n, _N_CAT)) * focus
    taste = 0.88 * weight / weight.sum(axis=1, keepdims=True) + 0.12 * rng.dirichlet(np.full(_N_CAT, 0.5), n)
    taste_cdf = np.cumsum(taste, axis=1)
    fav_brand = catalog.brand[catalog.by_category.draw(rng, taste.argmax(axis=1))]
    loyalty = rng.beta(1.5, 4.0, n)

    # Higher spenders are likelier on paid plans.
    plan_score = spend * rng.lognormal(0.0, 0.4, n)
    plan = np.digitize(plan_score, [90.0, 160.0])

    n_devices = np.where(customer, 1 + (rng.random(n) > 0.55) + (rng.random(n) > 0.9), 1)
    device_weight = rng.gamma(1.0, 1.0, (n, 3)) * (np.arange(3) < n_devices[:, None])
    device_weight[:, 0] += 1.0  # the first device stays the main one
    device_cdf = np.cumsum(device_weight / device_weight.sum(axis=1, keepdims=True), axis=1)
    platform = rng.choice(4, (n, 3), p=_PLATFORM_P)
    platform[bot, 0] = _DESKTOP
    anon_sessions = rng.choice(3, (n, 3), p=(0.6, 0.3, 0.1))
    first_anon = rng.geometric(0.55, n) - 1
    never = np.iinfo(np.int64).max
    anon_sessions[~customer] = never
    new_customer = customer & ~prestart
    anon_sessions[new_customer, 0] = first_anon[new_customer]

    pr = _Profiles(
        kind=kind,
        prestart=prestart,
        arrival=arrival,
        purchase_rate=purchase_rate,
        session_rate=session_rate,
        conversion=conversion,
        dropout_p=dropout_p,
        spend=spend,
        taste=taste,
        taste_cdf=taste_cdf,
        focus=focus,
        fav_brand=fav_brand,
        loyalty=loyalty,
        staples=np.empty((n, 0), dtype=np.int64),
        plan=plan,
        n_devices=n_devices,
        device_cdf=device_cdf,
        platform=platform,
        anon_sessions=anon_sessions,
        first_anon=np.where(new_customer, first_anon, 0),
        person=np.stack(
            [rng.integers(0, len(names), n) for names in (_FIRST_NAMES, _LAST_NAMES, _CITIES)], axis=1
        ),
    )
    everyone = np.repeat(np.arange(n), 3)
    price_point = np.maximum(np.repeat(spend, 3), 20.0) / 1.5
    pr.staples = _draw_items(rng, catalog, pr, everyone, price_point, candidates=2, staple_p=0.0).reshape(n, 3)
    return pr


@dataclass
class _Sessions:
    """Every session of a block up to the truth horizon, sorted by profile then time."""

    prof: np.ndarray
    t: np.ndarray  # days since start
    device: np.ndarray
    anonymous: np.ndarray  # no identity at all in this session
    login: np.ndarray  # starts anonymous, identifies after the landing page
    converts: np.ndarray
    churned: np.ndarray  # per profile: left before the truth horizon
    last_t: np.ndarray  # per profile: time of the last session (nan if none)
    signup_t: np.ndarray  # per profile: sign-up time (nan if none)


def _draw_sessions(rng: np.random.Generator, clock: _Clock, pr: _Profiles) -> _Sessions:
    n = len(pr.kind)
    new_customer = pr.new_customer
    lifetime = rng.geometric(pr.dropout_p)  # sessions until dropout, counted from sign-up
    wanted = lifetime + pr.first_anon
    begin = np.maximum(pr.arrival, 0.0)
    begin_warp = clock.warp(begin)
    expected = pr.session_rate * (clock.horizon_warp - begin_warp)
    # Enough candidates to cover the horizon except with negligible probability.
    bound = np.ceil(expected + 8.0 * np.sqrt(expected) + 10.0).astype(np.int64)
    count = np.minimum(wanted, bound)

    prof = np.repeat(np.arange(n), count)
    first = np.cumsum(count) - count
    j = np.arange(len(prof)) - np.repeat(first, count)
    gap = rng.exponential(1.0, len(prof)) / pr.session_rate[prof]
    gap[(j == 0) & (pr.arrival[prof] >= 0)] = 0.0  # a newcomer's first session is their arrival
    total = np.cumsum(gap)
    warped = begin_warp[prof] + total - np.repeat(total[first] - gap[first], count)
    inside = warped < clock.horizon_warp
    t = np.maximum(clock.unwarp(warped), begin[prof])  # no round-off before the arrival
    churned = (count == wanted) & inside[first + count - 1]
    # A return within the hour continues the session rather than starting one.
    close = np.zeros(len(t), dtype=bool)
    close[1:] = (j[1:] > 0) & (np.diff(t) < _HOUR)
    keep = inside & ~close
    prof, t = prof[keep], t[keep]

    n_kept = np.bincount(prof, minlength=n)
    first = np.cumsum(n_kept) - n_kept
    j = np.arange(len(prof)) - np.repeat(first, n_kept)
    last_t = np.full(n, np.nan)
    has = n_kept > 0
    last_t[has] = t[first[has] + n_kept[has] - 1]

    device = _categorical(rng, pr.device_cdf[prof])
    device[(j <= pr.first_anon[prof]) & new_customer[prof]] = 0  # signs up on the first device
    key = prof * 3 + device
    order = np.argsort(key, kind="stable")
    on_device = np.empty(len(prof), dtype=np.int64)
    on_device[order] = np.arange(len(prof)) - _group_starts(key[order])
    before_login = pr.anon_sessions[prof, device]
    anonymous = on_device < before_login
    login = on_device == before_login
    converts = ~anonymous & (rng.random(len(prof)) < pr.conversion[prof])

    signup_t = np.where(pr.prestart, pr.arrival, np.nan)
    signing = login & (device == 0) & new_customer[prof]
    signup_t[prof[signing]] = t[signing]
    return _Sessions(
        prof=prof,
        t=t,
        device=device,
        anonymous=anonymous,
        login=login,
        converts=converts,
        churned=churned,
        last_t=last_t,
        signup_t=signup_t,
    )


@dataclass
class _Orders:
    """Every order of a block (past and future) and its lines, by session order."""

    session: np.ndarray
    prof: np.ndarray
    ms: np.ndarray  # event time; filled in once the session timelines are laid out
    revenue: np.ndarray
    line_start: np.ndarray
    line_item: np.ndarray
    line_qty: np.ndarray


def _draw_orders(rng: np.random.Generator, catalog: _Catalog, pr: _Profiles, ss: _Sessions) -> _Orders:
    session = np.flatnonzero(ss.converts)
    prof = ss.prof[session]
    n = len(session)
    lines = np.minimum(1 + rng.poisson(0.7, n), 6)
    # Gamma-gamma: an order's value scatters around the profile's spend level.
    value = rng.gamma(6.0, pr.spend[prof] / 6.0)
    line_order = np.repeat(np.arange(n), lines)
    target = (value / lines)[line_order]
    item = _draw_items(rng, catalog, pr, prof[line_order], target, candidates=4, staple_p=0.3)
    # Cheap items sometimes come by the handful; most lines are a single unit.
    qty = np.minimum(1 + rng.poisson(0.2 * np.maximum(target / catalog.price[item] - 1.0, 0.0)), 6)
    # Lines of the same item in one order are one line with the quantities added up.
    by = np.lexsort((item, line_order))
    line_order, item, qty = line_order[by], item[by], qty[by]
    new = np.ones(len(item), dtype=bool)
    new[1:] = (line_order[1:] != line_order[:-1]) | (item[1:] != item[:-1])
    heads = np.flatnonzero(new)
    qty = np.minimum(np.add.reduceat(qty, heads), 6) if len(heads) else qty
    line_order, item = line_order[heads], item[heads]
    revenue = np.round(np.bincount(line_order, weights=catalog.price[item] * qty, minlength=n), 2)
    line_start = np.searchsorted(line_order, np.arange(n + 1))
    return _Orders(
        session=session,
        prof=prof,
        ms=np.zeros(n, dtype=np.int64),
        revenue=revenue,
        line_start=line_start,
        line_item=item,
        line_qty=qty,
    )


@dataclass
class _Events:
    """The emitted messages of a block, in output order, as columns."""

    kind: np.ndarray
    prof: np.ndarray
    device: np.ndarray
    identified: np.ndarray
    item: np.ndarray
    aux: np.ndarray  # page variant, identify reason, search query, click position, order, rating
    session: np.ndarray
    ms: np.ndarray
    sent_ms: np.ndarray
    retry_sent_ms: np.ndarray  # when a duplicate is sent; -1 if there is none
    message_id: np.ndarray  # (n, 16) random bytes
    upgrade_session: np.ndarray  # per profile: the session of the plan upgrade, past the end if none


def _build_events(
    rng: np.random.Generator,
    config: SimulationConfig,
    clock: _Clock,
    catalog: _Catalog,
    pr: _Profiles,
    ss: _Sessions,
    orders: _Orders,
) -> _Events:
    past = np.flatnonzero(ss.t < config.days)
    kind_of = pr.kind[ss.prof[past]]
    human = kind_of != _BOT
    m = len(past)
    blocks: list[tuple[np.ndarray, ...]] = []

    def add(session: np.ndarray, phase: int, kind: int, item=-1, aux=-1, order=None, sub: int = 1) -> None:
        size = len(session)
        blocks.append(
            (
                session,
                np.full(size, phase),
                rng.random(size) if order is None else order,
                np.full(size, sub),
                np.full(size, kind),
                np.broadcast_to(item, size),
                np.broadcast_to(aux, size),
            )
        )

    def pages(session: np.ndarray) -> np.ndarray:
        page_type = rng.choice(len(_PAGE_TYPE_P), len(session), p=_PAGE_TYPE_P)
        category = _categorical(rng, pr.taste_cdf[ss.prof[session]])
        return np.where(page_type < len(_GENERIC_PAGES), page_type, len(_GENERIC_PAGES) + category)

    add(past, 0, _PAGE, aux=pages(past))
    logins = past[ss.login[past]]
    signing = ss.signup_t[ss.prof[logins]] == ss.t[logins]
    add(logins, 1, _IDENTIFY, aux=np.where(signing, _SIGNUP, _LOGIN))

    searching = past[human & (rng.random(m) < 0.3)]
    query = _categorical(rng, pr.taste_cdf[ss.prof[searching]]) * 5 + rng.integers(0, 5, len(searching))
    add(searching, 2, _SEARCH, aux=query)

    extra_pages = rng.poisson(np.where(human, np.where(kind_of == _VISITOR, 1.0, 1.5), 25.0))
    body = np.repeat(past, extra_pages)
    add(body, 3, _PAGE, aux=pages(body))

    views = np.repeat(past, rng.poisson(np.where(human, np.where(kind_of == _VISITOR, 1.5, 2.2), 10.0)))
    viewer = ss.prof[views]
    viewed = np.where(
        pr.kind[viewer] == _BOT,
        rng.integers(0, len(catalog.price), len(views)),
        _draw_items(rng, catalog, pr, viewer, np.maximum(pr.spend[viewer], 20.0) / 1.5, candidates=2, staple_p=0.15),
    )
    position = rng.random(len(views))
    add(views, 3, _VIEW, item=viewed, order=position)
    clicked = (rng.random(len(views)) < 0.25) & (pr.kind[viewer] != _BOT)
    add(views[clicked], 3, _CLICK, item=viewed[clicked], aux=rng.integers(1, 25, clicked.sum()),
        order=position[clicked], sub=0)
    abandoned = (rng.random(len(views)) < 0.06) & ~ss.converts[views] & (pr.kind[viewer] != _BOT)
    add(views[abandoned], 3, _ADD, item=viewed[abandoned], order=position[abandoned], sub=2)

    placed = np.flatnonzero(ss.t[orders.session] < config.days)
    line_counts = np.diff(orders.line_start)[placed]
    lines = np.repeat(orders.line_start[placed] - (np.cumsum(line_counts) - line_counts), line_counts)
    lines += np.arange(len(lines))
    line_session = np.repeat(orders.session[placed], line_counts)
    line_position = rng.random(len(lines))
    add(line_session, 3, _VIEW, item=orders.line_item[lines], order=line_position)
    add(line_session, 3, _ADD, item=orders.line_item[lines], order=line_position, sub=2)
    add(orders.session[placed], 4, _ORDER, aux=placed)

    # A review is of the latest earlier order's first item, from a logged-in session.
    order_here = np.full(len(ss.prof), -1)
    order_here[orders.session] = np.arange(len(orders.session))
    latest = np.maximum.accumulate(order_here)
    earlier = np.full(len(ss.prof), -1)
    earlier[1:] = latest[:-1]
    own = earlier >= 0
    own[own] = orders.prof[earlier[own]] == ss.prof[own]
    reviewing = past[own[past] & ~ss.anonymous[past] & (rng.random(m) < 0.07)]
    reviewed = orders.line_item[orders.line_start[earlier[reviewing]]]
    liking = pr.taste[ss.prof[reviewing], catalog.category[reviewed]]
    rating = np.clip(np.rint(rng.normal(3.3 + 2.5 * liking, 0.9)), 1, 5).astype(np.int64)
    add(reviewing, 3, _REVIEW, item=reviewed, aux=rating)

    # Some customers upgrade their plan once, in a logged-in session.
    upgrading = pr.kind == _CUSTOMER
    upgrading &= (pr.plan < len(_PLANS) - 1) & (rng.random(len(pr.kind)) < 0.15)
    n_sessions = np.bincount(ss.prof, minlength=len(pr.kind))
    first_session = np.cumsum(n_sessions) - n_sessions
    pick = first_session + np.floor(rng.random(len(pr.kind)) * n_sessions).astype(np.int64)
    upgrade = pick[upgrading & (n_sessions > 0)]
    upgrade = upgrade[(ss.t[upgrade] < config.days) & ~ss.anonymous[upgrade]]
    add(upgrade, 5, _IDENTIFY, aux=np.full(len(upgrade), _UPGRADE))
    upgrade_session = np.full(len(pr.kind), len(ss.prof))
    upgrade_session[ss.prof[upgrade]] = upgrade

    session, phase, position, sub, kind, item, aux = (np.concatenate(column) for column in zip(*blocks))
    by = np.lexsort((sub, position, phase, session))
    session, phase, kind, item, aux = session[by], phase[by], kind[by], item[by], aux[by]

    # People read a page for half a minute; bots fire requests every couple of seconds.
    bot = pr.kind[ss.prof[session]] == _BOT
    gap_ms = np.where(bot, 500.0 + rng.exponential(2000.0, len(bot)), 4000.0 + rng.exponential(30000.0, len(bot)))
    starts = _group_starts(session)
    heads = np.flatnonzero(starts == np.arange(len(session)))
    gap_ms[heads] = 0.0
    elapsed = np.cumsum(gap_ms)
    offset = elapsed - elapsed[starts]
    if len(heads):
        longest = np.maximum.reduceat(offset, heads)
        squeeze = np.minimum(1.0, _MAX_SESSION_MS / np.maximum(longest, 1.0))
        offset *= np.repeat(squeeze, np.diff(np.append(heads, len(offset))))
    ms = clock.start_ms + np.rint(ss.t[session] * _DAY_MS).astype(np.int64) + offset.astype(np.int64)

    is_order = kind == _ORDER
    orders.ms[aux[is_order]] = ms[is_order]
    future = np.flatnonzero(ss.t[orders.session] >= config.days)
    orders.ms[future] = (
        clock.start_ms
        + np.rint(ss.t[orders.session[future]] * _DAY_MS).astype(np.int64)
        + rng.exponential(300_000.0, len(future)).astype(np.int64)
    )

    # Sessions running over the end lose their last events; the orders among them count as future.
    by = np.flatnonzero(ms < clock.start_ms + config.days * _DAY_MS)
    by = by[np.argsort(ms[by], kind="stable")]
    n_out = len(by)
    prof = ss.prof[session[by]]
    ms = ms[by]
    late = rng.random(n_out) < config.late_fraction
    delay = np.where(
        late,
        3_600_000.0 + rng.exponential(1.5 * _DAY_MS, n_out),  # offline for hours or days
        30.0 + rng.exponential(1500.0, n_out),  # the SDK's next flush
    )
    sent_ms = ms + delay.astype(np.int64)
    duplicate = rng.random(n_out) < config.duplicate_fraction
    retry_sent_ms = np.where(duplicate, sent_ms + 1000 + rng.exponential(20_000.0, n_out).astype(np.int64), -1)
    phase = phase[by]
    identified = ~ss.anonymous[session[by]] & ~(ss.login[session[by]] & (phase == 0))
    return _Events(
        kind=kind[by],
        prof=prof,
        device=ss.device[session[by]],
        identified=identified,
        item=item[by],
        aux=aux[by],
        session=session[by],
        ms=ms,
        sent_ms=sent_ms,
        retry_sent_ms=retry_sent_ms,
        message_id=rng.integers(0, 256, (n_out, 16), dtype=np.uint8),
        upgrade_session=upgrade_session,
    )


@dataclass
class _Chunk:
    """One simulated block of profiles, ready to be written out."""

    config: SimulationConfig
    catalog: _Catalog
    pr: _Profiles
    ss: _Sessions
    orders: _Orders
    events: _Events
    user_ids: list[str | None]
    anonymous_ids: list[str]  # per device, index prof * 3 + device
    platforms: list[int]  # per device
    ips: list[str]  # per device
    agents: list[int]  # per device: user agent or app device model; -1 for a bot's browser
    order_ids: list[str]

    def messages(self) -> Iterator[dict[str, Any]]:
        """The block's messages as Segment dicts (fresh objects; safe to mutate)."""
        ev, cat, pr = self.events, self.catalog, self.pr
        queries = [noun.lower() for c in _CATEGORIES for noun in c[4]]
        signup_iso = _iso_or_none(self.config, self.ss.signup_t)
        context = self._context
        for lo in range(0, len(ev.ms), _EMIT_SLICE):
            hi = min(lo + _EMIT_SLICE, len(ev.ms))
            timestamps = _iso(ev.ms[lo:hi])
            sent = _iso(ev.sent_ms[lo:hi])
            message_ids = _uuids(ev.message_id[lo:hi])
            retried = np.flatnonzero(ev.retry_sent_ms[lo:hi] >= 0)
            retries = dict(zip(retried.tolist(), _iso(ev.retry_sent_ms[lo:hi][retried])))
            columns = zip(
                ev.kind[lo:hi].tolist(),
                ev.prof[lo:hi].tolist(),
                ev.device[lo:hi].tolist(),
                ev.identified[lo:hi].tolist(),
                ev.item[lo:hi].tolist(),
                ev.aux[lo:hi].tolist(),
                ev.session[lo:hi].tolist(),
            )
            for i, (kind, prof, device, identified, item, aux, session) in enumerate(columns):
                d = prof * 3 + device
                message: dict[str, Any]
                if kind == _PAGE:
                    name, path, title, category = _PAGES[aux]
                    if self.platforms[d] >= _IOS:
                        message = {"type": "screen", "name": name, "properties": {}}
                    else:
                        properties = {"path": path, "url": _SITE + path, "title": title}
                        message = {"type": "page", "name": name, "properties": properties}
                    if category is not None:
                        message["properties"]["category"] = category
                    message["context"] = context(d, path, title)
                elif kind == _VIEW or kind == _CLICK or kind == _ADD:
                    properties = cat.product(item)
                    properties["currency"] = "USD"
                    if kind == _CLICK:
                        properties["position"] = aux
                    elif kind == _ADD:
                        properties["quantity"] = 1
                    message = {"type": "track", "event": _TRACK_NAMES[kind], "properties": properties}
                    message["context"] = context(d, f"/p/{cat.product_ids[item]}", cat.names[item])
                elif kind == _ORDER:
                    message = {"type": "track", "event": "Order Completed", "properties": self._order(aux)}
                    message["context"] = {"library": {"name": _SERVER_LIBRARY[0], "version": _SERVER_LIBRARY[1]}}
                elif kind == _IDENTIFY:
                    if aux == _UPGRADE:
                        traits: dict[str, Any] = {"plan": _PLANS[pr.plan[prof] + 1]}
                        path = "/account"
                    else:
                        first_name, last_name, city = pr.person[prof].tolist()
                        traits = {
                            "email": f"{self.user_ids[prof]}@example.com",
                            "first_name": _FIRST_NAMES[first_name],
                            "last_name": _LAST_NAMES[last_name],
                            "plan": _PLANS[pr.plan[prof] + int(ev.upgrade_session[prof] < session)],
                            "city": _CITIES[city],
                            "created_at": signup_iso[prof],
                        }
                        path = "/signup" if aux == _SIGNUP else "/login"
                    message = {"type": "identify", "traits": traits}
                    message["context"] = context(d, path, "Account | Example Shop")
                elif kind == _SEARCH:
                    query = queries[aux]
                    message = {"type": "track", "event": "Products Searched", "properties": {"query": query}}
                    message["context"] = context(d, f"/search?q={query.replace(' ', '+')}", "Search | Example Shop")
                else:
                    properties = {"product_id": cat.product_ids[item], "rating": aux}
                    message = {"type": "track", "event": "Product Reviewed", "properties": properties}
                    message["context"] = context(d, f"/p/{cat.product_ids[item]}", cat.names[item])
                if identified:
                    message["userId"] = self.user_ids[prof]
                message["anonymousId"] = self.anonymous_ids[d]
                message["integrations"] = {}
                message["messageId"] = message_ids[i]
                message["timestamp"] = timestamps[i]
                message["sentAt"] = sent[i]
                yield message
                if i in retries:
                    retry = orjson.loads(orjson.dumps(message))
                    retry["sentAt"] = retries[i]
                    yield retry

    def _order(self, order: int) -> dict[str, Any]:
        orders = self.orders
        products = []
        for line in range(orders.line_start[order], orders.line_start[order + 1]):
            product = self.catalog.product(int(orders.line_item[line]))
            product["quantity"] = int(orders.line_qty[line])
            products.append(product)
        return {
            "order_id": self.order_ids[order],
            "revenue": float(orders.revenue[order]),
            "currency": "USD",
            "products": products,
        }

    def _context(self, d: int, path: str, title: str) -> dict[str, Any]:
        platform = self.platforms[d]
        name, version = _LIBRARIES[platform]
        context: dict[str, Any] = {"library": {"name": name, "version": version}, "ip": self.ips[d], "locale": "en-US"}
        if platform >= _IOS:
            manufacturer, model = _APP_DEVICES[platform - _IOS][self.agents[d]]
            context["app"] = {"name": _APP[0], "version": _APP[1], "build": _APP[2]}
            context["device"] = {
                "type": "ios" if platform == _IOS else "android",
                "manufacturer": manufacturer,
                "model": model,
            }
            context["os"] = {"name": _OS[platform][0], "version": _OS[platform][1]}
        else:
            context["page"] = {"path": path, "url": _SITE + path, "title": title}
            agent = self.agents[d]
            context["userAgent"] = _BOT_AGENT if agent < 0 else _USER_AGENTS[platform][agent]
            if platform == _MOBILE_WEB:
                context["device"] = {"type": "mobile"}
        return context

    def truth(self) -> pa.Table:
        """The block's truth rows; see :func:`generate` for the columns."""
        pr, ss, orders, config = self.pr, self.ss, self.orders, self.config
        n = len(pr.kind)
        end_ms = int(config.end.timestamp() * 1000)
        ranked = np.argsort(-pr.taste, axis=1, kind="stable").tolist()
        focus = pr.focus.tolist()
        columns: dict[str, Any] = {
            "user_id": self.user_ids,
            "kind": [_KIND_NAMES[k] for k in pr.kind.tolist()],
            "anonymous_ids": [
                ",".join(self.anonymous_ids[p * 3 : p * 3 + k]) for p, k in enumerate(pr.n_devices.tolist())
            ],
            "first_seen_at": _timestamps(config, pr.arrival),
            "signup_at": _timestamps(config, ss.signup_t),
            "true_churn_at": _timestamps(config, np.where(ss.churned, ss.last_t, np.nan)),
            "is_active_at_end": ~ss.churned | (ss.last_t >= config.days),
            "purchase_rate": pr.purchase_rate,
            "dropout_p": pr.dropout_p,
            "spend_level": np.round(pr.spend, 2),
            "top_categories": [
                "" if k == _BOT else ",".join(_CATEGORIES[c][0] for c in ranked[p] if focus[p][c])
                for p, k in enumerate(pr.kind.tolist())
            ],
        }
        for days in (30, 90, 365):
            window = (orders.ms >= end_ms) & (orders.ms < end_ms + days * _DAY_MS)
            columns[f"future_orders_{days}d"] = np.bincount(orders.prof[window], minlength=n)
            columns[f"future_revenue_{days}d"] = np.round(
                np.bincount(orders.prof[window], weights=orders.revenue[window], minlength=n), 2
            )
        columns["future_item_ids_90d"] = self._future_items(end_ms, n)
        return pa.table(columns, schema=_TRUTH_SCHEMA)

    def _future_items(self, end_ms: int, n: int) -> list[str]:
        orders = self.orders
        bought: list[dict[str, None]] = [{} for _ in range(n)]  # dicts keep first-purchase order
        window = np.flatnonzero((orders.ms >= end_ms) & (orders.ms < end_ms + 90 * _DAY_MS))
        window = window[np.argsort(orders.ms[window], kind="stable")]
        for o in window.tolist():
            basket = bought[orders.prof[o]]
            for item in orders.line_item[orders.line_start[o] : orders.line_start[o + 1]].tolist():
                basket.setdefault(self.catalog.product_ids[item], None)
        return [",".join(basket) for basket in bought]


# Page variants: (name, path, title, category); the generic pages, then one per category.
_PAGES = [(name, path, f"{name} | Example Shop", None) for name, path in _GENERIC_PAGES] + [
    ("Category", "/c/" + c[0].lower().replace(" & ", "-").replace(" ", "-"), f"{c[0]} | Example Shop", c[0])
    for c in _CATEGORIES
]


def _days_to_ms(config: SimulationConfig, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch milliseconds of day offsets from ``start``, and which offsets are missing (nan)."""
    start_ms = int(config.start.astimezone(UTC).timestamp() * 1000)
    missing = np.isnan(days)
    return start_ms + np.rint(np.where(missing, 0.0, days) * _DAY_MS).astype(np.int64), missing


def _timestamps(config: SimulationConfig, days: np.ndarray) -> pa.Array:
    ms, missing = _days_to_ms(config, days)
    return pa.array(ms, type=_TIMESTAMP, mask=missing)


def _iso_or_none(config: SimulationConfig, days: np.ndarray) -> list[str | None]:
    ms, missing = _days_to_ms(config, days)
    return [None if gone else text for gone, text in zip(missing.tolist(), _iso(ms))]


def _simulate_chunk(
    config: SimulationConfig, catalog: _Catalog, clock: _Clock, index: int, first: int, n: int
) -> _Chunk:
    rng = _rng(config, 1, index)
    pr = _draw_profiles(rng, config, catalog, n)
    ss = _draw_sessions(rng, clock, pr)
    orders = _draw_orders(rng, catalog, pr, ss)
    events = _build_events(rng, config, clock, catalog, pr, ss, orders)

    devices = n * 3
    platform = pr.platform.reshape(-1)
    subnet = np.where(rng.random(devices) < 0.5, "203.0.113.", "198.51.100.")
    agents = rng.integers(0, 6, devices) % np.where(platform == _MOBILE_WEB, 2, 3)
    agents[np.repeat(pr.kind == _BOT, 3)] = -1
    return _Chunk(
        config=config,
        catalog=catalog,
        pr=pr,
        ss=ss,
        orders=orders,
        events=events,
        user_ids=[f"u{first + p:06d}" if k == _CUSTOMER else None for p, k in enumerate(pr.kind.tolist())],
        anonymous_ids=_uuids(rng.integers(0, 256, (devices, 16), dtype=np.uint8)),
        platforms=platform.tolist(),
        ips=[f"{s}{h}" for s, h in zip(subnet.tolist(), rng.integers(1, 255, devices).tolist())],
        agents=agents.tolist(),
        order_ids=[f"{x:016x}" for x in rng.integers(0, 2**63, len(orders.session)).tolist()],
    )
