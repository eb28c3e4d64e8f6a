"""``cdp recs`` and ``cdp catalog import`` on a small store, run as a user runs them (SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from cdp.config import Settings
from cdp.profiles.traits import trait_values
from cdp.setup import prepare_store
from cdp.store.tables import catalog_items
from models.tracking import recommender_champion_version
from tests.features_data import profile_of, store
from tests.recs_data import LEFT_ITEMS, shop_messages, user_id
from tests.test_cli import assert_user_error, cdp

pytestmark = pytest.mark.slow


@pytest.fixture
def backend() -> str:
    return "sqlite"  # each command starts a process importing MLflow: one backend is enough here


@pytest.fixture
def shop(settings: Settings) -> Settings:
    engine = prepare_store(settings)
    store(engine, shop_messages())
    engine.dispose()
    return settings


def test_catalog_import_csv_and_json_lines(settings: Settings, tmp_path: Path) -> None:
    csv = tmp_path / "catalog.csv"
    csv.write_text("item_id,name,category,brand,price,available\ni01,Lamp,home,oak,12.5,false\ni02,Mug,,,,\n")
    lines = tmp_path / "catalog.jsonl"
    lines.write_text('{"item_id": "i02", "name": "Big mug", "price": 9, "available": true}\n')
    assert "2 catalog items imported" in cdp(settings, "catalog", "import", str(csv)).stdout
    assert "1 catalog items imported" in cdp(settings, "catalog", "import", str(lines)).stdout
    engine = prepare_store(settings, pool=False)
    with engine.connect() as conn:
        rows = {r.item_id: r for r in conn.execute(select(catalog_items))}
    engine.dispose()
    assert (rows["i01"].category, rows["i01"].price, rows["i01"].available) == ("home", 12.5, False)
    assert (rows["i02"].name, rows["i02"].price, rows["i02"].available, rows["i02"].brand) == ("Big mug", 9.0, True, None)
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,price\ni03,cheap\n")
    assert_user_error(cdp(settings, "catalog", "import", str(bad)), "bad.csv:2: price 'cheap' is not a number")


def test_evaluate_then_train_show_and_write_back(shop: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = shop.resolved_mlflow_tracking_uri
    evaluated = cdp(shop, "recs", "evaluate", columns=80)  # a log or a narrow terminal: the table's rows stay whole
    assert evaluated.returncode == 0, evaluated.stderr
    assert "popularity" in evaluated.stdout and "ease" in evaluated.stdout and "ndcg@10" in evaluated.stdout
    assert any("validation_ndcg@10" in line and "fit_seconds" in line for line in evaluated.stdout.splitlines())
    assert recommender_champion_version(uri) is None  # evaluate registers nothing

    monkeypatch.setenv("CDP_RECS_AFFINITY_AUDIENCES", "category=left:50")
    trained = cdp(shop, "recs", "train")
    assert trained.returncode == 0, trained.stderr
    assert "gate: promoted v1" in trained.stdout and "recommended_items changed on 60 profiles" in trained.stdout
    assert "affinity_category_left: 30 members" in trained.stdout
    assert recommender_champion_version(uri) == "1"
    again = cdp(shop, "recs", "train")
    assert "gate: refused v2" in again.stdout and "does not beat champion" in again.stdout
    assert "recommended_items changed on 0 profiles" in again.stdout  # same champion, same traits

    engine = prepare_store(shop, pool=False)
    u00 = profile_of(engine, user_id(1000))
    with engine.connect() as conn:
        items = trait_values(conn, name="recommended_items")
    engine.dispose()
    assert len(items) == 60 and len(items[u00]) == 10 and set(items[u00][:4]) <= set(LEFT_ITEMS)

    shown = cdp(shop, "recs", "show", "u00", "--limit", "3")
    assert shown.returncode == 0, shown.stderr
    assert "strategy personalized" in shown.stdout and "model v1" in shown.stdout
    assert shown.stdout.count(" left ") == 3
    assert "strategy popular" in cdp(shop, "recs", "show", "anonymous_id:stranger").stdout


def test_train_with_nothing_to_learn_is_a_user_error(settings: Settings) -> None:
    assert_user_error(cdp(settings, "recs", "train"), "no interactions visible")
