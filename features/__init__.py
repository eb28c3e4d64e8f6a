"""Point-in-time features and labels computed from the store."""
