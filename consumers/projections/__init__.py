"""The read models that replay rebuilds from events alone (replay-only groups)."""
