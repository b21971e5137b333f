"""The composition root: wires settings, adapters and handlers; hosts the `ayush` command."""
