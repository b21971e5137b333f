"""The usage consumer group (declared in group.py)."""
