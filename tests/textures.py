"""Synthetic images for tests that need rich texture (descriptors, matching)."""

import numpy as np


def texture(height, width, seed=0):
    """Smooth random RGB texture uint8 [H, W, 3] with detail at several scales (rich for SIFT)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for sigma in (1.0, 2.5, 6.0):
        img += cv2.GaussianBlur(rng.normal(size=(height, width, 3)).astype(np.float32), (0, 0), sigma) * sigma
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)
