"""Computed traits on SQLite and PostgreSQL: every kind against a hand-computed answer, ingestion equal
to batch, definitions, the API and the CLI."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import Engine, select

from cdp.auth.service import create_source
from cdp.computed.compute import compute_traits
from cdp.computed.schemas import ComputedTrait, parse_definition
from cdp.computed.service import define, delete_definition, get_definition, list_definitions
from cdp.config import Settings
from cdp.errors import InvalidInput
from cdp.events.attribution import attribute_pending
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.identity.service import find_profile, merge_log, split
from cdp.setup import prepare_store
from cdp.store.tables import profile_traits, trait_changes
from tests.conftest import LiveServer
from tests.test_cli import assert_user_error, cdp

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
AS_OF = T0 + timedelta(days=10)
CONFIG = IngestConfig.from_settings(Settings())
_ids = itertools.count()


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def send(engine: Engine, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Ingest messages as one request, at event time ``at``, received at ``received`` (default: ``at``).

    Inline, as ``cdp import`` does, or (``deferred``) as the Tracking API does, then attributed by the follower.
    """
    deferred = getattr(request, "param", "inline") == "deferred"
    with engine.begin() as conn:
        source_id = create_source(conn, name="app", now=T0)[0].id

    def send(*messages, at=None, received=None, message_ids=None):  # type: ignore[no-untyped-def]
        batch = [{"messageId": f"m{next(_ids)}", **({"timestamp": at.isoformat()} if at else {}), **m}
                 for m in messages]
        for message, message_id in zip(batch, message_ids or [], strict=False):
            message["messageId"] = message_id
        received_at = received or at or T0
        with engine.begin() as conn:
            ingest(conn, source_id=source_id, messages=batch, envelope=Envelope(received_at=received_at),
                   config=CONFIG, defer_attribution=deferred)
        taken = deferred
        while taken:
            with engine.begin() as conn:
                taken = attribute_pending(conn, config=CONFIG, now=received_at, limit=100) > 0
        return [m["messageId"] for m in batch]

    return send


def order(user: str, **properties) -> dict:  # type: ignore[no-untyped-def]
    return {"type": "track", "userId": user, "event": "Order Completed", "properties": properties}


def profile(engine: Engine, value: str, type_: str = "user_id", entity: str = "users") -> int:
    with engine.connect() as conn:
        found = find_profile(conn, type=type_, value=value, entity=entity)
    assert found is not None
    return found


def values(engine: Engine, name: str) -> dict[int, object]:
    with engine.connect() as conn:
        rows = conn.execute(select(profile_traits.c.profile_id, profile_traits.c.value).where(
            profile_traits.c.name == name, profile_traits.c["class"] == "computed"))
        return {profile_id: value for profile_id, value in rows}


def compute(engine: Engine, definitions: list[ComputedTrait], as_of: datetime = AS_OF):  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        return compute_traits(conn, definitions=definitions, as_of=as_of)


def trait(name: str, kind: str, **fields) -> ComputedTrait:  # type: ignore[no-untyped-def]
    return parse_definition({"name": name, "kind": kind, "event": "Order Completed", **fields})


@pytest.fixture
def shop(engine: Engine, send):  # type: ignore[no-untyped-def]
    """Orders of ann, bob and cy over ten days, each received when it happened unless said otherwise."""
    send({"type": "group", "userId": "ann", "groupId": "acme"}, {"type": "group", "userId": "bob", "groupId": "acme"},
         at=day(0))
    send(order("ann", revenue=100, category="books"), at=day(1))
    send(order("cy", revenue=10, category="books"), at=day(2))
    send({"type": "identify", "userId": "ann", "traits": {"plan": "free"}}, at=day(3))
    send(order("ann", revenue=20, category="games"), at=day(4))
    send(order("ann", revenue=30.5, category="books", coupon=True), at=day(5))
    send(order("bob", revenue=50, category="music"), at=day(6))
    send({"type": "track", "userId": "ann", "event": "Product Viewed", "properties": {"revenue": 3}},
         {"type": "page", "userId": "ann", "name": "Pricing"}, at=day(6))
    send(order("ann", revenue=1000, category="toys"), at=day(7), received=AS_OF + timedelta(hours=1))  # too late
    send(order("bob", revenue=5, category="music", coupon=True), {"type": "identify", "userId": "ann",
                                                                  "traits": {"plan": "pro"}}, at=day(8))
    send(order("ann", revenue="7", category="books"), at=day(9))  # a string is not a number
    send(order("ann", revenue=999, category="toys"), at=day(11))  # after as_of
    return {name: profile(engine, name) for name in ("ann", "bob", "cy")} | {"acme": profile(
        engine, "acme", "group_id", "accounts")}


