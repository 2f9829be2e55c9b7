"""Evaluation: TAP-Vid metrics and temporal coherence."""

from omnitrack.evaluation.metrics import compute_tapvid_metrics, temporal_coherence

__all__ = ["compute_tapvid_metrics", "temporal_coherence"]
