"""Offline evaluation and model choice: temporal leave-last-N-out, ranking metrics, a search of
hyper-parameters on a validation split carved from the training data, a tuned blend and a
re-ranker over the tuned families (:mod:`models.recommend.rerank`).

Protocol (:func:`select_recommender`)::

    all rows ──leave last N out──► train ──leave last N out──► fit │ validation   (search, blend weights)
                                   test                                          (reported, never tuned on)

Every user with enough history keeps out the last ``N`` items they discovered (first
interaction latest) and everything they did from the first of those on; the model must find
those items. Other users' rows stay in training, as in the usual leave-last-out protocol.
Popularity is always one of the candidates, so every table has the baseline beside the models.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from models.recommend.base import Recommender, batches, mask_seen, top_n
from models.recommend.blend import BlendRecommender, standardize
from models.recommend.data import Interactions
from models.recommend.ease import EASERecommender
from models.recommend.factorization import ALSRecommender, BPRRecommender
from models.recommend.neighbours import ItemKNNRecommender
from models.recommend.popularity import PopularityRecommender
from models.recommend.rerank import RerankRecommender
from models.recommend.session import SessionRecommender
from models.recommend.split import leave_last_out, relevant_items, training_data

BLEND = "blend"
RERANK = "rerank"
BASELINE = "popularity"
RERANK_GRID: dict[str, list[Any]] = {}  # the ranker learns on its own split: its defaults, no search on top
RETRIEVERS = ("ease", "item_knn", "session", "als", BASELINE)  # the re-ranker's candidates come from these
_BLEND_CELLS = 50_000_000  # validation users x items x components held while tuning blend weights
_BLEND_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


# -- metrics ---------------------------------------------------------------------------------


def ranking_metrics(recommended: np.ndarray, relevant: sparse.csr_matrix, k: int) -> dict[str, float]:
    """Mean precision, recall, NDCG, MAP and hit rate at ``k`` over the rows (users).

    Parameters
    ----------
    recommended : numpy.ndarray
        ``(users, >= k)`` item positions, best first; -1 for an empty slot.
    relevant : scipy.sparse.csr_matrix
        ``(users, items)`` boolean: the items each user should have been shown (at least one).

    Notes
    -----
    Recall divides by all of a user's relevant items; NDCG's ideal ranking and MAP's normaliser
    use ``min(relevant, k)``, so a perfect list scores 1 whatever the number of relevant items.
    """
    top = recommended[:, :k]
    n_relevant = np.diff(relevant.indptr)
    if (n_relevant == 0).any():
        raise ValueError("every evaluated user needs at least one relevant item")
    hits = np.zeros(top.shape, dtype=bool)
    for rows in batches(np.arange(len(top)), 4096):
        dense = relevant[rows].toarray()
        hits[rows] = np.take_along_axis(dense, np.maximum(top[rows], 0), axis=1) & (top[rows] >= 0)
    ranks = np.arange(1, k + 1)
    discount = 1.0 / np.log2(ranks + 1)
    ideal = np.cumsum(discount)[np.minimum(n_relevant, k) - 1]
    found = hits.sum(axis=1)
    precision_at = np.cumsum(hits, axis=1) / ranks
    return {
        f"ndcg@{k}": float(np.mean((hits * discount).sum(axis=1) / ideal)),
        f"hr@{k}": float(np.mean(found > 0)),
        f"precision@{k}": float(np.mean(found / k)),
        f"recall@{k}": float(np.mean(found / n_relevant)),
        f"map@{k}": float(np.mean((precision_at * hits).sum(axis=1) / np.minimum(n_relevant, k))),
    }


def evaluate(model: Recommender, targets: pd.DataFrame, *, k: int = 10) -> dict[str, float]:
    """Ranking metrics of a fitted model on ``targets``, plus catalog coverage and popularity bias.

    Returns
    -------
    dict
        :func:`ranking_metrics`; ``coverage@k``: share of the model's items recommended to
        someone; ``popularity@k``: mean share of training users who had interacted with a
        recommended item (higher is more biased to the popular); ``users``: users evaluated
        (those with a target among the model's users).
    """
    users, relevant = relevant_items(model.data_, targets)
    top, _ = model.recommend_positions(users, k)
    return _summary(top, relevant, model.data_, k)


def _summary(top: np.ndarray, relevant: sparse.csr_matrix, data: Interactions, k: int) -> dict[str, float]:
    shown = top[top >= 0]
    reach = np.asarray(data.seen.sum(axis=0)).ravel() / max(data.n_users, 1)
    return {
        **ranking_metrics(top, relevant, k),
        f"coverage@{k}": len(np.unique(shown)) / data.n_items,
        f"popularity@{k}": float(reach[shown].mean()) if len(shown) else float("nan"),
        "users": float(len(top)),
    }


# -- search and selection --------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A model family and the hyper-parameters to try (the grid's product)."""

    name: str
    build: Callable[..., Recommender]
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def settings(self) -> list[dict[str, Any]]:
        names = list(self.grid)
        return [dict(zip(names, values)) for values in product(*(self.grid[name] for name in names))]


def default_candidates() -> list[Candidate]:
    """Every model with a small grid each, sized for a couple of CPU cores."""
    return [
        Candidate(BASELINE, PopularityRecommender, {"half_life_days": [7.0, 30.0, None]}),
        Candidate("als", ALSRecommender, {"factors": [32, 64], "regularization": [0.01, 0.1], "alpha": [1.0, 5.0, 20.0]}),
        Candidate("bpr", BPRRecommender, {"factors": [32, 64], "learning_rate": [0.01, 0.05]}),
        Candidate("item_knn", ItemKNNRecommender, {"weighting": ["cosine", "bm25"], "k": [20, 100, 500]}),
        Candidate("ease", EASERecommender, {"l2": [10.0, 50.0, 200.0, 500.0, 1000.0]}),
        Candidate("session", SessionRecommender,
                  {"steps": [1, 3], "history": [1, 3, 5], "popularity_penalty": [0.0, 0.25, 0.5]}),
    ]


@dataclass
class Selection:
    """What :func:`select_recommender` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per family and the blend, index ``model``: ``validation_ndcg@k`` (what chose),
        the test metrics of :func:`evaluate`, ``fit_seconds`` (on the training split),
        ``params``; sorted by validation NDCG, best first.
    name : str
        The chosen row.
    model : Recommender
        The chosen model with its hyper-parameters, fitted on all the rows.
    """

    table: pd.DataFrame
    name: str
    model: Recommender


def select_recommender(
    rows: pd.DataFrame,
    *,
    candidates: Sequence[Candidate] | None = None,
    blend: Sequence[str] = ("ease", "item_knn", "session", "als", "bpr", BASELINE),
    rerank: Sequence[str] = RETRIEVERS,
    rerank_grid: Mapping[str, Sequence[Any]] | None = None,
    k: int = 10,
    n_last: int = 1,
    min_history: int = 3,
    half_life_days: float | None = 60.0,
    catalog: pd.DataFrame | None = None,
) -> Selection:
    """Tune every candidate, a blend and a re-ranker on validation, report them on test, refit the best.

    Parameters
    ----------
    rows : pandas.DataFrame
        Interactions (``profile_id, item_id, timestamp, weight``), e.g. from
        :func:`features.interactions.read_interactions`.
    candidates : sequence of Candidate, optional
        Default :func:`default_candidates`; must include ``popularity``, the baseline.
    blend : sequence of str
        Families whose best models are blended (weights tuned on validation); empty for none.
    rerank : sequence of str
        Families whose best models are the retrievers of a :class:`RerankRecommender` (its ranker
        learns on a split of the training data it is given); empty for none. Skipped when the data
        are too few for the ranker's own split.
    rerank_grid : mapping, optional
        The re-ranker's hyper-parameters to try (default :data:`RERANK_GRID`).
    k : int
        Cut-off of the metrics; the choice is by validation NDCG@k.
    n_last, min_history : int
        See :func:`leave_last_out`; the same for the test and the validation split.
    half_life_days : float, optional
        Time decay of the interaction weights.
    catalog : pandas.DataFrame, optional
        The items' category, brand and price (:attr:`Interactions.attributes`), for the re-ranker.
    """
    candidates = list(default_candidates() if candidates is None else candidates)
    if BASELINE not in {c.name for c in candidates}:
        raise ValueError("the candidates must include the popularity baseline")
    items = np.unique(rows["item_id"].to_numpy(dtype=object))
    outer = leave_last_out(rows, n=n_last, min_history=min_history)
    inner = leave_last_out(outer.train, n=n_last, min_history=min_history)
    fit_data = training_data(inner, item_ids=items, half_life_days=half_life_days, catalog=catalog)
    tuned = {c.name: _tune(c, fit_data, inner.targets, k) for c in candidates}
    choices = {name: (found.build, found.params, found.score) for name, found in tuned.items()}
    blended = [name for name in blend if name in tuned]
    if len(blended) > 1:
        weights, score = _tune_blend({name: tuned[name].model for name in blended}, fit_data, inner.targets, k)
        choices[BLEND] = (lambda **weights: _blend_of(tuned, weights), weights, score)
    retrievers = [name for name in rerank if name in tuned]
    if retrievers:
        build = _rerank_builder({name: tuned[name] for name in retrievers})
        try:
            found = _tune(Candidate(RERANK, build, RERANK_GRID if rerank_grid is None else rerank_grid),
                          fit_data, inner.targets, k)
        except ValueError:
            pass  # too little history for the ranker's own split: the other rows still compete
        else:
            choices[RERANK] = (found.build, found.params, found.score)

    train_data = training_data(outer, item_ids=items, half_life_days=half_life_days, catalog=catalog)
    report = []
    for name, (build, params, score) in choices.items():
        started = time.perf_counter()
        model = build(**params).fit(train_data)
        seconds = time.perf_counter() - started
        report.append({"model": name, f"validation_ndcg@{k}": score, **evaluate(model, outer.targets, k=k),
                       "fit_seconds": seconds, "params": params})
    table = pd.DataFrame(report).set_index("model").sort_values(f"validation_ndcg@{k}", ascending=False)
    best = str(table.index[0])
    build, params, _ = choices[best]
    all_data = Interactions.from_frame(rows, as_of=rows["timestamp"].max().to_pydatetime(),
                                       half_life_days=half_life_days, item_ids=items, catalog=catalog)
    return Selection(table, best, build(**params).fit(all_data))


@dataclass(frozen=True)
class _Tuned:
    build: Callable[..., Recommender]
    params: dict[str, Any]
    score: float
    model: Recommender  # fitted on the validation split's training rows


def _tune(candidate: Candidate, data: Interactions, targets: pd.DataFrame, k: int) -> _Tuned:
    best: _Tuned | None = None
    for params in candidate.settings():
        model = candidate.build(**params).fit(data)
        score = evaluate(model, targets, k=k)[f"ndcg@{k}"]
        if best is None or score > best.score:
            best = _Tuned(candidate.build, params, score, model)
    assert best is not None, f"{candidate.name} has an empty grid"
    return best


def _rerank_builder(tuned: Mapping[str, _Tuned]) -> Callable[..., RerankRecommender]:
    """Builds a re-ranker over fresh copies of the tuned retrievers, from the ranker's own parameters."""
    def build(**params: Any) -> RerankRecommender:
        return RerankRecommender({name: found.build(**found.params) for name, found in tuned.items()}, **params)
    return build


def _blend_of(tuned: Mapping[str, _Tuned], weights: Mapping[str, float]) -> BlendRecommender:
    components = {name: tuned[name].build(**tuned[name].params) for name in weights}
    return BlendRecommender(components, dict(weights))


def _tune_blend(
    fitted: Mapping[str, Recommender], data: Interactions, targets: pd.DataFrame, k: int
) -> tuple[dict[str, float], float]:
    """Blend weights by coordinate ascent on validation NDCG@k, from the best single model.

    The components' standardised scores of the validation users are computed once; a sample
    of users keeps them under ``_BLEND_CELLS`` floats.
    """
    users, relevant = relevant_items(data, targets)
    most = max(1, _BLEND_CELLS // (data.n_items * len(fitted)))
    if len(users) > most:
        keep = np.sort(np.random.default_rng(0).choice(len(users), most, replace=False))
        users, relevant = users[keep], relevant[keep]
    scores = {name: standardize(model.user_scores(users)) for name, model in fitted.items()}
    seen = data.seen[users]

    def ndcg(weights: Mapping[str, float]) -> float:
        total = sum(w * scores[name] for name, w in weights.items() if w)
        total = np.array(total, dtype=np.float32)
        mask_seen(total, seen)
        return ranking_metrics(top_n(total, k)[0], relevant, k)[f"ndcg@{k}"]

    singles = {name: ndcg({name: 1.0}) for name in fitted}
    lead = max(singles, key=singles.__getitem__)
    weights = {name: float(name == lead) for name in fitted}
    best = singles[lead]
    for _ in range(2):
        for name in fitted:
            if name == lead:
                continue  # the lead's weight fixes the scale
            for w in _BLEND_WEIGHTS:
                score = ndcg({**weights, name: w})
                if score > best:
                    best, weights = score, {**weights, name: w}
    return {name: w for name, w in weights.items() if w}, best