WEEK = {"window_days": 7}
EVERY_KIND = [
    (trait("orders_7d", "count", **WEEK), {"ann": 3, "bob": 2}),
    (trait("orders_ever", "count"), {"ann": 4, "bob": 2, "cy": 1}),
    (trait("revenue_7d", "sum", property="revenue", **WEEK), {"ann": 50.5, "bob": 55}),
    (trait("avg_revenue_7d", "avg", property="revenue", **WEEK), {"ann": 25.25, "bob": 27.5}),
    (trait("min_revenue_7d", "min", property="revenue", **WEEK), {"ann": 20, "bob": 5}),
    (trait("max_revenue_7d", "max", property="revenue", **WEEK), {"ann": 30.5, "bob": 50}),
    (trait("top_category_7d", "most_frequent", property="category", **WEEK), {"ann": "books", "bob": "music"}),
    (trait("first_category_7d", "first", property="category", **WEEK), {"ann": "games", "bob": "music"}),
    (trait("last_category_7d", "last", property="category", **WEEK), {"ann": "books", "bob": "music"}),
    (trait("first_category_ever", "first", property="category"), {"ann": "books", "bob": "music", "cy": "books"}),
    (trait("categories_7d", "unique_list", property="category", **WEEK), {"ann": ["books", "games"], "bob": ["music"]}),
    (trait("category_count_7d", "unique_count", property="category", **WEEK), {"ann": 2, "bob": 1}),
    (trait("coupons_7d", "unique_list", property="coupon", **WEEK), {"ann": [True], "bob": [True]}),
    # Filters.
    (trait("no_coupon_7d", "count", filters=[{"property": "coupon", "op": "neq", "value": True}], **WEEK),
     {"ann": 2, "bob": 1}),
    (trait("books_revenue_7d", "sum", property="revenue", filters=[{"property": "category", "value": "books"}],
           **WEEK), {"ann": 30.5}),
    (trait("big_orders_7d", "count", filters=[{"property": "revenue", "op": "gte", "value": 20}], **WEEK),
     {"ann": 2, "bob": 1}),
    (trait("small_orders_7d", "count", filters=[{"property": "revenue", "op": "lt", "value": 20.5}], **WEEK),
     {"ann": 1, "bob": 1}),
    (trait("oo_orders_7d", "count", filters=[{"property": "category", "op": "contains", "value": "oo"}], **WEEK),
     {"ann": 2}),
    (trait("coupon_orders_7d", "count", filters=[{"property": "coupon", "op": "exists"}], **WEEK),
     {"ann": 1, "bob": 1}),
    (trait("early_alphabet_7d", "count", filters=[{"property": "category", "op": "lte", "value": "c"},
                                                  {"property": "revenue", "op": "gt", "value": 0}], **WEEK),
     {"ann": 1}),
    # Other calls.
    (parse_definition({"name": "plans", "kind": "unique_list", "type": "identify", "property": "plan"}),
     {"ann": ["free", "pro"]}),
    (parse_definition({"name": "plan_now", "kind": "last", "type": "identify", "property": "plan"}), {"ann": "pro"}),
    (parse_definition({"name": "pages_7d", "kind": "count", "type": "page", "event": "Pricing", **WEEK}), {"ann": 1}),
    (parse_definition({"name": "views", "kind": "count", "event": "Product Viewed"}), {"ann": 1}),
    # An account adds up its users' events.
    (trait("account_revenue_7d", "sum", property="revenue", entity="accounts", **WEEK), {"acme": 105.5}),
]


def test_every_kind_over_a_window_with_filters(engine: Engine, shop) -> None:  # type: ignore[no-untyped-def]
    results = compute(engine, [d for d, _ in EVERY_KIND])
    for (definition, expected), result in zip(EVERY_KIND, results, strict=True):
        got = values(engine, definition.name)
        assert got == {shop[name]: value for name, value in expected.items()}, definition.name
        assert result.profiles == result.changed == len(expected)
    again = compute(engine, [d for d, _ in EVERY_KIND])
    assert [r.changed for r in again] == [0] * len(EVERY_KIND), "unchanged values are not written again"


