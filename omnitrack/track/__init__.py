"""Trackers that need no optimisation: the flow-chaining baseline."""
