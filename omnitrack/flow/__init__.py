"""Optical flow for every frame pair within a window: estimation, storage, consistency masks, and
following points through the masked flows (chaining: the chain method, and matches for the nvp fit)."""