def test_a_profile_leaving_the_window_is_updated_and_logged(engine: Engine, shop) -> None:  # type: ignore[no-untyped-def]
    definitions = [d for d, _ in EVERY_KIND if d.name in ("orders_7d", "revenue_7d", "last_category_7d",
                                                         "categories_7d", "orders_ever")]
    compute(engine, definitions)
    later = AS_OF + timedelta(days=30)
    results = {r.name: r for r in compute(engine, definitions, as_of=later)}
    ann, bob = shop["ann"], shop["bob"]
    assert values(engine, "orders_7d") == {ann: 0, bob: 0}
    assert values(engine, "revenue_7d") == {ann: 0, bob: 0}
    assert values(engine, "last_category_7d") == {ann: None, bob: None}
    assert values(engine, "categories_7d") == {ann: [], bob: []}
    # All time: the late order (received after the first as_of) and the one after it count now.
    assert values(engine, "orders_ever") == {ann: 6, bob: 2, shop["cy"]: 1}
    assert results["orders_ever"].changed == 1
    with engine.connect() as conn:
        log = conn.execute(select(trait_changes.c.value, trait_changes.c.event_time).where(
            trait_changes.c.profile_id == ann, trait_changes.c.name == "orders_7d").order_by(trait_changes.c.id)).all()
    assert [tuple(row) for row in log] == [(3, AS_OF), (0, later)]


# Deferred: stored pending as the Tracking API stores them, folded in by the follower.
@pytest.mark.parametrize("send", ["inline", "deferred"], indirect=True)
def test_ingestion_keeps_traits_equal_to_a_batch_recompute(engine: Engine, send) -> None:  # type: ignore[no-untyped-def]
    coupon = [{"property": "coupon", "op": "neq", "value": True}]
    definitions = [
        trait("orders", "count"), trait("revenue", "sum", property="revenue", filters=coupon),
        trait("smallest", "min", property="revenue"), trait("largest", "max", property="revenue"),
        trait("first_category", "first", property="category"), trait("last_category", "last", property="category"),
        trait("categories", "unique_list", property="category"),
        trait("orders_7d", "count", window_days=7),  # windowed: batch only
    ]
    assert [d.incremental for d in definitions] == [True] * 7 + [False]
    with engine.begin() as conn:
        for definition in definitions:
            define(conn, definition=definition, now=T0)
    send(order("ann", revenue=5, category="a"), at=day(1))  # before the first compute: counted by it
    compute(engine, definitions, as_of=day(1))
    received = itertools.count(1)

    def later(*messages, at, message_ids=None):  # type: ignore[no-untyped-def]
        return send(*messages, at=at, received=day(20) + timedelta(minutes=next(received)), message_ids=message_ids)

    first = later(order("ann", revenue=20.1, category="books"), order("ann", revenue=0.2, category="games"), at=day(5))
    later(order("ann", revenue=3, category="books", coupon=True), at=day(2))  # out of order
    later({**order("", revenue=7, category="toys"), "userId": None, "anonymousId": "phone"}, at=day(3))
    later({**order("", revenue=0.1, category="zines"), "userId": None, "anonymousId": "phone"}, at=day(9))
    later({"type": "identify", "userId": "ann", "anonymousId": "phone"}, at=day(6))  # merges the phone into ann
    later(order("ann", revenue=1, category="art"), at=day(0))
    later(order("ann", revenue=40, category="toys"), at=day(0.5))
    later(order("ann", revenue=99, category="never"), at=day(5), message_ids=first[:1])  # an SDK retry: ignored
    later(order("bob", revenue=-2, category="books"), order("bob", category="books"), at=day(8))
    ann, bob = profile(engine, "ann"), profile(engine, "bob")
    expected = {
        "orders": {ann: 8, bob: 2}, "revenue": {ann: 73.4, bob: -2}, "smallest": {ann: 0.1, bob: -2},
        "largest": {ann: 40, bob: -2}, "first_category": {ann: "art", bob: "books"},
        "last_category": {ann: "zines", bob: "books"},
        "categories": {ann: ["a", "art", "books", "games", "toys", "zines"], bob: ["books"]},
        "orders_7d": {ann: 0},  # windowed: recomputed as of the merge, none in the week before it arrived
    }
    assert {d.name: values(engine, d.name) for d in definitions} == expected

    results = compute(engine, definitions, as_of=day(21))
    assert {r.name: r.changed for r in results if r.name != "orders_7d"} == dict.fromkeys(expected.keys() - {"orders_7d"}, 0)
    assert values(engine, "orders_7d") == {ann: 0}

    # Undoing the merge hands the phone's orders back; its traits are recomputed, equal to a batch.
    with engine.connect() as conn:
        [merge] = [m for m in merge_log(conn, profile_id=ann) if m.outcome == "merged"]
    with engine.begin() as conn:
        split(conn, merge_id=merge.id, rules=CONFIG.identity, now=day(22))
    phone = profile(engine, "phone", "anonymous_id")
    assert values(engine, "orders")[phone] == 2 and values(engine, "orders")[ann] == 6
    assert values(engine, "categories")[phone] == ["toys", "zines"]
    results = compute(engine, [d for d in definitions if d.incremental], as_of=day(23))
    assert [r.changed for r in results] == [0] * 7


