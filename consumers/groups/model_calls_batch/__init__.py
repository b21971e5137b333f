"""The model_calls_batch consumer group (declared in group.py)."""
