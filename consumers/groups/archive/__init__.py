"""The archive consumer group (declared in group.py)."""