def test_a_definition_is_not_folded_into_before_its_first_compute(engine: Engine, send) -> None:  # type: ignore[no-untyped-def]
    orders = trait("orders", "count")
    send(order("ann"), at=day(1))
    with engine.begin() as conn:
        define(conn, definition=orders, now=T0)
    send(order("ann"), at=day(2))
    assert values(engine, "orders") == {}, "a partial count would be wrong until the backfill"
    compute(engine, [orders], as_of=day(2))
    send(order("ann"), at=day(3))
    assert values(engine, "orders") == {profile(engine, "ann"): 3}


@pytest.mark.parametrize(("definition", "message"), [
    ({"name": "n", "kind": "count", "event": "E", "property": "revenue"}, "count counts events and takes no property"),
    ({"name": "n", "kind": "sum", "event": "E"}, "sum needs a property"),
    ({"name": "n", "kind": "median", "property": "p"}, "kind: Input should be"),
    ({"name": "bad name!", "kind": "count"}, "name must be"),
    ({"name": "n", "kind": "count", "window_days": 0}, "window_days: Input should be greater than or equal to 1"),
    ({"name": "n", "kind": "max", "property": "items.0.price"}, "must be a dotted path of object keys"),
    ({"name": "n", "kind": "count", "type": "identify", "event": "E"}, "identify calls have no event name"),
    ({"name": "n", "kind": "count", "filters": [{"property": "p", "op": "gt"}]}, "filter op gt needs a value"),
    ({"name": "n", "kind": "count", "filters": [{"property": "p", "op": "exists", "value": 1}]}, "takes no value"),
    ({"name": "n", "kind": "count", "filters": [{"property": "p", "op": "contains", "value": 1}]}, "needs a string"),
    ({"name": "n", "kind": "count", "filters": [{"property": "p", "op": "lt", "value": True}]}, "not booleans"),
    ({"name": "n", "kind": "count", "surprise": 1}, "surprise: Extra inputs are not permitted"),
    (["not an object"], "must be a JSON object"),
])
def test_definition_mistakes_are_named(definition, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="computed trait") as error:
        parse_definition(definition)
    assert message in error.value.message


def test_definitions_are_declared_idempotently_and_deleted_with_their_values(settings: Settings, tmp_path: Path,
                                                                             send) -> None:  # type: ignore[no-untyped-def]
    orders = trait("orders", "count")
    file = tmp_path / "traits.json"
    file.write_text(orjson.dumps([orders.model_dump(), {"name": "spend", "kind": "sum", "property": "revenue"}]).decode())
    configured = settings.model_copy(update={"computed_traits_file": file})
    engine = prepare_store(configured)
    send(order("ann"), at=day(1))
    compute(engine, [orders], as_of=day(1))
    prepare_store(configured).dispose()  # a restart declares the same file again: nothing changes
    with engine.begin() as conn:
        stored = get_definition(conn, name="orders")
        assert stored.last_computed_at == day(1) and stored.definition == orders
        assert [s.definition.name for s in list_definitions(conn)] == ["orders", "spend"]
        assert define(conn, definition=orders, now=day(2))[1] == "unchanged"
        assert get_definition(conn, name="orders").last_computed_at == day(1)
        changed, status = define(conn, definition=trait("orders", "count", window_days=30), now=day(2))
        assert status == "changed" and changed.last_computed_at is None and changed.updated_at == day(2)
        assert delete_definition(conn, name="orders") == 1
    assert values(engine, "orders") == {}
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "kind": "sum"}')
    with pytest.raises(InvalidInput, match=r"bad.json: computed trait 'x': sum needs a property"):
        prepare_store(settings.model_copy(update={"computed_traits_file": bad}))
    engine.dispose()


# -- API and CLI ---------------------------------------------------------------------------------


