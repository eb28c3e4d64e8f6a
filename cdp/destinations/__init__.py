"""Destinations: webhooks and Segment-compatible endpoints, fed through a durable, signed, retried outbox."""
