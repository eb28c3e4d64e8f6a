"""A learned re-ranker over the candidates of several recommenders (two-stage recommendation).

Stage 1, retrieval: every retriever (EASE, item-kNN, session, ALS, trending popularity, ...)
scores every item; a user's candidates are the items that rank best in any of them.
Stage 2, ranking: a LightGBM LambdaRank model orders the candidates from features no single
retriever combines:

* each retriever's score (standardised over the user's items) and rank, and the candidate's
  similarity to the user's latest item (the first personalised retriever's item-to-item score):
  what comes next follows what came last;
* the item's reach (share of users), its recent attention at several time scales (share of the
  votes decayed with each of ``trend_half_lives_days``) and their ratio to its reach (rising or
  fading), and its age;
* the user's history length and the days since their last interaction;
* with a catalog (:attr:`Interactions.attributes`): the share of the user's items in the
  candidate's category and in its brand, and how far its price is from the user's usual price
  (log ratio) -- taste and spending level, which co-occurrence only approximates.

The ranker learns on temporal splits of the training data itself (each user's last discovered
items held out, :func:`models.recommend.split.leave_last_out`; with few users, the one before
too), with the retrievers fitted on the rest, then the retrievers are refitted on all of it:
nothing outside ``fit``'s data is seen.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightgbm
import numpy as np
import pandas as pd
from scipy import sparse, special

from models.recommend.base import Recommender, batches, mask_seen, top_n
from models.recommend.blend import standardize
from models.recommend.data import Interactions
from models.recommend.split import Split, leave_last_out, relevant_items

_CELLS = 4_000_000  # users x items of dense scores held at once per retriever (16 MB)
MIN_HISTORY = 1  # users with no item before their held-out ones teach the ranker nothing
# Scores of the items outside the candidates: below every candidate (>= 1), in retrieval order,
# and too small to count in a sum over items (affinity).
_OUTSIDE = 1e-6


class RerankRecommender(Recommender):
    """Candidates from ``retrievers``, ordered by a gradient-boosted model of "is this what comes next".

    Parameters
    ----------
    retrievers : mapping of str to Recommender
        Unfitted models (with their hyper-parameters); fitted twice, on the ranker's split and
        on all the data, as copies (the mapping's models stay unfitted).
    candidates : int
        Items per user the ranker orders.
    trend_half_lives_days : tuple of float
        Half-lives of the "recent attention" item features.
    n_estimators, learning_rate, num_leaves, min_child_samples : int or float
        LightGBM's.
    objective : {"binary", "lambdarank"}
        Pointwise log-loss (steadier with few users) or LambdaRank over each user's candidates.
    max_train_users : int
        Users sampled for the ranker's training rows (``candidates`` rows each).
    max_folds : int
        With fewer users than that, the ranker also learns from each user's second-to-last
        discovery (the retrievers refitted without it), and so on, up to ``max_folds`` splits.
    random_state : int
    """

    def __init__(self, retrievers: Mapping[str, Recommender], candidates: int = 50,
                 trend_half_lives_days: tuple[float, ...] = (1.0, 7.0, 30.0),
                 n_estimators: int = 400, learning_rate: float = 0.03, num_leaves: int = 3,
                 min_child_samples: int = 50, max_train_users: int = 20_000, max_folds: int = 3,
                 objective: str = "binary", random_state: int = 0) -> None:
        self.retrievers = retrievers
        self.candidates = candidates
        self.trend_half_lives_days = trend_half_lives_days
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.max_train_users = max_train_users
        self.max_folds = max_folds
        self.objective = objective
        self.random_state = random_state

    def _learn(self, data: Interactions) -> None:
        if not self.retrievers:
            raise ValueError("a re-ranker needs at least one retriever")
        features, labels = [], []
        rows, wanted = _rows(data), self.max_train_users
        for _ in range(self.max_folds):
            split = leave_last_out(rows, n=1, min_history=MIN_HISTORY)
            if split.targets.empty:
                break
            x, y = self._examples(data, split, wanted)
            features.append(x)
            labels.append(y)
            wanted -= split.targets["profile_id"].nunique()
            if wanted <= 0:
                break  # enough users: an earlier split would only cost another fit of every retriever
            rows = split.train
        if not labels or not np.concatenate(labels).any():
            raise ValueError("too little history for the re-ranker's own split: nothing for it to learn")
        x, y = np.vstack(features), np.concatenate(labels)
        kind = lightgbm.LGBMRanker if self.objective == "lambdarank" else lightgbm.LGBMClassifier
        ranker = kind(
            objective=self.objective, n_estimators=self.n_estimators, learning_rate=self.learning_rate,
            num_leaves=self.num_leaves, min_child_samples=self.min_child_samples, subsample=0.8, subsample_freq=1,
            colsample_bytree=0.8, random_state=self.random_state, n_jobs=1, verbose=-1,
        )
        if self.objective == "lambdarank":
            ranker.fit(x, y, group=np.full(len(y) // self.candidates, self.candidates))
        else:
            ranker.fit(x, y)
        self.ranker_ = ranker
        self.stage_ = _Stage.fit(self, data)

    def _examples(self, data: Interactions, split: Split, most_users: int) -> tuple[np.ndarray, np.ndarray]:
        """Feature rows and labels (the held-out item or not) of the candidates of at most
        ``most_users`` users of ``split``, the retrievers fitted on its training rows."""
        inner = Interactions.from_frame(split.train, as_of=data.as_of, half_life_days=None, item_ids=data.item_ids,
                                        catalog=data.attributes)
        stage = _Stage.fit(self, inner)
        users, relevant = relevant_items(inner, split.targets)
        if len(users) > most_users:
            keep = np.sort(np.random.default_rng(self.random_state).choice(len(users), most_users, replace=False))
            users, relevant = users[keep], relevant[keep]
        features, labels = [], []
        for rows in batches(np.arange(len(users)), _batch(data)):
            candidates, found, _ = stage.features(users[rows])
            hit = np.take_along_axis(relevant[rows][:, : data.n_items].toarray(), candidates, axis=1)
            useful = hit.any(axis=1)  # a user with no target among the candidates teaches the ranker nothing
            features.append(found.reshape(len(rows), self.candidates, -1)[useful].reshape(-1, found.shape[1]))
            labels.append(hit[useful].ravel())
        return np.vstack(features), np.concatenate(labels).astype(np.int32)

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return np.vstack([self._scores(rows) for rows in batches(users, _batch(self.data_))])

    def _scores(self, users: np.ndarray) -> np.ndarray:
        candidates, found, retrieval = self.stage_.features(users)
        predicted = np.asarray(self.ranker_.predict(found, raw_score=True)).reshape(len(users), self.candidates)
        predicted = predicted.astype(np.float32)
        # Outside the candidates: retrieval order, squeezed into (0, _OUTSIDE); candidates from 1 up.
        scores = (_OUTSIDE * special.expit(retrieval)).astype(np.float32)
        np.put_along_axis(scores, candidates, 1.0 + predicted - predicted.min(axis=1, keepdims=True), axis=1)
        return scores

    def item_scores(self, items: np.ndarray) -> np.ndarray:
        return sum(standardize(model.item_scores(items)) for model in self.stage_.models.values())


class _Stage:
    """Retrievers fitted on one :class:`Interactions` and the item and user features of that data."""

    def __init__(self, owner: RerankRecommender, data: Interactions, models: dict[str, Recommender]) -> None:
        self.owner = owner
        self.data = data
        self.models = models
        self.item_features = _item_features(data, owner.trend_half_lives_days)
        self.user_features = _user_features(data)
        latest = data.events.groupby("user", sort=True)["item"].last()
        self.latest = np.full(data.n_users, -1)
        self.latest[latest.index.to_numpy()] = latest.to_numpy()
        self.follower = next((model for model in models.values() if model.personalized), None)
        self.taste = _Taste.of(data)

    @classmethod
    def fit(cls, owner: RerankRecommender, data: Interactions) -> _Stage:
        models = {name: type(model)(**model.get_params()).fit(data) for name, model in owner.retrievers.items()}
        return cls(owner, data, models)

    def features(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The users' candidates ``(users, candidates)``, their feature rows ``(users * candidates, features)``
        and the retrieval score of every item ``(users, items)``: the sum of the retrievers'
        standardised scores, -inf for seen items."""
        n = self.owner.candidates
        seen = self.data.seen[users]
        standardized, tops = [], []
        for model in self.models.values():
            scores = standardize(model.user_scores(users))
            scores[~np.isfinite(scores)] = 0.0
            masked = scores.copy()
            mask_seen(masked, seen)
            standardized.append(scores)
            tops.append(top_n(masked, n)[0])
        # Candidates: each retriever's first few, then by the sum of scores; never a seen item.
        retrieval = np.clip(sum(standardized), -100, 100)
        mask_seen(retrieval, seen)
        candidates, _ = top_n(_first_of_each(retrieval, tops, n // len(self.models)), n)
        candidates = np.where(candidates >= 0, candidates, 0)  # a tiny catalog: pad with item 0, scored low
        pick = lambda matrix: np.take_along_axis(matrix, candidates, axis=1).ravel()  # noqa: E731
        # A candidate's rank in each retriever's top ``n`` (``n`` when outside): small arrays, not users x items.
        ranks = [_rank_in(candidates, top, n) for top in tops]
        best_rank = np.minimum.reduce(ranks)
        columns = [pick(m) for m in standardized] + [rank.ravel() for rank in ranks]
        columns.append(best_rank.ravel())
        columns.append(pick(self._after_latest(users)))
        columns += [self.item_features[candidates.ravel(), j] for j in range(self.item_features.shape[1])]
        columns += [np.repeat(self.user_features[users, j], n) for j in range(self.user_features.shape[1])]
        columns += self.taste.features(self.data.seen[users], candidates)
        return candidates, np.column_stack(columns).astype(np.float32), retrieval


    def _after_latest(self, users: np.ndarray) -> np.ndarray:
        """``(users, items)``: standardised similarity of every item to each user's latest item."""
        latest = self.latest[users]
        found = np.zeros((len(users), self.data.n_items), dtype=np.float32)
        if self.follower is not None and (latest >= 0).any():
            found[latest >= 0] = standardize(self.follower.item_scores(latest[latest >= 0]))
        found[~np.isfinite(found)] = 0.0
        return found


class _Taste:
    """The user's leaning to a candidate's category, brand and price level (NaN without a catalog)."""

    def __init__(self, groups: list[sparse.csr_matrix], codes: list[np.ndarray], log_price: np.ndarray,
                 reach: np.ndarray | None = None) -> None:
        self.groups = groups  # items x values, one-hot, per attribute
        self.codes = codes  # value of each item, -1 when unknown
        self.log_price = log_price  # NaN when unknown
        # Each item's share of its category's / brand's users: "popular among its kind".
        self.standing = [] if reach is None else [
            np.where(code >= 0, reach / np.maximum((group @ (group.T @ reach)), 1.0), np.nan)
            for group, code in zip(groups, codes, strict=True)]

    @classmethod
    def of(cls, data: Interactions) -> _Taste:
        attributes = data.attributes
        if attributes is None:
            return cls([], [], np.full(data.n_items, np.nan))
        groups, codes = [], []
        for name in ("category", "brand"):
            code, values = pd.factorize(attributes[name], use_na_sentinel=True)
            known = code >= 0
            groups.append(sparse.csr_matrix((np.ones(known.sum(), dtype=np.float32), (np.flatnonzero(known), code[known])),
                                            shape=(data.n_items, max(len(values), 1))))
            codes.append(code)
        price = attributes["price"].to_numpy(dtype="float64")
        reach = np.asarray(data.seen.sum(axis=0)).ravel().astype(np.float64)
        return cls(groups, codes, np.log(np.where(price > 0, price, np.nan)), reach)

    def features(self, seen: sparse.csr_matrix, candidates: np.ndarray) -> list[np.ndarray]:
        """Six columns over the ``(users, candidates)`` pairs, row-major."""
        size = candidates.size
        if not self.groups:
            return [np.full(size, np.nan)] * 6
        had = seen.astype(np.float32)
        count = np.maximum(np.asarray(had.sum(axis=1)), 1.0)
        columns = []
        for group, code in zip(self.groups, self.codes, strict=True):
            share = np.asarray((had @ group).todense()) / count
            value = code[candidates]
            found = np.take_along_axis(share, np.maximum(value, 0), axis=1)
            columns.append(np.where(value >= 0, found, np.nan).ravel())
        columns += [standing[candidates].ravel() for standing in self.standing]
        priced = np.isfinite(self.log_price)
        usual = (had @ np.where(priced, self.log_price, 0.0)) / np.maximum(had @ priced.astype(np.float32), 1e-9)
        usual = np.where(np.asarray(had @ priced.astype(np.float32)) > 0, usual, np.nan)
        gap = (self.log_price[candidates] - usual[:, None]).ravel()
        return [*columns, gap, np.abs(gap)]


def _first_of_each(retrieval: np.ndarray, tops: list[np.ndarray], first: int) -> np.ndarray:
    """``retrieval`` lowered by 1,000 per rank step, the rank being an item's best among the
    ``first`` of each retriever's ``tops`` (``first`` when in none): those come first, in rank order."""
    order = retrieval - np.float32(first) * 1e3
    for top in tops:
        rows, rank = np.nonzero(top[:, :first] >= 0)
        items = top[rows, rank]
        order[rows, items] = np.maximum(order[rows, items], retrieval[rows, items] - rank.astype(np.float32) * 1e3)
    return order


def _rank_in(candidates: np.ndarray, top: np.ndarray, n: int) -> np.ndarray:
    """``(users, candidates)`` float32: each candidate's position in the user's ``top`` row, ``n`` when absent."""
    same = candidates[:, :, None] == top[:, None, :]
    return np.where(same.any(axis=2), same.argmax(axis=2), n).astype(np.float32)


def _batch(data: Interactions) -> int:
    """Users per batch so that a dense score matrix stays near ``_CELLS``."""
    return max(1, _CELLS // max(data.n_items, 1))


def _rows(data: Interactions) -> pd.DataFrame:
    """``data``'s events as interaction rows (their weights already decayed to ``data.as_of``)."""
    events = data.events
    return pd.DataFrame({"profile_id": data.user_ids[events["user"].to_numpy()],
                         "item_id": data.item_ids[events["item"].to_numpy()],
                         "timestamp": events["timestamp"], "weight": events["weight"]})


def _item_features(data: Interactions, half_lives_days: tuple[float, ...]) -> np.ndarray:
    """Per item: reach (share of users), age in days (since its first interaction), and per
    half-life its recent attention (share of the decayed votes) and that share's log ratio to its
    share of reach."""
    events = data.events
    item = events["item"].to_numpy()
    reach = np.asarray(data.seen.sum(axis=0)).ravel() / max(data.n_users, 1)
    age = (pd.Timestamp(data.as_of) - events["timestamp"]).dt.total_seconds().to_numpy() / 86400.0
    oldest = np.zeros(data.n_items)
    np.maximum.at(oldest, item, age)
    columns = [reach, oldest]
    for half_life in half_lives_days:
        votes = np.bincount(item, weights=np.exp2(-np.maximum(age, 0.0) / half_life), minlength=data.n_items)
        attention = votes / max(votes.sum(), 1e-12)
        columns += [attention, np.log((attention + 1e-6) / (reach / max(reach.sum(), 1e-12) + 1e-6))]
    return np.column_stack(columns)


def _user_features(data: Interactions) -> np.ndarray:
    """Per user: log of distinct items, days since their last interaction."""
    events = data.events
    latest = events.groupby("user", sort=True)["timestamp"].max()
    idle = np.zeros(data.n_users)
    idle[latest.index.to_numpy()] = (pd.Timestamp(data.as_of) - latest).dt.total_seconds().to_numpy() / 86400.0
    return np.column_stack([np.log1p(np.diff(data.seen.indptr)), idle])
