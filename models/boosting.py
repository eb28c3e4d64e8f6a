"""What the LightGBM predictors share: the out-of-time split, the design matrix, the BTYD columns.

A training frame (:func:`features.build_training_frame`) stacks snapshots; the estimators take
its feature columns as ``X``, its ``label`` as ``y`` and its ``cutoff`` separately: the cutoff
orders the folds and is never a feature (a model must not learn the calendar of its training set).
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.btyd import MONETARY_COLUMN, RFM_COLUMNS, BtydFeatures

ID_COLUMNS = ("profile_id", "cutoff", "label")
BTYD_INPUTS = (*RFM_COLUMNS, MONETARY_COLUMN)


def feature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The feature columns of a training or scoring frame: everything but ``profile_id, cutoff, label``."""
    return frame.drop(columns=[c for c in ID_COLUMNS if c in frame.columns])


def cutoff_times(cutoff: np.ndarray | pd.Series) -> pd.Series:
    """Each row's cutoff as a UTC timestamp, indexed by row position."""
    return pd.to_datetime(pd.Series(np.asarray(cutoff)), utc=True)


def latest_cutoff(cutoff: np.ndarray | pd.Series) -> np.ndarray:
    """Mask of the rows of the latest cutoff."""
    cutoff = cutoff_times(cutoff)
    return (cutoff == cutoff.max()).to_numpy()


def out_of_time_split(cutoff: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the earlier cutoffs (to fit on) and of the latest one (to calibrate on)."""
    latest = latest_cutoff(cutoff)
    if latest.all():
        raise ValueError("an out-of-time split needs at least two cutoffs: earlier ones to fit, the latest to calibrate")
    return ~latest, latest


class BoostedModel:
    """Base of the LightGBM predictors: hyper-parameters, design matrix, contributions.

    Parameters
    ----------
    horizon_days : float
        The prediction window (for the BTYD columns).
    n_estimators : int
        Most boosting rounds; early stopping on the calibration fold picks fewer.
    learning_rate, num_leaves, min_child_samples, reg_lambda : float or int
        LightGBM's.
    btyd : bool
        Add the BTYD columns (:class:`models.btyd.BtydFeatures`) when the frame has the ``btyd`` set.
    random_state : int
        Seed of LightGBM's sampling.
    """

    def __init__(
        self,
        horizon_days: float,
        *,
        n_estimators: int = 600,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 40,
        reg_lambda: float = 1.0,
        btyd: bool = True,
        random_state: int = 0,
    ) -> None:
        self.horizon_days = horizon_days
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.btyd = btyd
        self.random_state = random_state

    def boosting_params(self) -> dict[str, Any]:
        """The hyper-parameters of this base class, to build a sibling model with the same ones."""
        return {
            "n_estimators": self.n_estimators, "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples, "reg_lambda": self.reg_lambda, "btyd": self.btyd,
            "random_state": self.random_state,
        }

    def _booster_params(self) -> dict[str, Any]:
        params = {k: v for k, v in self.boosting_params().items() if k != "btyd"}
        # Row and column subsampling steady the small folds; one thread: the machine is shared.
        return {**params, "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "n_jobs": 1, "verbose": -1}

    def _fit_design(self, X: pd.DataFrame, fit_rows: np.ndarray) -> pd.DataFrame:
        """Learn the categories and the BTYD models from ``X[fit_rows]``; the design of all of ``X``."""
        if any(c in X.columns for c in ID_COLUMNS):
            raise ValueError(f"X holds {', '.join(c for c in ID_COLUMNS if c in X.columns)}: pass feature_frame(frame)")
        self.feature_names_in_ = list(X.columns)
        self.categories_ = {c: sorted(X[c].dropna().astype(str).unique()) for c in X.columns if X[c].dtype == object}
        has_btyd = self.btyd and all(c in X.columns for c in BTYD_INPUTS)
        self.btyd_ = BtydFeatures(self.horizon_days).fit(X[fit_rows]) if has_btyd else None
        return self.design(X)

    def design(self, X: pd.DataFrame) -> pd.DataFrame:
        """The columns the booster sees: ``X``'s features (categories fixed at fit) and the BTYD ones."""
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the features the model was fitted on: {', '.join(missing)}")
        design = X[self.feature_names_in_].copy()
        for column, categories in self.categories_.items():
            design[column] = pd.Categorical(design[column].astype("string"), categories=categories)
        if self.btyd_ is not None:
            design = pd.concat([design, self.btyd_.transform(X)], axis=1)
        return design

    def _early_stopped(
        self, booster: lgb.LGBMModel, design: pd.DataFrame, y: np.ndarray, fit_rows: np.ndarray, stop_rows: np.ndarray
    ) -> lgb.LGBMModel:
        # Stopping on the later fold too: it is the out-of-time data the rounds must generalise to.
        return booster.fit(
            design[fit_rows], y[fit_rows], eval_X=(design[stop_rows],), eval_y=(y[stop_rows],),
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )

    @staticmethod
    def _refitted(booster: lgb.LGBMModel, design: pd.DataFrame, y: np.ndarray) -> lgb.LGBMModel:
        """A new booster of ``booster``'s parameters fitted on ``design, y`` for the rounds its early stopping kept."""
        rounds = max(1, booster.best_iteration_ or booster.n_estimators)
        return type(booster)(**{**booster.get_params(), "n_estimators": rounds}).fit(design, y)

    def _boosters(self) -> list[lgb.LGBMModel]:
        raise NotImplementedError

    def feature_importance(self) -> pd.Series:
        """Total gain per design column over the model's boosters, largest first."""
        gains = [pd.Series(b.booster_.feature_importance(importance_type="gain"), index=b.booster_.feature_name())
                 for b in self._boosters()]
        return pd.concat(gains, axis=1).sum(axis=1).sort_values(ascending=False)

    @staticmethod
    def _contributions(booster: lgb.LGBMModel, design: pd.DataFrame) -> pd.DataFrame:
        """Per-row SHAP contributions of a LightGBM model (raw score scale), bias column dropped."""
        values = booster.booster_.predict(design, pred_contrib=True)
        return pd.DataFrame(values[:, :-1], columns=design.columns, index=design.index)
