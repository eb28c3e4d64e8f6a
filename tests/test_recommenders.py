"""Every recommender keeps the one contract, on a checkerboard whose answer is known.

Two groups of users like disjoint halves of the catalog (implicit's checkerboard test): a
personalised model recommends from the user's own half, never an item the user has seen, and
finds an item's neighbours in its half. Popularity's answer is the most popular unseen items.
"""

from __future__ import annotations

import inspect
import warnings
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from models.recommend import (
    ALSRecommender,
    BlendRecommender,
    BPRRecommender,
    EASERecommender,
    Filters,
    Interactions,
    ItemKNNRecommender,
    PopularityRecommender,
    Recommender,
    RerankRecommender,
    SessionRecommender,
    item_mask,
)
from models.recommend.filters import ItemRules
from models.recommend.serve import Answer, Ask, RecommenderBundle, ServingModel, precompute
from tests.recommend_data import AS_OF, COLUMNS, HALF, ITEMS, USERS_PER_GROUP, checkerboard, half_of, item_id

MODELS = {
    "als": lambda: ALSRecommender(factors=2, regularization=0.1, alpha=10.0, iterations=20),
    "bpr": lambda: BPRRecommender(factors=8, learning_rate=0.01, iterations=300),
    "knn_cosine": lambda: ItemKNNRecommender(k=10, weighting="cosine"),
    "knn_bm25": lambda: ItemKNNRecommender(k=10, weighting="bm25"),
    "ease": lambda: EASERecommender(l2=5.0),
    "session": lambda: SessionRecommender(steps=2, history=3),
    "popularity": lambda: PopularityRecommender(half_life_days=None),
    # Sixty users teach a ranker little: personal retrievers only, so the candidates are the user's half first.
    "rerank": lambda: RerankRecommender({"ease": EASERecommender(l2=5.0), "session": SessionRecommender()},
                                        candidates=12, n_estimators=50, min_child_samples=5),
    "blend": lambda: BlendRecommender(
        {"ease": EASERecommender(l2=5.0), "session": SessionRecommender(), "popularity": PopularityRecommender()},
        {"ease": 1.0, "session": 0.5, "popularity": 0.1},
    ),
}


@pytest.fixture(scope="module")
def data() -> Interactions:
    return Interactions.from_frame(checkerboard(), as_of=AS_OF)


@pytest.fixture(scope="module", params=list(MODELS))
def model(request: pytest.FixtureRequest, data: Interactions) -> Recommender:
    return MODELS[request.param]().fit(data)


