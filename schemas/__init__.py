"""The contract: event envelope, event payloads, topics and HTTP models.

Only pydantic and the standard library are imported here.
"""
