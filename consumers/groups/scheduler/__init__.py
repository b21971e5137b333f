"""The scheduler group: fires schedules\x27 slots, once each, and runs their targets."""