class TestRecommenderContract:
    def test_follows_scikit_learn_conventions(self, model: Recommender, data: Interactions) -> None:
        fresh = type(model)(**model.get_params())
        init_names = set(inspect.signature(type(model).__init__).parameters) - {"self"}
        assert set(fresh.get_params()) == init_names  # __init__ stores its arguments, nothing else
        assert fresh.fit(data) is fresh
        assert set(vars(fresh)) - init_names == {name for name in vars(fresh) if name.endswith("_")}

    def test_recommends_n_unseen_items_best_first(self, model: Recommender, data: Interactions) -> None:
        for user in data.user_ids[::7]:
            found = model.recommend(int(user), n=4)
            seen = set(data.item_ids[data.seen[data.user_positions([user])[0]].indices])
            assert len(found) == 4
            assert not seen & set(found["item_id"])
            assert found["score"].is_monotonic_decreasing

    def test_recommends_from_the_users_own_half(self, model: Recommender, data: Interactions) -> None:
        if not model.personalized:
            pytest.skip("popularity is the same for everyone: see test_popularity_ranks_by_people")
        for user in data.user_ids:
            found = model.recommend(int(user), n=3)
            assert {half_of(item) for item in found["item_id"]} == {(user - 1000) // USERS_PER_GROUP}, user

    def test_similar_items_come_from_the_same_half(self, model: Recommender) -> None:
        if not model.personalized:
            pytest.skip("popularity has no notion of similarity")
        for item in range(ITEMS):
            found = model.similar_items(item_id(item), n=3)
            assert item_id(item) not in set(found["item_id"])
            assert {half_of(other) for other in found["item_id"]} == {item // HALF}, item

    def test_keeps_to_the_allowed_items_and_exclusions(self, model: Recommender, data: Interactions) -> None:
        catalog = pd.DataFrame({"category": ["odd" if i % 2 else "even" for i in range(ITEMS)], "brand": "b",
                                "price": np.arange(ITEMS, dtype=float)}, index=[item_id(i) for i in range(ITEMS)])
        allowed = item_mask(catalog, model.item_ids_, categories=["odd"], price_range=(0.0, 15.0))
        filters = Filters(allowed=allowed, exclude=(item_id(1),))
        user = int(data.user_ids[0])
        found = model.recommend(user, n=ITEMS, filters=filters)
        seen = set(data.item_ids[data.seen[0].indices])
        expected = {item_id(i) for i in range(3, 16, 2)} - seen
        assert set(found["item_id"]) <= expected
        assert len(found) == len(expected) or not model.personalized
        similar = model.similar_items(item_id(3), n=ITEMS, filters=filters)
        assert set(similar["item_id"]) <= {item_id(i) for i in range(5, 16, 2)}

    def test_can_include_seen_items(self, model: Recommender, data: Interactions) -> None:
        found = model.recommend(int(data.user_ids[0]), n=ITEMS, filters=Filters(exclude_seen=False))
        assert len(found) == ITEMS

    def test_unknown_user_or_item_is_a_key_error(self, model: Recommender) -> None:
        with pytest.raises(KeyError):
            model.recommend(1, n=3)
        with pytest.raises(KeyError):
            model.similar_items("nope", n=3)

    def test_fitting_again_gives_the_same_answer(self, model: Recommender, data: Interactions) -> None:
        again = type(model)(**model.get_params()).fit(data)
        user = int(data.user_ids[3])
        pd.testing.assert_frame_equal(again.recommend(user, n=5), model.recommend(user, n=5), rtol=1e-4)


def test_popularity_ranks_by_people(data: Interactions) -> None:
    model = PopularityRecommender(half_life_days=None).fit(data)
    people = np.asarray(data.seen.sum(axis=0)).ravel()
    user = int(data.user_ids[-1])
    found = model.recommend(user, n=3)
    unseen = np.setdiff1d(np.arange(ITEMS), data.seen[data.n_users - 1].indices)
    best = unseen[np.argsort(-people[unseen], kind="stable")][:3]
    assert list(found["score"]) == sorted(people[best].tolist(), reverse=True)


def test_trending_popularity_favours_recent_people() -> None:
    old = [(1, "a", AS_OF - timedelta(days=60), 1.0), (2, "a", AS_OF - timedelta(days=61), 1.0)]
    new = [(3, "b", AS_OF - timedelta(days=1), 1.0)]
    data = Interactions.from_frame(pd.DataFrame(old + new, columns=COLUMNS),
                                   as_of=AS_OF)
    assert list(PopularityRecommender(half_life_days=None).fit(data).popularity_) == [2.0, 1.0]
    assert PopularityRecommender(half_life_days=7).fit(data).popularity_.argmax() == 1


def test_session_model_follows_what_comes_next() -> None:
    """After "a" people look at "b" (in the same session), so a user whose last item is "a" gets "b"."""
    rows = []
    for user in range(10):
        start = AS_OF - timedelta(days=user + 1)
        rows += [(user, "a", start, 1.0), (user, "b", start + timedelta(minutes=1), 1.0),
                 (user, "c", start + timedelta(hours=5), 1.0)]  # a new session: not linked to "b"
    rows += [(99, "c", AS_OF - timedelta(hours=2), 1.0), (99, "a", AS_OF - timedelta(hours=1), 1.0)]
    data = Interactions.from_frame(pd.DataFrame(rows, columns=COLUMNS), as_of=AS_OF)
    model = SessionRecommender(backward=0.0).fit(data)
    assert model.recommend(99, n=1)["item_id"].tolist() == ["b"]
    assert model.similar_items("a", n=1)["item_id"].tolist() == ["b"]
    assert model.similar_items("b", n=2)["score"].tolist() == [0.0, 0.0]  # nothing follows "b" in a session


def test_interactions_sum_decayed_weights_and_remember_every_seen_pair() -> None:
    rows = pd.DataFrame(
        [(7, "x", AS_OF, 1.0), (7, "x", AS_OF - timedelta(days=10), 2.0), (7, "y", AS_OF, -1.0), (8, "y", AS_OF, 3.0)],
        columns=COLUMNS,
    )
    data = Interactions.from_frame(rows, as_of=AS_OF, half_life_days=10)
    assert list(data.user_ids) == [7, 8] and list(data.item_ids) == ["x", "y"]
    assert data.matrix.toarray().tolist() == [[2.0, 0.0], [0.0, 3.0]]  # 1 + 2/2; a bad review is no taste
    assert data.seen.toarray().tolist() == [[True, True], [False, True]]
    assert list(data.user_positions([8, 9])) == [1, -1]


def test_ease_keeps_the_most_reached_items_of_a_catalog_too_large_for_memory(data: Interactions) -> None:
    full = EASERecommender(l2=5.0).fit(data)
    small = EASERecommender(l2=5.0, max_items=HALF).fit(data)
    reach = np.asarray(data.seen.sum(axis=0)).ravel()
    assert set(small.kept_) == set(np.argsort(-reach, kind="stable")[:HALF])
    outside = np.setdiff1d(np.arange(ITEMS), small.kept_)
    users = np.arange(data.n_users)
    assert (small.user_scores(users)[:, outside] == 0).all() and (small.item_scores(outside) == 0).all()
    assert not np.allclose(small.user_scores(users), full.user_scores(users))


def test_precomputed_answers_are_the_live_answers(data: Interactions) -> None:
    """The API answers known profiles from the lists stored at training; they must be what scoring
    live gives, with the request's rules and the items seen since training applied."""
    model = EASERecommender(l2=5.0).fit(data)
    popularity = PopularityRecommender().fit(data)
    catalog = pd.DataFrame({"category": ["odd" if i % 2 else "even" for i in range(ITEMS)], "brand": "b",
                            "price": np.arange(ITEMS, dtype=float), "available": True},
                           index=[item_id(i) for i in range(ITEMS)])
    live = ServingModel(RecommenderBundle("ease", model, popularity, catalog, AS_OF), "1")
    stored = ServingModel(RecommenderBundle("ease", model, popularity, catalog, AS_OF, *precompute(model, n=6)), "2")
    # Half the profiles precomputed, the least recently active scored on their first request.
    partly = ServingModel(RecommenderBundle("ease", model, popularity, catalog, AS_OF,
                                            *precompute(model, n=6, profiles=data.n_users // 2)), "3")
    assert (partly.bundle.top_rows >= 0).sum() == data.n_users // 2
    asks = [Ask(n=3), Ask(n=3, rules=ItemRules(categories=["odd"])), Ask(n=2, max_per_category=1), Ask(n=8)]
    for user in data.user_ids[::5]:
        for ask in asks:
            for recent in ([], [item_id(int(user) % ITEMS)]):
                expected = ranked(live.for_profile(int(user), recent, ask))
                assert ranked(stored.for_profile(int(user), recent, ask)) == expected
                assert ranked(partly.for_profile(int(user), recent, ask)) == expected


def ranked(answer: Answer) -> list[tuple[str | None, float]]:
    """The scores in order and the item of each score above 0 (the other half's items tie at 0, in any order)."""
    return [(str(x["item_id"]) if float(x["score"]) > 0 else None, float(x["score"])) for x in answer.items]


def test_reranker_learns_the_catalog_taste_the_retrievers_miss() -> None:
    """Everyone views items at random, but buys (their latest discoveries) in their favourite
    category: co-occurrence can't tell, the share of the user's items in the candidate's category can."""
    rng = np.random.default_rng(4)
    categories = np.array(["red", "blue"])
    catalog = pd.DataFrame({"category": categories[np.arange(40) % 2], "brand": "b", "price": 10.0},
                           index=[f"x{i:02d}" for i in range(40)])
    rows = []
    for user in range(300):
        start = AS_OF - timedelta(days=int(rng.integers(2, 60)))
        liked = user % 2
        mine = [i for i in range(40) if i % 2 == liked]
        steps = list(rng.choice(40, 6, replace=False)) + list(rng.choice(mine, 3, replace=False))
        rows += [(user, f"x{i:02d}", start + timedelta(hours=h), 1.0) for h, i in enumerate(dict.fromkeys(steps))]
    data = Interactions.from_frame(pd.DataFrame(rows, columns=COLUMNS), as_of=AS_OF, catalog=catalog)
    retrievers = {"popularity": PopularityRecommender(None), "session": SessionRecommender()}
    model = RerankRecommender(retrievers, candidates=20, n_estimators=100, min_child_samples=10).fit(data)
    liked_share = []
    for user in data.user_ids[:60]:
        top = model.recommend(int(user), n=5)["item_id"].str[1:].astype(int)
        liked_share.append(np.mean(top % 2 == user % 2))
    assert np.mean(liked_share) > 0.8


def test_als_fits_without_a_blas_thread_warning(data: Interactions) -> None:
    # implicit warns (a RuntimeWarning in the middle of `cdp recs train`) when OpenBLAS runs
    # threads of its own during a fit; on a single-core machine there are none to warn about.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        MODELS["als"]().fit(data)
