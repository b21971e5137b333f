"""Text embedders behind one port; each vendor SDK stays in its own file."""
