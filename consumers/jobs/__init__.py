"""Job logic several groups share: the chat request, retries, memory recall."""
