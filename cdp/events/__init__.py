"""Events: validation against the Segment Spec, event time, durable bulk ingestion, quarantine."""
