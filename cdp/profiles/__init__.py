"""Profiles and their traits: an append-only change log, and the current value derived from it."""
