"""The Recommendations API through a live ``cdp serve`` (SQLite and PostgreSQL): a model trained on
the checkerboard shop, scopes, cold start, business rules, diversity, and a hot swap under load."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cdp.auth.service import create_token
from cdp.auth.users import create_user
from cdp.catalog.service import import_catalog
from models.gate import Gate
from models.recommend import EASERecommender, PopularityRecommender
from models.recommend.evaluate import Candidate
from models.recommend.train import RecommenderTraining, train_recommender
from tests.conftest import LiveServer
from tests.recs_data import LEFT_ITEMS, RIGHT_ITEMS, anonymous_views, describe, shop_messages
from tests.test_console import signed_in

pytestmark = pytest.mark.slow
SMALL = [Candidate("popularity", PopularityRecommender, {"half_life_days": [None]}),
         Candidate("ease", EASERecommender, {"l2": [10.0, 100.0]})]


@pytest.fixture(scope="module", autouse=True)
def fast_polling() -> Iterator[None]:
    """Servers of this module look for a new champion every 0.2 s (autouse: set before live_server starts)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDP_RECS_POLL_SECONDS", "0.2")
        yield


def post(server: LiveServer, messages: list[dict]) -> None:
    for start in range(0, len(messages), 200):
        answer = httpx.post(f"{server.url}/v1/batch", json={"batch": messages[start : start + 200]},
                            auth=(server.write_key, ""))
        assert answer.status_code == 200, answer.text
    server.wait_attributed()


def train(server: LiveServer, gate: Gate | None = None) -> RecommenderTraining:
    engine = server.engine()
    try:
        extra = {"gate": gate} if gate is not None else {}
        return train_recommender(engine, server.settings, as_of=datetime.now(UTC), candidates=SMALL, **extra)
    finally:
        engine.dispose()


def get(server: LiveServer, path: str, token: str | None = None, **params: object) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}{path}", headers=headers, params=params or None, timeout=10)


def steadily(check: Callable[[], bool], *, times: int = 20, timeout_s: float = 30) -> bool:
    """``check`` held ``times`` times in a row within the timeout: every worker of the server (each
    follows the registry and the catalog on its own) has caught up."""
    deadline, streak = time.monotonic() + timeout_s, 0
    while streak < times and time.monotonic() < deadline:
        streak = streak + 1 if check() else 0
        if not streak:
            time.sleep(0.1)
    return streak >= times


def serves(server: LiveServer, token: str, version: str) -> Callable[[], bool]:
    def check() -> bool:
        answer = get(server, "/v1/recommendations/u00", token)
        return answer.status_code == 200 and answer.json()["model_version"] == version

    return check


@pytest.fixture(scope="module")
def token(live_server: LiveServer) -> str:
    """A ``recommendations:read`` token, once the shop is ingested and v1 trained and served."""
    before = get(live_server, "/v1/recommendations/u00", live_server.admin_token)
    assert before.status_code == 503 and before.json()["error"]["code"] == "no_recommender"
    post(live_server, [message for message, _ in shop_messages()])
    trained = train(live_server)
    assert trained.promoted and trained.model_version == "1" and trained.selection.name in ("ease", "blend")
    engine = live_server.engine()
    with engine.begin() as conn:
        _, secret = create_token(conn, name="recs", scopes=["recommendations:read"], now=datetime.now(UTC))
    engine.dispose()
    assert steadily(serves(live_server, secret, "1"))
    return secret


def test_known_user_gets_unseen_items_of_their_own_half(live_server: LiveServer, token: str) -> None:
    answer = get(live_server, "/v1/recommendations/user_id:u00", token, limit=3)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"items", "model_version", "strategy"}
    assert body["strategy"] == "personalized" and body["model_version"] == "1"
    assert [set(item) for item in body["items"]] == [{"item_id", "score"}] * 3
    assert all(item["item_id"] in LEFT_ITEMS for item in body["items"])
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    seen = {m["properties"]["product_id"] for m, _ in shop_messages() if m["userId"] == "u00"}
    assert not seen & {item["item_id"] for item in body["items"]}
    # A bare user id is a user_id; the right half's users get the right half.
    right = get(live_server, "/v1/recommendations/u45", token, limit=3)
    assert right.status_code == 200, right.text
    assert all(item["item_id"] in RIGHT_ITEMS for item in right.json()["items"])


def test_scopes(live_server: LiveServer, token: str) -> None:
    engine = live_server.engine()
    with engine.begin() as conn:
        _, profiles_only = create_token(conn, name="profiles", scopes=["profiles:read"], now=datetime.now(UTC))
    engine.dispose()
    for path in ("/v1/recommendations/u00", "/v1/items/i03/similar"):
        assert get(live_server, path, token).status_code == 200
        assert get(live_server, path, live_server.admin_token).status_code == 200
        assert get(live_server, path, profiles_only).status_code == 403
        assert get(live_server, path).status_code == 401


def test_cold_start_session_then_popular(live_server: LiveServer, token: str) -> None:
    visitor = f"anon-{uuid.uuid4().hex[:8]}"
    post(live_server, anonymous_views(visitor, ["i12", "i15"], datetime.now(UTC) - timedelta(minutes=5)))
    session = get(live_server, f"/v1/recommendations/anonymous_id:{visitor}", token, limit=4).json()
    assert session["strategy"] == "session"
    assert {item["item_id"] for item in session["items"]} <= set(RIGHT_ITEMS) - {"i12", "i15"}
    for stranger in ("anonymous_id:never-seen", "user_id:nobody", "nobody"):
        unknown = get(live_server, f"/v1/recommendations/{stranger}", token, limit=3).json()
        assert unknown["strategy"] == "popular" and len(unknown["items"]) == 3
    # The most popular items of the checkerboard are the low-numbered of each half.
    assert {item["item_id"] for item in unknown["items"]} <= {"i00", "i01", "i02", "i10", "i11", "i12"}


