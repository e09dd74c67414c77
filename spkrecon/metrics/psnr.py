"""PSNR on grey images with an explicit data range.

``PSNR = 10 log10(data_range^2 / MSE)``, computed in float64. Identical images give
``inf`` (no error): callers report it as such.
"""

from __future__ import annotations

import numpy as np

from spkrecon.errors import ParameterError


def _check_pair(image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(image, np.float64)
    y = np.asarray(reference, np.float64)
    if x.shape != y.shape:
        raise ParameterError(f"image {x.shape} and reference {y.shape} differ in shape")
    if x.ndim not in (2, 3) or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ParameterError(f"expected (H, W) or (N, H, W) images, got shape {x.shape}")
    return x, y


def _check_range(data_range: float) -> float:
    if not np.isfinite(data_range) or data_range <= 0:
        raise ParameterError(f"data_range must be positive, got {data_range}")
    return float(data_range)


def mse(image: np.ndarray, reference: np.ndarray) -> np.ndarray | float:
    """Mean squared error of ``(H, W)`` images (a float) or ``(N, H, W)`` stacks (``(N,)``)."""
    x, y = _check_pair(image, reference)
    err = np.mean((x - y) ** 2, axis=(-2, -1))
    return float(err) if err.ndim == 0 else err


def psnr(image: np.ndarray, reference: np.ndarray, *, data_range: float) -> np.ndarray | float:
    """PSNR in dB of ``(H, W)`` images (a float) or ``(N, H, W)`` stacks (``(N,)``).

    ``data_range`` is the span of possible values (1.0 for [0, 1] images, 255 for uint8);
    it is never guessed from the data. Identical images give ``inf``.
    """
    peak = _check_range(data_range)
    err = np.asarray(mse(image, reference), np.float64)
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(peak * peak / err)
    return float(out) if out.ndim == 0 else out
