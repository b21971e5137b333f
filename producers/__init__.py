"""The ingress and the command-line tools that publish events."""
