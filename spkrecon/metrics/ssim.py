"""SSIM of Wang, Bovik, Sheikh and Simoncelli, "Image quality assessment: from error
visibility to structural similarity", IEEE TIP 2004.

Grey images, an 11x11 Gaussian window with sigma 1.5 (normalised), K1 = 0.01, K2 = 0.03,
``C1 = (K1 L)^2`` and ``C2 = (K2 L)^2`` with ``L`` the explicit data range, population
(biased) local variances, and the mean of the SSIM map over the pixels whose window lies
wholly inside the image (the authors' ``'valid'`` filtering: 5 pixels are dropped on each
side). No downsampling is applied (the authors' script downsamples images whose smaller side
is over 384 pixels; the field's spike-camera tables do not).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

from spkrecon.errors import ParameterError
from spkrecon.metrics.psnr import _check_pair, _check_range

WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian ``(size,)``; the 2-D window is its outer product."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r * r) / (2 * sigma * sigma))
    return g / g.sum()


def _filter(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    # Separable 'valid' filtering: filter with any padding, then drop the border.
    out = correlate1d(img, g, axis=-1, mode="reflect")
    out = correlate1d(out, g, axis=-2, mode="reflect")
    pad = (len(g) - 1) // 2
    return out[..., pad:out.shape[-2] - pad, pad:out.shape[-1] - pad]


def ssim_map(image: np.ndarray, reference: np.ndarray, *, data_range: float) -> np.ndarray:
    """The SSIM map ``(H-10, W-10)`` or ``(N, H-10, W-10)`` of grey images."""
    x, y = _check_pair(image, reference)
    peak = _check_range(data_range)
    if min(x.shape[-2:]) < WINDOW:
        raise ParameterError(f"SSIM needs images of at least {WINDOW}x{WINDOW}, got {x.shape[-2:]}")
    g = gaussian_window()
    c1 = (K1 * peak) ** 2
    c2 = (K2 * peak) ** 2
    mu_x = _filter(x, g)
    mu_y = _filter(y, g)
    var_x = _filter(x * x, g) - mu_x * mu_x
    var_y = _filter(y * y, g) - mu_y * mu_y
    cov = _filter(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def ssim(image: np.ndarray, reference: np.ndarray, *, data_range: float) -> np.ndarray | float:
    """Mean SSIM of ``(H, W)`` images (a float) or ``(N, H, W)`` stacks (``(N,)``)."""
    m = ssim_map(image, reference, data_range=data_range)
    out = m.mean(axis=(-2, -1))
    return float(out) if out.ndim == 0 else out
