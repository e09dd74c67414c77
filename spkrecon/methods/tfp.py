"""TFP: texture from playback.

Zhu, Duan, Yu, Xiong, Huang, Tian. "A retina-inspired sampling method for visual texture
reconstruction", ICME 2019. The firing rate is the mean of the spikes in a window of
``window`` frames centred on the output frame; a whole recording is reconstructed from one
cumulative sum per chunk, O(1) per output frame.
"""

from __future__ import annotations

import numpy as np

from spkrecon.errors import ParameterError
from spkrecon.methods.base import Reconstructor


class TFP(Reconstructor):
    """Windowed spike count ``(T, H, W) -> (N, H, W)`` rates; edges use the frames available."""

    name = "tfp"
    summary = "Texture from playback: mean spike count in a centred window (ICME 2019)"
    paper = "Zhu et al., ICME 2019"

    def __init__(self, window: int = 41, alpha: float = 0.6) -> None:
        super().__init__(alpha)
        if not 1 <= window <= 65535:
            raise ParameterError(f"TFP window must be 1..65535 frames, got {window}")
        self.window = int(window)

    @property
    def past(self) -> int:
        return self.window // 2

    @property
    def future(self) -> int:
        return self.window - 1 - self.window // 2

    def reconstruct(self, spikes: np.ndarray, centers: np.ndarray) -> np.ndarray:
        t = spikes.shape[0]
        # uint16 holds counts of up to 65535 frames; the chunk is kept below that.
        dtype = np.uint16 if t < 65535 else np.uint32
        csum = np.empty((t + 1, *spikes.shape[1:]), dtype)
        csum[0] = 0
        np.cumsum(spikes, axis=0, dtype=dtype, out=csum[1:])
        lo = np.clip(centers - self.past, 0, t)
        hi = np.clip(centers + self.future + 1, 0, t)
        counts = (csum[hi] - csum[lo]).astype(np.float32)
        counts *= (1.0 / np.maximum(hi - lo, 1)).astype(np.float32)[:, None, None]
        return counts
