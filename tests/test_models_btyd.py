"""BG/NBD and Gamma-Gamma recover the parameters they are simulated from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.btyd import BetaGeoModel, BtydFeatures, GammaGammaModel, _bgnbd_log_likelihood, clv

R, ALPHA, A, B = 0.25, 4.0, 0.8, 2.5  # days: a mean rate of 1/16 purchases a day
P, Q, V = 6.0, 4.0, 15.0  # order values around p v / (q - 1) = 30


def simulate_bgnbd(n: int, seed: int, future_days: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(frequency, recency, T)`` rows drawn from BG/NBD, and the purchases in ``(T, T + future_days]``."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(R, 1.0 / ALPHA, n)
    dropout = rng.beta(A, B, n)
    T = rng.uniform(30.0, 365.0, n)
    x, t_x, now, future = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        now[alive] += rng.exponential(1.0 / rate[alive])
        past = alive & (now <= T)
        x[past] += 1
        t_x[past] = now[past]
        later = alive & (now > T) & (now <= T + future_days)
        future[later] += 1
        alive = (past | later) & (rng.random(n) >= dropout)  # drops out right after a purchase
    return np.column_stack([x, t_x, T]), future


def simulate_spend(frequency: np.ndarray, seed: int) -> np.ndarray:
    """Mean order value of each customer's ``frequency`` orders under Gamma-Gamma."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(Q, 1.0 / V, len(frequency))
    return np.array([rng.gamma(P, 1.0 / n_u, int(k)).mean() for n_u, k in zip(nu, frequency)])


def test_bgnbd_recovers_its_parameters() -> None:
    rfm, _ = simulate_bgnbd(8000, seed=1)
    model = BetaGeoModel().fit(rfm)
    assert model.r_ == pytest.approx(R, rel=0.15)
    assert model.alpha_ == pytest.approx(ALPHA, rel=0.25)
    assert model.a_ == pytest.approx(A, rel=0.25)
    assert model.b_ == pytest.approx(B, rel=0.3)
    # A wrong model is clearly less likely: the fit is a maximum.
    assert np.mean(_bgnbd_log_likelihood(2 * R, ALPHA, A, B, *rfm.T)) < model.log_likelihood_


def test_bgnbd_stays_finite_where_dropout_vanishes() -> None:
    """Without dropout (a, b -> 0 with a / b -> 0), as on a population of recently active buyers.

    The likelihood is finite there, and the fit neither raises nor takes a spurious infinity for
    the best fit: CDNOW's transaction log, stacked at five cutoffs, did both.
    """
    a, b = 3e-22, 9e-18
    one_repeat = _bgnbd_log_likelihood(1.1, 3.3, a, b, np.array([1.0]), np.array([1.0]), np.array([5.0]))
    assert np.isfinite(one_repeat).all()
    rng = np.random.default_rng(3)
    rate = rng.gamma(R, 1.0 / ALPHA, 4000)  # buyers who never drop out: an NBD population
    T = rng.uniform(5.0, 275.0, 4000)
    times = [np.sort(rng.uniform(0.0, t, rng.poisson(lam * t))) for lam, t in zip(rate, T)]
    rfm = np.array([(max(len(s) - 1, 0), s[-1] - s[0] if len(s) else 0.0, t - s[0] if len(s) else t)
                    for s, t in zip(times, T)])
    model = BetaGeoModel(penalizer=0.001).fit(rfm[rfm[:, 2] > 0])
    assert np.isfinite(model.log_likelihood_)
    assert model.a_ / (model.a_ + model.b_) < 0.05  # hardly anyone drops out
    assert (model.probability_alive(rfm) > 0.9).all()
    expected = model.expected_purchases(rfm, 30.0)
    assert np.isfinite(expected).all() and (expected >= 0).all()
    # Without dropout, a customer's rate is their gamma-Poisson posterior: more past purchases, more ahead.
    assert expected[rfm[:, 0] >= 5].mean() > 3 * expected[rfm[:, 0] == 0].mean()


