"""The notifications group: outbound webhooks."""
