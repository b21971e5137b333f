"""The integrations consumer group (declared in group.py)."""
