"""Helpers shared by test modules (import as ``from spike_helpers import ...``)."""

from __future__ import annotations

import numpy as np


def rate_spikes(intensity: np.ndarray, frames: int, alpha: float = 0.6,
                seed: int = 0) -> np.ndarray:
    """Integrate-and-fire spikes ``(T, H, W)`` uint8 of a still ``(H, W)`` intensity in [0, 1]."""
    rng = np.random.default_rng(seed)
    acc = rng.random(intensity.shape)
    out = np.zeros((frames, *intensity.shape), np.uint8)
    for t in range(frames):
        acc += alpha * intensity
        fired = acc >= 1.0
        acc[fired] -= 1.0
        out[t] = fired
    return out
