"""The batch consumer group (declared in group.py)."""
