"""Governance (Segment Protocols): tracking plans, their enforcement at ingestion, violations."""