def test_business_rules_and_diversity(live_server: LiveServer, token: str) -> None:
    def ids(**params: object) -> list[str]:
        answer = get(live_server, "/v1/recommendations/u00", token, **params)
        assert answer.status_code == 200, answer.text
        return [item["item_id"] for item in answer.json()["items"]]

    assert set(ids(category="right", limit=5)) <= set(RIGHT_ITEMS) and len(ids(category="right", limit=5)) == 5
    assert not set(ids(exclude_category="left", limit=20)) & set(LEFT_ITEMS)
    assert all(describe(i)["brand"] == "acme" for i in ids(brand="acme", limit=20))
    assert all(describe(i)["brand"] != "acme" for i in ids(exclude_brand="acme", limit=20))
    assert all(5 <= describe(i)["price"] <= 12 for i in ids(min_price=5, max_price=12, limit=20))
    diverse = ids(max_per_category=2, limit=10)
    assert len(diverse) == 4 and Counter(describe(i)["category"] for i in diverse) == {"left": 2, "right": 2}
    with_seen = ids(exclude_seen="false", limit=20)
    assert len(with_seen) == 20 and len(ids(limit=20)) == 14  # u00 saw 6 of the 20 items

    top = ids(limit=1)[0]
    engine = live_server.engine()
    with engine.begin() as conn:
        import_catalog(conn, iter([{**describe(top), "item_id": top, "available": False}]), now=datetime.now(UTC))
    engine.dispose()
    assert steadily(lambda: top not in ids(in_stock="true", limit=20))  # re-read on the workers' next poll
    assert top in ids(limit=20)
    refused = get(live_server, "/v1/recommendations/u00", token, limit=0)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_request"
    assert refused.json()["error"]["message"].startswith("query.limit: ")
    refused = get(live_server, "/v1/items/i03/similar", token, in_stock="maybe")
    assert refused.status_code == 400 and refused.json()["error"]["message"].startswith("query.in_stock: ")


def test_the_query_parameters_are_documented(live_server: LiveServer) -> None:
    paths = httpx.get(f"{live_server.url}/openapi.json").json()["paths"]
    for path in ("/v1/recommendations/{identifier}", "/v1/items/{item_id}/similar"):
        parameters = {p["name"]: p for p in paths[path]["get"]["parameters"]}
        assert {"limit", "in_stock", "category", "max_per_category", "exclude_seen"} < set(parameters)
        assert parameters["limit"]["in"] == "query" and parameters["limit"]["schema"]["maximum"] == 100
        assert "Comma-separated" in parameters["brand"]["description"]


def test_similar_items(live_server: LiveServer, token: str) -> None:
    body = get(live_server, "/v1/items/i03/similar", token, limit=4).json()
    assert body["strategy"] == "similar_items" and body["model_version"] == "1"
    assert len(body["items"]) == 4 and {item["item_id"] for item in body["items"]} <= set(LEFT_ITEMS) - {"i03"}
    assert all(i["item_id"] in RIGHT_ITEMS for i in get(live_server, "/v1/items/i03/similar", token, limit=3,
                                                          category="right").json()["items"])
    assert get(live_server, "/v1/items/nope/similar", token).status_code == 404


def test_the_champions_offline_metrics_beside_popularity(live_server: LiveServer, token: str) -> None:
    card = get(live_server, "/v1/recommender", token).json()["data"]
    assert card["gate"]["decision"] == "promoted" and {"model", "popularity"} <= set(card["metrics"])
    model, popularity = card["metrics"]["model"]["ndcg_at_10"], card["metrics"]["popularity"]["ndcg_at_10"]
    assert model > popularity  # the gate promoted it for beating popularity on NDCG@10
    engine = live_server.engine()
    with engine.begin() as conn:
        create_user(conn, email="m@shop.example", role="marketer", password="marketer-secret", now=datetime.now(UTC))
    engine.dispose()
    page = signed_in(live_server, "m@shop.example", "marketer-secret").get("/ui/recommendations").text
    assert "champion ÷ popularity" in page and f"{model:.4f}" in page and f"{popularity:.4f}" in page


def test_hot_swap_under_load_fails_no_request(live_server: LiveServer, token: str) -> None:
    statuses: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=live_server.url, headers={"authorization": f"Bearer {token}"}, timeout=10) as client:
            while not stop.is_set():
                answer = client.get("/v1/recommendations/u00", params={"limit": 5})
                statuses[answer.status_code] += 1
                if answer.status_code == 200:
                    assert len(answer.json()["items"]) == 5
                    versions[answer.json()["model_version"]] += 1

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        # The same model again: promoted only because this gate ignores the champion.
        retrained = train(live_server, Gate(metric="ndcg@10", beat_champion=False))
        assert retrained.promoted and retrained.model_version == "2"
        deadline = time.monotonic() + 30
        while versions["2"] < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(statuses) == {200}, statuses
    assert versions["1"] > 0 and versions["2"] >= 20, versions
