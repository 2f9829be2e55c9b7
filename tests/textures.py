"""Synthetic images for tests that need rich texture (flow, consistency, descriptors, matching)."""

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


def moving_texture(size: int, shift=(0.0, 0.0), seed: int = 0) -> np.ndarray:
    """uint8 [size, size, 3]: a smooth random texture (sum of sinusoids) moved by ``shift`` (dx, dy) px."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] + 0.5
    x, y = x - shift[0], y - shift[1]
    img, total = np.zeros((size, size, 3)), np.zeros(3)
    for _ in range(40):
        freq = rng.uniform(0.02, 0.12) * np.array([np.cos(a := rng.uniform(0, np.pi)), np.sin(a)])
        amp = rng.uniform(0.3, 1.0, 3)
        wave = np.sin(2 * np.pi * (freq[0] * x + freq[1] * y) + rng.uniform(0, 6.3))
        img, total = img + amp * wave[..., None], total + amp
    return np.round(127.5 + 127.5 * 3 * img / total).clip(0, 255).astype(np.uint8)
