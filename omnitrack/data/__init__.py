"""Datasets: the synthetic benchmark, TAP-Vid pickles, user videos; and the per-video frame files."""
