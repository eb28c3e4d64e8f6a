"""Buy 'Til You Die models: BG/NBD for repeat purchases and P(alive), Gamma-Gamma for spend.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive a
customer buys as a Poisson process of rate λ ~ Gamma(r, α); after each purchase they drop out
with probability p ~ Beta(a, b). Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"): order
values scatter around a customer's own mean, itself gamma across customers, independent of the
purchase process. Both are fitted by maximum likelihood over log-parameters with scipy, as
lifetimes and pymc-marketing do.

Inputs are the columns of the features' ``btyd`` set, in days: ``frequency`` (repeat purchase
days), ``recency`` (first to last purchase day) and ``T`` (first purchase day to the cutoff).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

RFM_COLUMNS = ("btyd_frequency", "btyd_recency", "btyd_T")
NO_DROPOUT = 1e-9  # a mean dropout probability a / (a + b) below this is none
MONETARY_COLUMN = "btyd_monetary_value"


def _rfm(X: np.ndarray | pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.asarray(X, dtype=float)
    if values.ndim != 2 or values.shape[1] != 3:
        raise ValueError("expected an array of shape (n, 3): frequency, recency, T")
    x, t_x, T = values.T
    if np.isnan(values).any() or (x < 0).any() or (t_x < 0).any() or (T < t_x).any():
        raise ValueError("frequency, recency and T must be finite with 0 <= recency <= T")
    return x, t_x, T


def _fit_log_params(
    negative_ll: Callable[[np.ndarray], float], n_params: int, penalizer: float
) -> tuple[np.ndarray, float]:
    """Minimise a negative log-likelihood over log-parameters (all parameters are positive)."""

    def objective(log_params: np.ndarray) -> float:
        value = negative_ll(np.exp(log_params)) + penalizer * float(np.sum(np.exp(log_params) ** 2))
        # Far from the optimum a likelihood's terms can overflow (inf - inf, or a spurious -inf): such
        # a point is rejected, not taken for the minimum nor left to stall Nelder-Mead's comparisons.
        return value if np.isfinite(value) else np.inf

    result = minimize(objective, np.zeros(n_params), method="Nelder-Mead",
                      options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-9})
    # Nelder-Mead finds the basin robustly; L-BFGS-B then polishes the optimum.
    polished = minimize(objective, result.x, method="L-BFGS-B")
    best = polished if polished.fun <= result.fun else result
    if not np.isfinite(best.fun):
        raise RuntimeError("the BTYD fit did not converge: too few or degenerate customers")
    return np.exp(best.x), float(best.fun)


class BetaGeoModel:
    """BG/NBD: expected repeat purchases and the probability that a customer is still alive.

    Parameters
    ----------
    penalizer : float
        L2 penalty on the parameters (lifetimes' ``penalizer_coef``); 0 is plain maximum likelihood.

    Attributes
    ----------
    r_, alpha_, a_, b_ : float
        Fitted parameters; ``alpha_`` in days.
    log_likelihood_ : float
        Mean log-likelihood per customer at the optimum (without the penalty).
    """

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def fit(self, X: np.ndarray | pd.DataFrame, y: None = None) -> BetaGeoModel:
        """Fit on customers' ``(frequency, recency, T)`` rows (days), shape ``(n, 3)``."""
        x, t_x, T = _rfm(X)
        if len(x) < 10 or not (x > 0).any():
            raise ValueError("BG/NBD needs at least 10 customers, some with repeat purchases")
        # Time in units of a tenth of the longest T keeps the optimiser's start (all ones) sane.
        scale = float(T.max()) / 10.0 or 1.0
        xs, ts, Ts = x, t_x / scale, T / scale

        def negative_ll(params: np.ndarray) -> float:
            r, alpha, a, b = params
            return -float(np.mean(_bgnbd_log_likelihood(r, alpha, a, b, xs, ts, Ts)))

        (r, alpha, a, b), _ = _fit_log_params(negative_ll, 4, self.penalizer)
        self.r_, self.alpha_, self.a_, self.b_ = float(r), float(alpha * scale), float(a), float(b)
        self.log_likelihood_ = float(np.mean(_bgnbd_log_likelihood(r, alpha * scale, a, b, x, t_x, T)))
        return self

    def probability_alive(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """P(still alive at T | frequency, recency, T); 1 for customers without a repeat purchase."""
        x, t_x, T = _rfm(X)
        return 1.0 / (1.0 + self._death_odds(x, t_x, T))

    def expected_purchases(self, X: np.ndarray | pd.DataFrame, t: float) -> np.ndarray:
        """Expected purchases in ``(T, T + t]`` (days) given each customer's history."""
        x, t_x, T = _rfm(X)
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        if a / (a + b) < NO_DROPOUT:
            # Nobody drops out (a, b -> 0, as fitted on recently active buyers): the gamma-Poisson
            # posterior rate. The general form's hypergeometric has a pole at a + b + x - 1 = 0.
            return (r + x) / (alpha + T) * t
        z = t / (alpha + T + t)
        ratio = ((alpha + T) / (alpha + T + t)) ** (r + x)
        alive_part = (a + b + (x - 1.0)) / (a - 1.0) * (1.0 - ratio * hyp2f1(r + x, b + x, a + b + (x - 1.0), z))
        return alive_part / (1.0 + self._death_odds(x, t_x, T))

    def probability_purchase(self, X: np.ndarray | pd.DataFrame, t: float) -> np.ndarray:
        """P(at least one purchase in ``(T, T + t]``): alive, and the gamma-Poisson clock ticks."""
        x, t_x, T = _rfm(X)
        alive = 1.0 / (1.0 + self._death_odds(x, t_x, T))
        silent_if_alive = ((self.alpha_ + T) / (self.alpha_ + T + t)) ** (self.r_ + x)
        return alive * (1.0 - silent_if_alive)

    def _death_odds(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(dead) / P(alive) given the history (0 without repeat purchases: dropout follows one)."""
        odds = np.zeros_like(x)
        repeat = x > 0
        xr = x[repeat]
        odds[repeat] = (self.a_ / (self.b_ + (xr - 1.0))) * (
            (self.alpha_ + T[repeat]) / (self.alpha_ + t_x[repeat])
        ) ** (self.r_ + xr)
        return odds


def _bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer log-likelihood of BG/NBD (equation 6 of Fader, Hardie & Lee 2005)."""
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    still_alive = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    repeat = x > 0
    dropped = np.full_like(x, -np.inf)
    xr = x[repeat]
    # b + (x - 1), not b + x - 1: with one repeat purchase and a tiny b, 1 + b - 1 rounds to 0 and the
    # likelihood to +inf, which an optimiser takes for the best fit (it did on CDNOW's stacked cutoffs).
    dropped[repeat] = betaln(a + 1.0, b + (xr - 1.0)) - betaln(a, b) - (r + xr) * np.log(alpha + t_x[repeat])
    return common + np.logaddexp(still_alive, dropped)


class GammaGammaModel:
    """Gamma-Gamma: a customer's expected order value given their repeat orders' mean.

    Parameters
    ----------
    penalizer : float
        L2 penalty on the parameters.

    Attributes
    ----------
    p_, q_, v_ : float
        Fitted parameters: order values are Gamma(p, ν); ν ~ Gamma(q, v) across customers.
    population_mean_ : float
        Expected order value of a customer with no repeat order, ``p v / (q - 1)``.
    """

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def fit(self, X: np.ndarray | pd.DataFrame, y: None = None) -> GammaGammaModel:
        """Fit on ``(frequency, monetary_value)`` rows of customers with at least one repeat order."""
        x, m = self._checked(X)
        if (x <= 0).any() or (m <= 0).any():
            raise ValueError("Gamma-Gamma fits customers with repeat purchases of positive value only")
        if len(x) < 10:
            raise ValueError("Gamma-Gamma needs at least 10 repeat customers")
        scale = float(np.mean(m))  # values in units of their mean: the same start fits any currency

        def negative_ll(params: np.ndarray) -> float:
            return -float(np.mean(_gamma_gamma_log_likelihood(*params, x, m / scale)))

        (p, q, v), _ = _fit_log_params(negative_ll, 3, self.penalizer)
        self.p_, self.q_, self.v_ = float(p), float(q), float(v * scale)
        self.population_mean_ = self.p_ * self.v_ / (self.q_ - 1.0) if self.q_ > 1.0 else float(np.mean(m))
        return self

    def expected_spend(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Expected value of a future order; the population mean where frequency is 0."""
        x, m = self._checked(X)
        p, q, v = self.p_, self.q_, self.v_
        weighted = (p * (v + x * m)) / (p * x + q - 1.0)
        return np.where(x > 0, weighted, self.population_mean_)

    @staticmethod
    def _checked(X: np.ndarray | pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(X, dtype=float)
        if values.ndim != 2 or values.shape[1] != 2 or np.isnan(values).any():
            raise ValueError("expected a finite array of shape (n, 2): frequency, monetary_value")
        return values[:, 0], values[:, 1]


def _gamma_gamma_log_likelihood(p: float, q: float, v: float, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Log-density of a customer's mean order value ``m`` over ``x`` orders."""
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v)
            + (px - 1.0) * np.log(m) + px * np.log(x) - (px + q) * np.log(v + x * m))


def clv(
    purchases: BetaGeoModel,
    spend: GammaGammaModel,
    rfm: np.ndarray | pd.DataFrame,
    monetary: np.ndarray | pd.DataFrame,
    *,
    horizon_days: float,
) -> np.ndarray:
    """Expected revenue over the next ``horizon_days``: expected purchases x expected order value.

    ``rfm`` is ``(frequency, recency, T)``; ``monetary`` is ``(frequency, monetary_value)``.
    Undiscounted: the horizons of predictions are months, not years.
    """
    return purchases.expected_purchases(rfm, horizon_days) * spend.expected_spend(monetary)


class BtydFeatures:
    """BTYD outputs as columns for a frame of :func:`features.build_training_frame`.

    Reads ``btyd_frequency``, ``btyd_recency``, ``btyd_T``, ``btyd_monetary_value`` and, for
    profiles that never bought (BTYD columns NaN), ``tenure_days`` as their ``T`` (their first
    event stands in for the first purchase that BG/NBD assumes).

    Parameters
    ----------
    horizon_days : float
        The prediction window.
    penalizer : float
        L2 penalty of both fits.
    max_customers : int
        Fit on a random sample of this many buyers at most: seven parameters of a population are
        pinned down by tens of thousands of customers, and each optimiser step reads every row
        (two minutes for 500k buyers).

    Attributes
    ----------
    purchases_ : BetaGeoModel
        Fitted on the profiles that bought.
    spend_ : GammaGammaModel or None
        Fitted on repeat buyers; ``None`` when there are too few (then the mean order value of the
        training rows is used: ``mean_order_value_``).
    """

    columns = ("btyd_p_alive", "btyd_expected_purchases", "btyd_p_purchase", "btyd_expected_value")

    def __init__(self, horizon_days: float, penalizer: float = 0.001, max_customers: int = 50_000) -> None:
        self.horizon_days = horizon_days
        self.penalizer = penalizer
        self.max_customers = max_customers

    def fit(self, X: pd.DataFrame, y: None = None) -> BtydFeatures:
        """Fit BG/NBD on buyers and Gamma-Gamma on repeat buyers of ``X`` (a sample of them, see ``max_customers``)."""
        buyers = X[X["btyd_frequency"].notna()]
        if len(buyers) > self.max_customers:
            buyers = buyers.sample(n=self.max_customers, random_state=0)
        self.purchases_ = BetaGeoModel(self.penalizer).fit(buyers[list(RFM_COLUMNS)])
        repeat = buyers[(buyers["btyd_frequency"] > 0) & (buyers[MONETARY_COLUMN] > 0)]
        self.mean_order_value_ = float(repeat[MONETARY_COLUMN].mean()) if len(repeat) else 0.0
        try:
            self.spend_: GammaGammaModel | None = GammaGammaModel(self.penalizer).fit(
                repeat[["btyd_frequency", MONETARY_COLUMN]])
        except ValueError:
            self.spend_ = None
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The four BTYD columns of :attr:`columns`, indexed like ``X``."""
        rfm = self.rfm(X)
        p_alive = self.purchases_.probability_alive(rfm)
        expected = self.purchases_.expected_purchases(rfm, self.horizon_days)
        if self.spend_ is not None:
            monetary = np.column_stack([rfm[:, 0], X[MONETARY_COLUMN].fillna(0.0).to_numpy(float)])
            order_value = self.spend_.expected_spend(monetary)
        else:
            order_value = np.full(len(X), self.mean_order_value_)
        return pd.DataFrame({
            "btyd_p_alive": p_alive,
            "btyd_expected_purchases": expected,
            "btyd_p_purchase": self.purchases_.probability_purchase(rfm, self.horizon_days),
            "btyd_expected_value": expected * order_value,
        }, index=X.index)

    @staticmethod
    def rfm(X: pd.DataFrame) -> np.ndarray:
        """``(frequency, recency, T)`` per row; never-buyers get ``(0, 0, tenure_days)``."""
        never = X["btyd_frequency"].isna()
        tenure = X["tenure_days"] if "tenure_days" in X else pd.Series(0.0, index=X.index)
        return np.column_stack([
            X["btyd_frequency"].fillna(0.0).to_numpy(float),
            X["btyd_recency"].fillna(0.0).to_numpy(float),
            X["btyd_T"].where(~never, tenure.clip(lower=0.0)).fillna(0.0).to_numpy(float),
        ])
