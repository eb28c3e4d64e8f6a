"""Models: churn, LTV, propensity and recommendations (scikit-learn conventions)."""
