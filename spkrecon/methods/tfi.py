"""TFI: texture from inter-spike interval.

Zhu, Duan, Yu, Xiong, Huang, Tian. "A retina-inspired sampling method for visual texture
reconstruction", ICME 2019. The firing rate at frame ``k`` is ``1 / (next - prev)`` where
``prev`` is the latest spike at or before ``k`` and ``next`` the earliest after ``k``, each
searched at most ``window // 2`` frames away; a missing spike gives the interval
``2 * (window // 2)`` as in Spike-Zoo. Computed with running last/next spike indices.
"""

from __future__ import annotations

import numpy as np

from spkrecon.errors import ParameterError
from spkrecon.methods.base import Reconstructor

_NONE = -(2**30)


class TFI(Reconstructor):
    """Inter-spike-interval rates ``(T, H, W) -> (N, H, W)``."""

    name = "tfi"
    summary = "Texture from inter-spike interval: 1 / ISI around the frame (ICME 2019)"
    paper = "Zhu et al., ICME 2019"

    def __init__(self, window: int = 41, alpha: float = 0.6) -> None:
        super().__init__(alpha)
        if not 3 <= window <= 65535:
            raise ParameterError(f"TFI window must be 3..65535 frames, got {window}")
        self.window = int(window)

    @property
    def half(self) -> int:
        return self.window // 2

    @property
    def past(self) -> int:
        return self.half

    @property
    def future(self) -> int:
        return self.half

    def reconstruct(self, spikes: np.ndarray, centers: np.ndarray) -> np.ndarray:
        t, h, w = spikes.shape
        n = len(centers)
        prev = np.empty((n, h, w), np.int32)
        nxt = np.empty((n, h, w), np.int32)
        fired = spikes.view(np.bool_) if spikes.dtype == np.uint8 else spikes != 0
        order = np.argsort(centers, kind="stable")
        # Forward pass: latest spike at or before each centre.
        last = np.full((h, w), _NONE, np.int32)
        j, first = 0, int(centers[order[0]]) if n else 0
        for f in range(max(0, first - self.half), t):
            np.copyto(last, f, where=fired[f])
            while j < n and centers[order[j]] == f:
                prev[order[j]] = last
                j += 1
            if j == n:
                break
        # Backward pass: earliest spike strictly after each centre.
        coming = np.full((h, w), -_NONE, np.int32)
        j = n - 1
        stop = int(centers[order[-1]]) + self.half if n else 0
        for f in range(min(t - 1, stop), -1, -1):
            while j >= 0 and centers[order[j]] == f:
                nxt[order[j]] = coming
                j -= 1
            if j < 0:
                break
            np.copyto(coming, f, where=fired[f])
        c = np.asarray(centers, np.int32)[:, None, None]
        missing = ((c - prev) > self.half) | ((nxt - c) > self.half)
        interval = np.where(missing, 2 * self.half, nxt - prev).astype(np.float32)
        return 1.0 / interval
