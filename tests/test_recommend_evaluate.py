"""Offline evaluation: the split, the metrics on hand-computed cases, and the model choice."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from models.recommend import EASERecommender, Interactions, ItemKNNRecommender, PopularityRecommender
from models.recommend.evaluate import (
    BLEND,
    RERANK,
    Candidate,
    evaluate,
    leave_last_out,
    ranking_metrics,
    select_recommender,
)
from tests.recommend_data import AS_OF, COLUMNS, USERS_PER_GROUP, checkerboard, half_of


def at(minutes: int) -> pd.Timestamp:
    return pd.Timestamp(AS_OF - timedelta(days=1) + timedelta(minutes=minutes))


def test_ranking_metrics_by_hand() -> None:
    recommended = np.array([[2, 0, 5], [4, -1, -1], [1, 2, 3]])
    relevant = sparse.csr_matrix(np.array([
        [1, 1, 0, 0, 0, 0, 0, 0],  # finds item 0 at rank 2 of 2 relevant
        [0, 0, 0, 0, 1, 0, 0, 0],  # finds its only item first; empty slots after it
        [0, 0, 0, 0, 0, 0, 0, 1],  # finds nothing
    ], dtype=bool))
    found = ranking_metrics(recommended, relevant, k=3)
    ndcg_first = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert found == pytest.approx({
        "precision@3": (1 / 3 + 1 / 3 + 0) / 3,
        "recall@3": (1 / 2 + 1 + 0) / 3,
        "hr@3": 2 / 3,
        "ndcg@3": (ndcg_first + 1 + 0) / 3,
        "map@3": ((1 / 2) / 2 + 1 + 0) / 3,  # precision at the hit's rank over min(relevant, k)
    })
    assert ranking_metrics(recommended, relevant, k=1)["precision@1"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="relevant"):
        ranking_metrics(recommended, sparse.csr_matrix((3, 8), dtype=bool), k=3)


def test_leave_last_out_holds_out_the_latest_discoveries() -> None:
    rows = pd.DataFrame([
        (1, "a", at(0), 1.0), (1, "b", at(1), 1.0), (1, "c", at(2), 1.0),
        (1, "a", at(3), 1.0),  # a repeat is no discovery, but comes before the held-out ones
        (1, "d", at(4), 5.0), (1, "e", at(4), 5.0),  # one order's lines, discovered together
        (1, "b", at(5), 1.0),  # after the boundary: held out with them
        (2, "a", at(0), 1.0), (2, "b", at(1), 1.0), (2, "c", at(2), 1.0),
    ], columns=COLUMNS)
    split = leave_last_out(rows, n=1, min_history=2)
    assert sorted(map(tuple, split.targets.to_numpy())) == [(1, "d"), (1, "e"), (2, "c")]
    assert split.train.equals(rows.iloc[[0, 1, 2, 3, 7, 8]].reset_index(drop=True))
    # User 2 would keep only two items: not evaluated, every row of theirs trains.
    strict = leave_last_out(rows, n=1, min_history=3)
    assert sorted(map(tuple, strict.targets.to_numpy())) == [(1, "d"), (1, "e")]
    assert strict.train.equals(rows.iloc[[0, 1, 2, 3, 7, 8, 9]].reset_index(drop=True))
    # Two items out: d and e, discovered together, are the last two.
    assert sorted(map(tuple, leave_last_out(rows, n=2, min_history=2).targets.to_numpy())) == [(1, "d"), (1, "e")]


def test_evaluate_reports_coverage_and_popularity_bias() -> None:
    rows = pd.DataFrame([(u, item, at(i), 1.0) for u, items in {1: "ab", 2: "ac", 3: "ad"}.items()
                         for i, item in enumerate(items)] + [(4, "e", at(0), 1.0)], columns=COLUMNS)
    data = Interactions.from_frame(rows, as_of=AS_OF)
    model = PopularityRecommender(half_life_days=None).fit(data)  # a: 3 people, the others 1
    targets = pd.DataFrame({"profile_id": [1, 4, 99], "item_id": ["c", "a", "a"]})  # 99: not a model user
    found = evaluate(model, targets, k=2)
    # User 1 (saw a, b) gets c, d; user 4 (saw e) gets a, then b.
    assert found["users"] == 2 and found["hr@2"] == 1.0
    assert found["ndcg@2"] == pytest.approx(1.0)
    assert found["coverage@2"] == pytest.approx(4 / 5)  # a, b, c, d of a..e
    assert found["popularity@2"] == pytest.approx((1 / 4 + 1 / 4 + 3 / 4 + 1 / 4) / 4)


def test_an_item_new_to_the_model_still_counts_as_missed() -> None:
    rows = pd.DataFrame([(1, "a", at(0), 1.0), (2, "b", at(0), 1.0)], columns=COLUMNS)
    model = PopularityRecommender(None).fit(Interactions.from_frame(rows, as_of=AS_OF))
    found = evaluate(model, pd.DataFrame({"profile_id": [1, 1], "item_id": ["b", "brand new"]}), k=1)
    assert found["recall@1"] == pytest.approx(0.5) and found["precision@1"] == 1.0


def test_selection_prefers_the_personal_model_where_taste_decides() -> None:
    rows = checkerboard(seed=3, seen_per_user=7)
    candidates = [
        Candidate("popularity", PopularityRecommender, {"half_life_days": [None, 7.0]}),
        Candidate("ease", EASERecommender, {"l2": [1.0, 10.0]}),
        Candidate("item_knn", ItemKNNRecommender, {"k": [5]}),
    ]
    selection = select_recommender(rows, candidates=candidates, blend=("ease", "popularity"), rerank=(), k=3)
    table = selection.table
    assert set(table.index) == {"popularity", "ease", "item_knn", BLEND}
    assert selection.name != "popularity" and selection.name == table.index[0]
    assert table.loc[selection.name, "validation_ndcg@3"] == table["validation_ndcg@3"].max()
    assert table.loc["ease", "ndcg@3"] > table.loc["popularity", "ndcg@3"]
    assert table["users"].eq(2 * USERS_PER_GROUP).all()
    assert len(selection.model.user_ids_) == rows["profile_id"].nunique()  # refitted on every row
    user = int(rows["profile_id"].iloc[0])
    assert {half_of(i) for i in selection.model.recommend(user, n=2)["item_id"]} == {0}


def test_selection_reports_the_reranker_over_the_tuned_families() -> None:
    rows = checkerboard(seed=3, seen_per_user=7)
    candidates = [Candidate("popularity", PopularityRecommender, {"half_life_days": [None]}),
                  Candidate("ease", EASERecommender, {"l2": [1.0, 10.0]})]
    table = select_recommender(rows, candidates=candidates, blend=(), k=3).table
    assert set(table.index) == {"popularity", "ease", RERANK}
    assert table.loc[RERANK, "ndcg@3"] > table.loc["popularity", "ndcg@3"]


def test_selection_needs_the_baseline() -> None:
    with pytest.raises(ValueError, match="popularity"):
        select_recommender(checkerboard(), candidates=[Candidate("ease", EASERecommender)])