def test_bgnbd_predictions_follow_the_history() -> None:
    rfm, _ = simulate_bgnbd(3000, seed=2)
    model = BetaGeoModel().fit(rfm)
    # Same frequency and T: the one who bought recently is likelier alive and buys more.
    recent, lapsed = np.array([[5.0, 170.0, 180.0]]), np.array([[5.0, 20.0, 180.0]])
    assert model.probability_alive(recent)[0] > 0.8 > 0.5 > model.probability_alive(lapsed)[0]
    assert model.expected_purchases(recent, 30)[0] > 3 * model.expected_purchases(lapsed, 30)[0]
    assert model.probability_alive(np.array([[0.0, 0.0, 50.0]]))[0] == 1.0
    p = model.probability_purchase(rfm, 30)
    assert ((p > 0) & (p < 1)).all()
    # Probability of a purchase is below the expected count (P(N>0) <= E[N]) and grows with t.
    assert (p <= model.expected_purchases(rfm, 30) + 1e-12).all()
    assert (model.probability_purchase(rfm, 60) > p).all()


def test_bgnbd_forecasts_match_a_simulated_future() -> None:
    rfm, future = simulate_bgnbd(8000, seed=3, future_days=60.0)
    model = BetaGeoModel().fit(rfm)
    expected, p = model.expected_purchases(rfm, 60.0), model.probability_purchase(rfm, 60.0)
    assert expected.sum() == pytest.approx(future.sum(), rel=0.1)
    assert p.mean() == pytest.approx((future > 0).mean(), rel=0.1)
    for band in np.array_split(np.argsort(p), 5):  # calibrated across the range, not only on average
        assert p[band].mean() == pytest.approx((future[band] > 0).mean(), abs=0.04)


def test_gamma_gamma_recovers_its_parameters() -> None:
    frequency = np.random.default_rng(5).integers(1, 12, 6000).astype(float)
    monetary = simulate_spend(frequency, seed=6)
    model = GammaGammaModel().fit(np.column_stack([frequency, monetary]))
    assert model.p_ == pytest.approx(P, rel=0.2)
    assert model.q_ == pytest.approx(Q, rel=0.25)
    assert model.v_ == pytest.approx(V, rel=0.3)
    assert model.population_mean_ == pytest.approx(P * V / (Q - 1), rel=0.1)
    # Many orders: the customer's own mean dominates; none: the population mean.
    spend = model.expected_spend(np.array([[50.0, 80.0], [0.0, 0.0]]))
    assert spend[0] == pytest.approx(80.0, rel=0.05) and spend[1] == model.population_mean_


def test_clv_and_features_of_a_frame() -> None:
    rfm, _ = simulate_bgnbd(2000, seed=7)
    monetary = np.where(rfm[:, 0] > 0, simulate_spend(np.maximum(rfm[:, 0], 1), seed=8), 0.0)
    frame = pd.DataFrame({"btyd_frequency": rfm[:, 0], "btyd_recency": rfm[:, 1], "btyd_T": rfm[:, 2],
                          "btyd_monetary_value": monetary, "tenure_days": rfm[:, 2] + 3})
    frame.loc[:9, ["btyd_frequency", "btyd_recency", "btyd_T"]] = np.nan  # never bought
    features = BtydFeatures(horizon_days=30).fit(frame)
    out = features.transform(frame)
    assert list(out.columns) == list(BtydFeatures.columns) and out.notna().all().all()
    assert (out.loc[:9, "btyd_p_alive"] == 1.0).all()
    value = clv(features.purchases_, features.spend_, BtydFeatures.rfm(frame),
                np.column_stack([BtydFeatures.rfm(frame)[:, 0], monetary]), horizon_days=30)
    np.testing.assert_allclose(out["btyd_expected_value"], value)
    with pytest.raises(ValueError, match="recency"):
        BetaGeoModel().fit(np.array([[1.0, 5.0, 2.0]] * 20))
