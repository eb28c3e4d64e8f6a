"""Models: churn, LTV, propensity and recommendations (scikit-learn conventions).

Predictions (frames in, arrays out; MLflow only in :mod:`models.tracking`):

* :mod:`models.schemas` -- :class:`PredictionDefinition` (stored by :mod:`cdp.predictions`; churn /
  purchase / ltv / custom, window, eligibility) mapped to the features' labels and eligibility rules;
* :mod:`models.btyd` -- BG/NBD and Gamma-Gamma, and their outputs as feature columns;
* :mod:`models.classifier`, :mod:`models.value` -- calibrated LightGBM probabilities, hurdle or
  Tweedie expected values with a calibrated total;
* :mod:`models.baselines` -- recency only, naive repeat rate, BTYD;
* :mod:`models.metrics`, :mod:`models.evaluate` -- held-out metrics side by side, per segment;
* :mod:`models.reasons`, :mod:`models.score` -- per-profile reasons in words, percentiles, deciles;
* :mod:`models.gate`, :mod:`models.tracking`, :mod:`models.plots` -- the promotion gate, MLflow, the
  model card's plots;
* :mod:`models.monitoring` -- PSI of features and scores against the training's reference bins;
* :mod:`models.train` -- :func:`train_prediction`, the whole training for the CLI and the flows;
* :mod:`models.custom` -- bring your own model: any scikit-learn estimator as ``train_prediction(estimator=...)``;
* :mod:`models.predict` -- :func:`score_prediction` (champion or flagged fallback, write-back as
  ``predicted`` traits, drift to MLflow) and :func:`train_and_score_all`, for the CLI and the flows.
"""
