"""Computed traits (Segment Engage's): declared once, recomputed in SQL in batch, kept up to date on ingestion."""
