"""Image quality metrics on grey float images in [0, 1].

- ``psnr`` / ``ssim``: full-reference, numpy, with the data range given explicitly
  (``spkrecon.metrics.psnr``, ``spkrecon.metrics.ssim``).
- ``niqe``: no-reference, pyiqa with the bundled pristine model, offline.
- any other pyiqa metric by name (``brisque``, ``piqe``, ``lpips``, ...), offline: a missing
  weight file is a :class:`~spkrecon.errors.WeightsError` naming the file, URL and destination.
  ``pyiqa:psnr`` / ``pyiqa:ssim`` pick pyiqa's own versions.

>>> from spkrecon.metrics import get_metric
>>> get_metric("psnr").score(images, references)      # (N,) float64
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from spkrecon.errors import ParameterError
from spkrecon.metrics.psnr import mse, psnr
from spkrecon.metrics.ssim import ssim, ssim_map

__all__ = ["Metric", "get_metric", "mse", "psnr", "ssim", "ssim_map", "DATA_RANGE"]

#: Images are compared as grey floats in [0, 1]: the data range of PSNR and SSIM.
DATA_RANGE = 1.0
BUILTIN = ("psnr", "ssim", "niqe")


class Metric(Protocol):
    name: str
    label: str
    full_reference: bool
    lower_better: bool
    device_name: str

    def score(self, images: np.ndarray, references: np.ndarray | None = None,
              batch_size: int | None = None, progress: Callable[[int], None] | None = None
              ) -> np.ndarray: ...


@dataclass
class _NumpyMetric:
    name: str
    func: Callable[..., Any]
    data_range: float = DATA_RANGE
    full_reference: bool = True
    lower_better: bool = False
    device_name: str = "cpu"

    @property
    def label(self) -> str:
        return self.name

    def score(self, images: np.ndarray, references: np.ndarray | None = None,
              batch_size: int | None = None, progress: Callable[[int], None] | None = None
              ) -> np.ndarray:
        if references is None:
            raise ParameterError(f"{self.name.upper()} needs a reference (ground truth)")
        x = np.asarray(images)
        y = np.asarray(references)
        if x.ndim == 2:
            x, y = x[None], y[None] if y.ndim == 2 else y
        if x.shape != y.shape:
            raise ParameterError(f"images {x.shape} and references {y.shape} differ in shape")
        out = np.empty(len(x), np.float64)
        step = max(batch_size or 16, 1)
        for s in range(0, len(x), step):
            e = min(s + step, len(x))
            out[s:e] = self.func(x[s:e], y[s:e], data_range=self.data_range)
            if progress is not None:
                progress(e - s)
        return out


def get_metric(name: str, device: str | None = None) -> Metric:
    """The metric called ``name`` (case-insensitive): ours for psnr/ssim/niqe, else pyiqa's."""
    key = name.strip().lower()
    if key == "psnr":
        return _NumpyMetric("psnr", psnr)
    if key == "ssim":
        return _NumpyMetric("ssim", ssim)
    if key == "niqe":
        from spkrecon.metrics.niqe import create_niqe

        return create_niqe(device)
    from spkrecon.metrics.iqa import PyiqaMetric

    if key.startswith("pyiqa:"):
        return PyiqaMetric(key.split(":", 1)[1], device=device, label=key)
    return PyiqaMetric(key, device=device)