def test_api_defines_computes_and_the_profile_api_shows_the_trait(live_server: LiveServer) -> None:
    headers = {"authorization": f"Bearer {live_server.admin_token}"}
    user = f"ct-{next(_ids)}-{live_server.url[-5:]}"
    now = datetime.now(UTC)
    batch = [{"type": "track", "userId": user, "event": "Order Completed", "properties": {"revenue": r},
              "timestamp": (now - timedelta(days=n)).isoformat()} for n, r in ((5, 10), (3, 5.5), (60, 1))]
    assert httpx.post(f"{live_server.url}/v1/batch", json={"batch": batch}, auth=(live_server.write_key, "")).is_success
    live_server.wait_attributed()
    url = f"{live_server.url}/v1/computed-traits"
    definition = {"name": f"spend_{user}", "kind": "sum", "event": "Order Completed", "property": "revenue",
                  "window_days": 30}
    created = httpx.post(url, json=definition, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["data"]["incremental"] is False and created.json()["data"]["last_computed_at"] is None
    assert httpx.post(url, json=definition, headers=headers).status_code == 200, "declaring it again is fine"
    assert definition["name"] in [d["name"] for d in httpx.get(url, headers=headers).json()["data"]]
    name_url = f"{url}/{definition['name']}"
    as_of = now + timedelta(minutes=1)
    computed = httpx.post(f"{name_url}/compute", json={"as_of": as_of.isoformat()}, headers=headers)
    assert computed.status_code == 200, computed.text
    assert computed.json()["data"]["changed"] == 1
    traits = httpx.get(f"{live_server.url}/v1/profiles/user_id:{user}/traits", params={"class": "computed"},
                       headers=headers).json()["traits"]
    assert traits == {definition["name"]: 15.5}
    assert datetime.fromisoformat(httpx.get(name_url, headers=headers).json()["data"]["last_computed_at"]) == as_of
    again = httpx.post(f"{name_url}/compute", headers=headers)  # as_of defaults to now
    assert again.status_code == 200 and again.json()["data"]["changed"] == 0
    deleted = httpx.delete(name_url, headers=headers)
    assert deleted.status_code == 200 and deleted.json()["data"]["values_removed"] == 1
    missing = httpx.get(name_url, headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = httpx.post(url, json={"name": "x", "kind": "sum"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "computed trait 'x': sum needs a property"
    assert httpx.post(url, content=b"[", headers=headers).status_code == 400
    # Python's JSON parser takes Infinity, which the stored definition would keep as null (unreadable after).
    infinite = b'{"name": "x", "kind": "count", "event": "A", "filters": [{"property": "p", "op": "gte", "value": Infinity}]}'
    refused = httpx.post(url, content=infinite, headers={**headers, "content-type": "application/json"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_json", refused.text
    assert refused.json()["error"]["message"].startswith("request body is not valid JSON: unexpected character")
    assert httpx.get(url, headers=headers).status_code == 200
    assert httpx.post(url, json=definition).status_code == 401
    with live_server.engine().begin() as conn:
        from cdp.auth.service import create_token

        _, reader = create_token(conn, name="bi", scopes=["profiles:read"], now=T0)
    # Reading definitions is reading profiles (the console's audience builder lists them); changing them is an admin's.
    assert httpx.get(url, headers={"authorization": f"Bearer {reader}"}).status_code == 200
    assert httpx.post(url, json=definition, headers={"authorization": f"Bearer {reader}"}).status_code == 403


def test_cli_defines_lists_computes_and_deletes(settings: Settings, tmp_path: Path, send) -> None:  # type: ignore[no-untyped-def]
    send(order("ann", revenue=4), order("ann", revenue=6), at=day(1))
    file = tmp_path / "traits.json"
    file.write_text(orjson.dumps([{"name": "orders", "kind": "count", "event": "Order Completed"},
                                  {"name": "spend", "kind": "sum", "property": "revenue"}]).decode())
    defined = cdp(settings, "traits", "define", "--file", str(file))
    assert defined.returncode == 0, defined.stderr
    assert "orders (created)" in defined.stdout and "spend (created)" in defined.stdout
    listed = cdp(settings, "traits", "list")
    assert "orders" in listed.stdout and "count" in listed.stdout and "never" in listed.stdout
    computed = cdp(settings, "traits", "compute", "--as-of", day(2).isoformat())
    assert computed.returncode == 0, computed.stderr
    assert "orders: 1 profiles hold a value, 1 changed" in computed.stdout
    engine = prepare_store(settings, pool=False)
    ann = profile(engine, "ann")
    assert values(engine, "orders") == {ann: 2} and values(engine, "spend") == {ann: 10}
    assert "spend: 1 profiles hold a value, 0 changed" in cdp(settings, "traits", "compute", "--name", "spend").stdout
    assert cdp(settings, "traits", "delete", "spend").returncode == 0
    assert values(engine, "spend") == {}
    engine.dispose()
    assert_user_error(cdp(settings, "traits", "compute", "--name", "spend"), "no computed trait named 'spend'")
    file.write_text('{"name": "x", "kind": "count", "property": "p"}')
    assert_user_error(cdp(settings, "traits", "define", "--file", str(file)), "count counts events and takes no property")
