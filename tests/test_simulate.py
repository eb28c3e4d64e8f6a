"""The demo-data simulator: Segment shape, determinism, delivery noise and the planted signals."""

from __future__ import annotations

import inspect
import itertools
import re
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
import pytest

from cdp.demo.simulate import SimulationConfig, SimulationSummary, generate, iter_events

CONFIG = SimulationConfig(profiles=1000, days=120, seed=11)
START, END = CONFIG.start, CONFIG.end
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TRUTH_COLUMNS = [
    "user_id", "kind", "anonymous_ids", "first_seen_at", "signup_at", "true_churn_at", "is_active_at_end",
    "purchase_rate", "dropout_p", "spend_level", "top_categories",
    "future_orders_30d", "future_orders_90d", "future_orders_365d",
    "future_revenue_30d", "future_revenue_90d", "future_revenue_365d", "future_item_ids_90d",
]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationSummary, list[dict], pd.DataFrame]:
    summary = generate(tmp_path_factory.mktemp("sim"), CONFIG)
    messages = [orjson.loads(line) for line in summary.events_path.read_bytes().splitlines()]
    return summary, messages, pd.read_parquet(summary.truth_path)


@pytest.fixture(scope="module")
def messages(run) -> list[dict]:
    return run[1]


@pytest.fixture(scope="module")
def truth(run) -> pd.DataFrame:
    return run[2]


@pytest.fixture(scope="module")
def customers(messages: list[dict], truth: pd.DataFrame) -> pd.DataFrame:
    """Customers seen identified in the window, with what their events show."""
    rows = truth[truth.kind == "customer"].set_index("user_id")
    orders = [m for m in messages if m.get("event") == "Order Completed"]
    seen = {m["userId"] for m in messages if "userId" in m}
    rows = rows[rows.index.isin(seen)].copy()
    first_copy = {m["messageId"]: m for m in orders}.values()
    rows["orders"] = pd.Series([m["userId"] for m in first_copy]).value_counts().reindex(rows.index).fillna(0)
    revenue = pd.DataFrame([(m["userId"], m["properties"]["revenue"]) for m in first_copy], columns=["u", "r"])
    rows["revenue"] = revenue.groupby("u").r.sum().reindex(rows.index).fillna(0.0)
    return rows


def spearman(a: pd.Series, b: pd.Series) -> float:
    return a.rank().corr(b.rank())


def test_same_seed_gives_identical_files(run, tmp_path: Path) -> None:
    summary = run[0]
    again = generate(tmp_path, CONFIG)
    assert again.events == summary.events
    assert again.events_path.read_bytes() == summary.events_path.read_bytes()
    assert again.catalog_path.read_bytes() == summary.catalog_path.read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(again.truth_path), run[2])


def test_different_seed_gives_different_events(run, tmp_path: Path) -> None:
    other = generate(tmp_path, SimulationConfig(profiles=1000, days=120, seed=12))
    assert other.events_path.read_bytes() != run[0].events_path.read_bytes()


