"""Model routing: which deployments serve a model, with what limits, and what to fall back to."""
