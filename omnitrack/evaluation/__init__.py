"""Evaluation: TAP-Vid metrics, temporal coherence, and the score of one prediction."""

from omnitrack.evaluation.metrics import compute_tapvid_metrics, score, temporal_coherence

__all__ = ["compute_tapvid_metrics", "score", "temporal_coherence"]
