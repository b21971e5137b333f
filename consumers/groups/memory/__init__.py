"""The memory consumer group (declared in group.py)."""
