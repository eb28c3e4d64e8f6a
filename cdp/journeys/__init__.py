"""Event-triggered journeys, holdouts, lift reports and the global contact policy."""
