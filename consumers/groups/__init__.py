"""One package per consumer group; each package's `group.py` declares the group once."""
