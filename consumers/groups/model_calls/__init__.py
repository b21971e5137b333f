"""The model_calls consumer group (declared in group.py)."""
