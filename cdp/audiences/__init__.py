"""Audiences (Segment Engage): conditions compiled to SQL, membership kept up to date on live events, synced out."""
