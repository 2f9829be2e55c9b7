"""Dense per-frame descriptors (dense SIFT, DINO, DINOv2) and the long-term matches built from them.

- :mod:`omnitrack.features.descriptors`: ``compute_features``, ``save_features`` / ``load_features``, dense SIFT.
- :mod:`omnitrack.features.dino`: DINO ViT-S/16 and DINOv2 ViT-S/14 patch tokens from official checkpoints.
- :mod:`omnitrack.features.matching`: ``long_term_matches``, ``save_matches`` / ``load_matches``.
"""
