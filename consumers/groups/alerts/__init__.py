"""The alerts group: counts what tenants' alert rules watch, and fires and resolves them."""
