"""Core of the customer data platform: store, ingestion, identity, profiles, governance."""

__version__ = "0.1.0"
