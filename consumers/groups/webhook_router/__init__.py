"""The webhook_router consumer group (declared in group.py)."""
