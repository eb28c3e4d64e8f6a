"""Predictions over HTTP through a live ``cdp serve``: definitions, model cards, predicted traits in the Profile API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from cdp.auth.service import create_token
from cdp.identity.service import find_profile
from cdp.predictions.traits import ScoredProfiles, write_back
from cdp.store.tables import profile_traits
from tests.conftest import LiveServer

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_definitions_and_model_cards(live_server: LiveServer) -> None:
    url, admin = f"{live_server.url}/v1/predictions", bearer(live_server.admin_token)
    key = f"churn_{uuid.uuid4().hex[:6]}"
    created = httpx.post(url, headers=admin, json={"key": key, "kind": "churn", "window_days": 30})
    assert created.status_code == 201, created.text
    assert created.json()["data"]["version"] == 1 and created.json()["data"]["task"] == "churn"
    assert httpx.post(url, headers=admin, json={"key": key, "kind": "churn", "window_days": 30}).json()["data"]["status"] == "unchanged"
    changed = httpx.post(url, headers=admin, json={"key": key, "kind": "churn", "window_days": 60})
    assert changed.status_code == 200 and changed.json()["data"]["version"] == 2
    assert changed.json()["data"]["gate"] == {"metric": None, "min_improvement": 0.0, "beat_baselines": True,
                                              "beat_champion": True}

    gated = httpx.post(url, headers=admin, json={"key": key, "kind": "churn", "window_days": 60,
                                                 "gate": {"metric": "log_loss", "min_improvement": 0.01}})
    assert gated.status_code == 200 and gated.json()["data"]["version"] == 3
    assert gated.json()["data"]["gate"]["metric"] == "log_loss"
    unknown = httpx.post(url, headers=admin, json={"key": key, "kind": "churn", "gate": {"metric": "gini"}})
    assert unknown.status_code == 400 and "gate metric 'gini'" in unknown.text

    bad = httpx.post(url, headers=admin, json={"key": "g", "kind": "custom"})
    assert bad.status_code == 400 and "needs goal_event" in bad.text

    engine = live_server.engine()
    with engine.begin() as conn:
        _, reader = create_token(conn, name="analyst", scopes=["predictions:read"], now=T0)
        _, profiles_only = create_token(conn, name="app", scopes=["profiles:read"], now=T0)
    engine.dispose()
    listed = httpx.get(url, headers=bearer(reader))
    assert listed.status_code == 200 and key in [item["key"] for item in listed.json()["data"]]
    # The first model card a worker reads creates MLflow's tables (seconds on a busy machine).
    one = httpx.get(f"{url}/{key}", headers=bearer(reader), timeout=120).json()["data"]
    assert one["window_days"] == 60 and one["model_card"] is None  # nothing trained yet
    assert one["version"] == 3 and one["gate"]["min_improvement"] == 0.01
    assert httpx.get(f"{url}/nope", headers=bearer(reader)).status_code == 404
    assert httpx.get(url, headers=bearer(profiles_only)).status_code == 403
    assert httpx.post(url, headers=bearer(reader), json={"key": "x", "kind": "churn"}).status_code == 403
    assert httpx.get(url).status_code == 401


def test_predicted_traits_appear_in_the_profile_api(live_server: LiveServer) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    answer = httpx.post(f"{live_server.url}/v1/identify", auth=(live_server.write_key, ""),
                        json={"userId": user, "traits": {"plan": "pro"}})
    assert answer.status_code == 200
    live_server.wait_attributed()
    engine = live_server.engine()
    with engine.connect() as conn:
        profile_id = find_profile(conn, type="user_id", value=user, entity="users")
    write_back(engine, "buy", "purchase", ScoredProfiles([profile_id], [0.42], [0.9], [2], [["3 orders in the last 30 days"]]),
               model_version="7", as_of=T0, now=T0)
    with engine.connect() as conn:
        assert conn.execute(select(profile_traits.c.name).where(profile_traits.c.profile_id == profile_id)).first()
    engine.dispose()
    traits = httpx.get(f"{live_server.url}/v1/profiles/user_id:{user}/traits", params={"class": "predicted"},
                       headers=bearer(live_server.admin_token))
    assert traits.status_code == 200, traits.text
    assert traits.json()["traits"] == {
        "buy_probability": 0.42, "buy_percentile": 0.9, "buy_decile": 2, "buy_reasons": ["3 orders in the last 30 days"],
        "buy_model_version": "7", "buy_scored_at": T0.isoformat()}
    everything = httpx.get(f"{live_server.url}/v1/profiles/user_id:{user}/traits", headers=bearer(live_server.admin_token))
    assert everything.json()["traits"]["plan"] == "pro" and everything.json()["traits"]["buy_decile"] == 2
