"""Prediction definitions in the store and scores written back as predicted traits, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, select

from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.errors import InvalidInput, NotFound
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.identity.service import find_profile
from cdp.predictions.schemas import PredictionDefinition, parse_definition
from cdp.predictions.service import create_prediction, get_prediction, list_predictions
from cdp.predictions.traits import ScoredProfiles, read_scores, write_back
from cdp.privacy.regulations import create_regulation, run_regulation
from cdp.store.tables import profile_traits, trait_changes
from models.monitoring import drift_reference, measure_drift, psi

T0 = datetime(2026, 3, 1, tzinfo=UTC)
USERS = ("ann", "bob", "cy", "dee")


def test_definitions_are_versioned_when_they_change(engine: Engine) -> None:
    churn = PredictionDefinition(key="churn", kind="churn", window_days=30)
    with engine.begin() as conn:
        first, status = create_prediction(conn, definition=churn, now=T0)
        assert status == "created" and first.definition.version == 1
        assert create_prediction(conn, definition=churn, now=T0)[1] == "unchanged"
        longer, status = create_prediction(conn, definition=churn.model_copy(update={"window_days": 60}), now=T0)
        assert status == "changed" and longer.definition.version == 2
        create_prediction(conn, definition=PredictionDefinition(key="buy", kind="purchase"), now=T0)
    with engine.connect() as conn:
        assert get_prediction(conn, key="churn").definition.window_days == 60
        assert get_prediction(conn, key="churn", version=1).definition.window_days == 30
        assert [(s.definition.key, s.definition.version) for s in list_predictions(conn)] == [("buy", 1), ("churn", 2)]
        with pytest.raises(NotFound, match="no prediction 'nope'"):
            get_prediction(conn, key="nope")


@pytest.mark.parametrize(("document", "message"), [
    ({"key": "g", "kind": "custom"}, "prediction 'g': a custom prediction needs goal_event"),
    ({"key": "Bad Key", "kind": "churn"}, "prediction 'Bad Key': key: String should match pattern"),
    ({"key": "w", "kind": "churn", "window_days": 0}, "window_days: Input should be greater than or equal to 1"),
    ("churn", "a prediction must be a JSON object"),
    ({"key": "c", "kind": "churn", "gate": {"metric": "mae"}}, "gate metric 'mae': churn predictions are judged on one of"),
    ({"key": "c", "kind": "churn", "gate": {"min_improvement": -1}}, "gate.min_improvement: Input should be greater"),
])
def test_definition_mistakes_are_named(document: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_definition(document)
    assert message in caught.value.message


def _people(engine: Engine) -> dict[str, int]:
    """One profile per user, ingested in-process (attributed at once); user -> profile id."""
    with engine.begin() as conn:
        source_id = create_source(conn, name="app", now=T0)[0].id
        messages = [{"type": "identify", "userId": user, "messageId": f"m-{user}", "traits": {"plan": "pro"},
                     "timestamp": T0.isoformat()} for user in USERS]
        ingest(conn, source_id=source_id, messages=messages, envelope=Envelope(received_at=T0),
               config=IngestConfig.from_settings(Settings()))
    with engine.connect() as conn:
        return {user: find_profile(conn, type="user_id", value=user, entity="users") for user in USERS}  # type: ignore[misc]


def _scored(ids: dict[str, int], scores: list[float]) -> ScoredProfiles:
    ranked = sorted(scores)
    percentiles = [(ranked.index(s) + 1) / len(scores) for s in scores]
    return ScoredProfiles([ids[u] for u in USERS], scores, percentiles, [1 + int((1 - p) * 10) for p in percentiles],
                          [[f"reason of {u}"] for u in USERS])


def _current(engine: Engine, profile_id: int) -> dict[str, object]:
    with engine.connect() as conn:
        rows = conn.execute(select(profile_traits.c.name, profile_traits.c.value, profile_traits.c["class"])
                            .where(profile_traits.c.profile_id == profile_id)).all()
    return {row.name: row.value for row in rows if row[2] == "predicted"}


def test_scores_become_predicted_traits_keep_history_and_go_with_a_deletion(engine: Engine) -> None:
    ids = _people(engine)
    first = _scored(ids, [0.9, 0.2, 0.5, 0.7])
    written = write_back(engine, "churn", "churn", first, model_version="3", as_of=T0, now=T0)
    assert written == 4 * 6
    ann = _current(engine, ids["ann"])
    assert ann == {"churn_probability": 0.9, "churn_percentile": 1.0, "churn_decile": 1, "churn_reasons": ["reason of ann"],
                   "churn_model_version": "3", "churn_scored_at": T0.isoformat()}
    assert _current(engine, ids["bob"])["churn_percentile"] == 0.25 and _current(engine, ids["bob"])["churn_decile"] == 8

    later = T0 + timedelta(days=1)
    write_back(engine, "churn", "churn", _scored(ids, [0.1, 0.8, 0.5, 0.7]), model_version="4", as_of=later, now=later)
    assert _current(engine, ids["ann"])["churn_probability"] == 0.1
    assert _current(engine, ids["ann"])["churn_model_version"] == "4"
    # A backtest scored afterwards, as of an earlier date, is history, not the current score.
    write_back(engine, "churn", "churn", first, model_version="2", as_of=T0 - timedelta(days=30), now=later)
    assert _current(engine, ids["ann"])["churn_probability"] == 0.1
    with engine.connect() as conn:
        history = conn.execute(select(trait_changes.c.value).where(
            trait_changes.c.profile_id == ids["ann"], trait_changes.c.name == "churn_probability")
            .order_by(trait_changes.c.id)).scalars().all()
        exported = read_scores(conn, key="churn", task="churn")
    assert history == [0.9, 0.1, 0.9]
    assert [row["profile_id"] for row in exported] == sorted(ids.values())
    assert {row["churn_probability"] for row in exported} == {0.1, 0.8, 0.5, 0.7}

    with engine.begin() as conn:
        regulation = create_regulation(conn, regulation_type="DELETE_ONLY", subject_type="USER_ID",
                                       subject_ids=["ann"], now=later)
    assert run_regulation(engine, regulation, now=later).status == "FINISHED"
    assert _current(engine, ids["ann"]) == {}
    with engine.connect() as conn:
        left = conn.execute(select(trait_changes.c.profile_id).where(trait_changes.c.name.like("churn_%"))).scalars().all()
    assert ids["ann"] not in left and ids["bob"] in left
    assert _current(engine, ids["bob"])["churn_probability"] == 0.8


def test_a_profile_no_longer_eligible_loses_its_score(engine: Engine) -> None:
    ids = _people(engine)
    write_back(engine, "ltv", "value", _scored(ids, [10.0, 0.0, 5.0, 7.0]), model_version="1", as_of=T0, now=T0)
    later = T0 + timedelta(days=1)
    only_two = ScoredProfiles([ids["ann"], ids["bob"]], [3.0, 1.0], [1.0, 0.5], [1, 5], [[], []])
    assert write_back(engine, "ltv", "value", only_two, model_version="1", as_of=later, now=later) == 4 * 6
    assert _current(engine, ids["ann"])["ltv_value"] == 3.0
    assert set(_current(engine, ids["dee"]).values()) == {None}


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    then = rng.normal(size=5000)
    reference = drift_reference(pd.DataFrame({"x": then, "label_free": rng.normal(size=5000)}), then)
    assert psi(reference["features"]["x"], rng.normal(size=5000)) < 0.02
    drift = measure_drift(reference, pd.DataFrame({"x": rng.normal(1.0, size=5000), "label_free": rng.normal(size=5000)}),
                          rng.normal(size=5000))
    assert drift.features["x"] > 0.25 and drift.shifted == ["x"] and drift.score < 0.02
    with_missing = np.where(rng.random(5000) < 0.5, np.nan, rng.normal(size=5000))
    assert psi(reference["features"]["x"], with_missing) > 0.25  # a column going missing is drift too
