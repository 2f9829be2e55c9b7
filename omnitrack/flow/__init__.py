"""Optical flow for every frame pair within a window: estimation, storage, consistency masks."""