def test_summary_and_files(run, truth: pd.DataFrame) -> None:
    summary, messages, _ = run
    assert summary.profiles == CONFIG.profiles and summary.items == CONFIG.items and summary.end == END
    assert summary.events == len(messages) > 10_000
    catalog = pd.read_csv(summary.catalog_path)
    assert list(catalog.columns) == ["product_id", "sku", "name", "category", "brand", "price", "popularity"]
    assert len(catalog) == CONFIG.items and catalog.product_id.is_unique
    assert catalog.category.nunique() == 12 and catalog.brand.nunique() <= 40
    assert catalog.groupby("brand").category.nunique().between(1, 3).all()
    assert (catalog.price > 0).all() and catalog.popularity.sum() == pytest.approx(1.0, abs=1e-5)
    # Zipf-like: the top 10 % of the products get a large share of the popularity.
    assert catalog.popularity.nlargest(CONFIG.items // 10).sum() > 0.4
    assert list(truth.columns) == TRUTH_COLUMNS and len(truth) == CONFIG.profiles


def test_messages_follow_the_segment_spec(messages: list[dict]) -> None:
    for m in messages:
        assert m["type"] in ("identify", "track", "page", "screen", "group", "alias")
        assert m.get("userId") or m.get("anonymousId")
        assert UUID.match(m["messageId"]) and len(m["messageId"]) <= 100
        assert START <= when(m["timestamp"]) < END
        assert m["timestamp"].endswith("Z") and len(m["timestamp"]) == 24
        assert when(m["sentAt"]) > when(m["timestamp"])
        assert m["integrations"] == {}
        assert m["context"]["library"]["name"] and m["context"]["library"]["version"]
        if m["type"] == "track":
            assert isinstance(m["event"], str) and m["event"] and isinstance(m["properties"], dict)
        if m["type"] in ("page", "screen"):
            assert m["name"]
        if m["type"] == "identify":
            assert m["userId"] and m["traits"]
        if m["type"] == "page":
            assert m["properties"]["path"] == m["context"]["page"]["path"]
            assert m["properties"]["url"].startswith("https://")
        if m["type"] == "screen":
            assert m["context"]["device"]["type"] in ("ios", "android")
        if "ip" in m["context"]:
            assert m["context"]["ip"].startswith(("203.0.113.", "198.51.100."))


def test_orders_are_consistent(messages: list[dict]) -> None:
    orders = [m for m in messages if m.get("event") == "Order Completed"]
    assert len(orders) > 200
    for m in orders:
        p = m["properties"]
        assert m["userId"] and p["currency"] == "USD" and p["order_id"]
        assert p["products"] and {"product_id", "sku", "name", "category", "brand", "price", "quantity"} <= set(
            p["products"][0]
        )
        assert p["revenue"] == pytest.approx(sum(x["price"] * x["quantity"] for x in p["products"]), abs=0.01)
        assert len({x["product_id"] for x in p["products"]}) == len(p["products"])
    assert len({m["properties"]["order_id"] for m in orders}) == len({m["messageId"] for m in orders})


def test_each_profile_and_device_is_time_ordered(messages: list[dict]) -> None:
    last: dict[str, str] = {}
    for m in messages:
        for key in (m.get("userId"), m.get("anonymousId")):
            if key:
                assert m["timestamp"] >= last.get(key, ""), key
                last[key] = m["timestamp"]


def test_duplicates_are_retries_with_the_same_message_id(messages: list[dict]) -> None:
    copies: dict[str, list[dict]] = defaultdict(list)
    for m in messages:
        copies[m["messageId"]].append(m)
    retried = [c for c in copies.values() if len(c) > 1]
    assert all(len(c) == 2 for c in retried)
    for first, second in retried:
        assert when(second["sentAt"]) > when(first["sentAt"])
        assert {**second, "sentAt": None} == {**first, "sentAt": None}
    expected = CONFIG.duplicate_fraction * len(copies)
    assert 0.6 * expected < len(retried) < 1.4 * expected


def test_late_events_are_sent_hours_later(messages: list[dict]) -> None:
    delays = [when(m["sentAt"]) - when(m["timestamp"]) for m in messages]
    late = [d for d in delays if d > timedelta(hours=1)]
    assert 0.7 * CONFIG.late_fraction * len(messages) < len(late) < 1.3 * CONFIG.late_fraction * len(messages)
    assert max(late) > timedelta(days=1)
    assert all(d < timedelta(minutes=10) for d in delays if d <= timedelta(hours=1))


def test_anonymous_devices_identify_before_carrying_the_user_id(messages: list[dict], truth: pd.DataFrame) -> None:
    by_device: dict[str, list[dict]] = defaultdict(list)
    for m in messages:
        by_device[m["anonymousId"]].append(m)
    owner = {a: u for u, ids in zip(truth.user_id, truth.anonymous_ids) if isinstance(u, str) for a in ids.split(",")}
    anonymous_first = 0
    for anonymous_id, device in by_device.items():
        users = {m["userId"] for m in device if "userId" in m}
        if not users:
            continue
        assert users == {owner[anonymous_id]}
        first_known = next(i for i, m in enumerate(device) if "userId" in m)
        assert device[first_known]["type"] == "identify"
        assert "userId" not in device[0]
        anonymous_first += first_known > 0
    assert anonymous_first > 100
    # Visitors and bots never identify.
    strangers = {a for ids in truth.anonymous_ids[truth.user_id.isna()] for a in ids.split(",")}
    assert strangers & by_device.keys()
    assert not any("userId" in m for a in strangers & by_device.keys() for m in by_device[a])


def test_truth_is_consistent(truth: pd.DataFrame) -> None:
    assert set(truth.kind) == {"customer", "visitor", "bot"}
    customers = truth[truth.kind == "customer"]
    assert customers.user_id.is_unique and truth[truth.kind != "customer"].user_id.isna().all()
    assert (customers.purchase_rate > 0).all() and (customers.spend_level > 0).all()
    assert truth.dropout_p.between(0, 1).all()
    for kind in ("orders", "revenue"):
        assert (truth[f"future_{kind}_30d"] <= truth[f"future_{kind}_90d"]).all()
        assert (truth[f"future_{kind}_90d"] <= truth[f"future_{kind}_365d"]).all()
    assert ((truth.future_orders_90d > 0) == (truth.future_item_ids_90d != "")).all()
    churned = truth.true_churn_at.notna()
    assert (~truth.is_active_at_end[churned & (truth.true_churn_at < END)]).all()
    assert truth.is_active_at_end[~churned].all()
    assert (truth.future_orders_365d[churned & (truth.true_churn_at < END)] == 0).all()
    assert (truth.signup_at.dropna() >= truth.first_seen_at[truth.signup_at.notna()]).all()
    # Tenure varies: some customers signed up before the window.
    assert 0.1 < (customers.signup_at < START).mean() < 0.6


def test_purchase_rate_drives_orders(customers: pd.DataFrame) -> None:
    assert spearman(customers.purchase_rate, customers.orders) > 0.3


def test_churners_fade_out(messages: list[dict], truth: pd.DataFrame) -> None:
    owner = {a: u for u, ids in zip(truth.index, truth.anonymous_ids) for a in ids.split(",")}
    recent = pd.Series(0, index=truth.index)
    cutoff = (END - timedelta(days=30)).isoformat().replace("+00:00", "Z")
    for m in messages:
        if m["timestamp"] >= cutoff:
            recent[owner[m["anonymousId"]]] += 1
    customer = truth.kind == "customer"
    churners = customer & (truth.true_churn_at < END)
    actives = customer & truth.is_active_at_end
    assert churners.sum() > 30 and actives.sum() > 30
    assert recent[churners].mean() < 0.8 * recent[actives].mean()
    assert (recent[customer & (truth.true_churn_at < END - timedelta(days=30))] == 0).all()


def test_future_revenue_follows_past_revenue_loosely(customers: pd.DataFrame) -> None:
    rho = spearman(customers.revenue, customers.future_revenue_365d)
    assert 0.2 < rho < 0.95


def test_recommendation_signal(run, messages: list[dict], truth: pd.DataFrame) -> None:
    """Future purchases fall mostly in the favourite categories, and some repeat past purchases."""
    category = pd.read_csv(run[0].catalog_path).set_index("product_id").category
    bought: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        if m.get("event") == "Order Completed":
            bought[m["userId"]].update(p["product_id"] for p in m["properties"]["products"])
    hits = total = repeats = 0
    for user, top, future in zip(truth.user_id, truth.top_categories, truth.future_item_ids_90d):
        for item in filter(None, future.split(",")):
            total += 1
            hits += category[item] in top.split(",")
            repeats += item in bought.get(user, ())
    assert total > 100 and 0.5 < hits / total < 0.95
    assert 0.05 < repeats / total < 0.5


def test_weekends_are_busier(messages: list[dict]) -> None:
    visits = pd.DataFrame([(m["anonymousId"], m["timestamp"][:10]) for m in messages], columns=["device", "day"])
    visitors_per_day = visits.drop_duplicates().groupby("day").size()
    weekday = pd.to_datetime(visitors_per_day.index).day_of_week
    assert visitors_per_day[weekday >= 5].mean() > 1.1 * visitors_per_day[weekday < 4].mean()


def test_iter_events_streams() -> None:
    stream = iter_events(SimulationConfig(profiles=100_000))
    assert inspect.isgenerator(stream)
    began = time.perf_counter()
    first = list(itertools.islice(stream, 1000))
    assert time.perf_counter() - began < 5.0
    assert len(first) == 1000 and all(m["messageId"] for m in first)
    stream.close()


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SimulationConfig(items=5)
    with pytest.raises(ValueError):
        SimulationConfig(start=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        SimulationConfig(late_fraction=1.5)


def test_throughput(tmp_path: Path) -> None:
    """Run with ``-s`` to see the rate."""
    began = time.perf_counter()
    summary = generate(tmp_path, SimulationConfig(profiles=2000))
    rate = summary.events / (time.perf_counter() - began)
    print(f"\nsimulate: {summary.events} events from 2000 profiles at {rate:,.0f} events/s")
    assert rate > 20_000  # a floor against order-of-magnitude regressions, not the target
