"""Tone mapping: firing-rate frames -> display images float32 in [0, 1].

Modes:
- ``alpha``: divide by the conversion rate ``alpha`` and clip (simulated data, where
  rate = alpha * intensity; the convention of the published PSNR tables).
- ``auto``: robust auto-exposure: the ``percentile``-th rate maps to white, smoothed over
  a stream so videos do not flicker, then a display gamma (1/1.5 by default: chosen by eye
  on real captures; the Spk2ImgNet authors use 1/2.2, which looks washed out on TFP).
- ``linear``: clip rates to [0, 1] unchanged.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from spkrecon.errors import ParameterError

Mode = Literal["auto", "alpha", "linear"]
MODES: tuple[str, ...] = ("auto", "alpha", "linear")
AUTO_GAMMA = 1 / 1.5


class ToneMapper:
    """Stateful mapper for a stream of ``(H, W)`` or ``(N, H, W)`` rate frames."""

    def __init__(self, mode: str = "auto", alpha: float = 0.6, gamma: float | None = None,
                 percentile: float = 99.5, smoothing: float = 0.8) -> None:
        if mode not in MODES:
            raise ParameterError(f"unknown tone mapping '{mode}'", f"use one of {', '.join(MODES)}")
        if not 0 < alpha <= 1:
            raise ParameterError(f"alpha must be in (0, 1], got {alpha}")
        if gamma is not None and gamma <= 0:
            raise ParameterError(f"gamma must be positive, got {gamma}")
        if not 50 <= percentile <= 100:
            raise ParameterError(f"percentile must be in [50, 100], got {percentile}")
        if not 0 <= smoothing < 1:
            raise ParameterError(f"smoothing must be in [0, 1), got {smoothing}")
        self.mode = mode
        self.alpha = alpha
        self.gamma = (AUTO_GAMMA if mode == "auto" else 1.0) if gamma is None else gamma
        self.percentile = percentile
        self.smoothing = smoothing
        self._white: float | None = None

    def reset(self) -> None:
        self._white = None

    def white_point(self, rates: np.ndarray) -> float:
        """The rate shown as white; in ``auto`` mode, updated from ``rates``."""
        if self.mode == "alpha":
            return self.alpha
        if self.mode == "linear":
            return 1.0
        level = float(np.percentile(rates[..., ::2, ::2], self.percentile))
        level = max(level, 1e-3)
        if self._white is None:
            self._white = level
        else:
            self._white = self.smoothing * self._white + (1 - self.smoothing) * level
        return self._white

    def __call__(self, rates: np.ndarray) -> np.ndarray:
        out = np.asarray(rates, dtype=np.float32) * np.float32(1.0 / self.white_point(rates))
        np.clip(out, 0.0, 1.0, out=out)
        if self.gamma != 1.0:
            np.power(out, np.float32(self.gamma), out=out)
        return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] image -> uint8 with rounding."""
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] image -> uint16 with rounding."""
    return (np.clip(image, 0, 1) * 65535 + 0.5).astype(np.uint16)
