"""Prediction definitions, versioned in the store, and their scores written back as ``predicted`` traits.

The models that learn and score them live above, in ``models/`` (this package must not import it).
"""
