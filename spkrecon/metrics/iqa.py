"""pyiqa metrics (NIQE, BRISQUE, PIQE, LPIPS, ...), offline, batched, on a chosen device.

pyiqa is imported only inside functions (it takes seconds). It downloads weight files on
first use; spkrecon never lets it: while a metric is built, pyiqa's download function raises,
and the error names the missing file, the address pyiqa would fetch it from and the path to
put it at. pyiqa's own prints are sent to stderr so JSON on stdout stays clean.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spkrecon.errors import DeviceError, ParameterError, UnknownNameError, WeightsError

#: Metrics fed one grey channel; the others get the grey image in three channels.
GREY_INPUT = {"niqe", "niqe_matlab", "brisque", "brisque_matlab", "piqe"}

Progress = Callable[[int], None]
#: Default frames per batch: small on the CPU (cache-bound), large on a GPU.
CPU_BATCH = 4
GPU_BATCH = 32


def resolve_device(device: str | None = None) -> Any:
    """``None``/``"auto"`` -> CUDA when available, else CPU; other names are checked."""
    import torch

    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"unknown device '{device}'", "use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{device}' asked for, but CUDA is not available",
                              "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device '{device}' does not exist "
                              f"({torch.cuda.device_count()} CUDA device(s))")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' asked for, but MPS is not available")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device '{device}' is not supported", "use auto, cpu or cuda")
    return dev


def pyiqa_metric_names() -> list[str]:
    """Every metric name pyiqa knows (imports pyiqa)."""
    import pyiqa

    return list(pyiqa.list_models())


def pyiqa_cache_dir() -> str:
    """Where pyiqa looks for (and would download) its weight files."""
    from pyiqa.utils.download_util import DEFAULT_CACHE_DIR

    return str(DEFAULT_CACHE_DIR)


class _DownloadBlocked(Exception):
    def __init__(self, url: str, dst: str) -> None:
        super().__init__(url)
        self.url = url
        self.dst = dst


def _refuse_download(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
    raise _DownloadBlocked(str(url), str(dst))


@contextlib.contextmanager
def offline(metric: str) -> Iterator[None]:
    """Build pyiqa/torch.hub models without network: a download raises :class:`WeightsError`.

    Both download paths pyiqa uses end in ``download_url_to_file`` (pyiqa's
    ``load_file_from_url`` and ``torch.hub.load_state_dict_from_url``, e.g. for LPIPS's VGG);
    both are replaced for the duration. pyiqa's prints ("Downloading...", "Loading...") are
    dropped so stdout stays clean.
    """
    import torch.hub
    from pyiqa.utils import download_util

    saved = (download_util.download_url_to_file, torch.hub.download_url_to_file)
    download_util.download_url_to_file = _refuse_download
    torch.hub.download_url_to_file = _refuse_download
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
    except _DownloadBlocked as exc:
        dst = exc.dst
        name = dst.replace("\\", "/").rsplit("/", 1)[-1]
        raise WeightsError(
            f"metric '{metric}' needs the file {name}, which is not present at {dst}",
            f"spkrecon does not download: fetch it from {exc.url} and save it as {dst}",
        ) from None
    finally:
        download_util.download_url_to_file, torch.hub.download_url_to_file = saved


@dataclass
class PyiqaMetric:
    """A pyiqa metric scoring grey ``(N, H, W)`` float images in [0, 1] in batches.

    ``options`` go to ``pyiqa.create_metric`` (e.g. ``pretrained_model_path``).
    """

    name: str
    device: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    #: Smallest (height, width) the metric can score; smaller frames are an error.
    min_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        import pyiqa

        key = self.name.lower()
        known = pyiqa.list_models()
        if key not in known:
            from spkrecon.methods import suggest

            raise UnknownNameError(f"unknown metric '{self.name}'",
                                   suggest(key, list(known)) or "see pyiqa.list_models()")
        self.name = key
        self.label = self.label or key
        self._device = resolve_device(self.device)
        with offline(key):
            self._model = pyiqa.create_metric(key, device=self._device, **self.options)
        self.full_reference = self._model.metric_mode == "FR"
        self.lower_better = bool(self._model.lower_better)

    @property
    def device_name(self) -> str:
        return str(self._device)

    def _tensor(self, frames: np.ndarray) -> Any:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(frames, np.float32))[:, None]
        if self.name not in GREY_INPUT:
            t = t.expand(-1, 3, -1, -1)
        return t.to(self._device)

    def score(self, images: np.ndarray, references: np.ndarray | None = None,
              batch_size: int | None = None, progress: Progress | None = None) -> np.ndarray:
        """Scores ``(N,)`` float64 of ``(N, H, W)`` images (and references for FR metrics).

        ``batch_size`` frames go through the model at once; by default
        :data:`CPU_BATCH` on the CPU (larger batches were no faster there) and
        :data:`GPU_BATCH` on a GPU. ``progress(n)`` is called after each batch.
        """
        import torch

        images = _as_stack(images, "images")
        if self.full_reference:
            if references is None:
                raise ParameterError(f"metric '{self.name}' needs a reference image")
            references = _as_stack(references, "references")
            if references.shape != images.shape:
                raise ParameterError(f"images {images.shape} and references "
                                     f"{references.shape} differ in shape")
        if batch_size is None:
            batch_size = CPU_BATCH if self._device.type == "cpu" else GPU_BATCH
        if batch_size < 1:
            raise ParameterError(f"batch size must be at least 1, got {batch_size}")
        if self.min_size and images.size:
            h, w = images.shape[1:]
            if h < self.min_size[0] or w < self.min_size[1]:
                raise ParameterError(f"{self.label.upper()} needs frames of at least "
                                     f"{self.min_size[0]}x{self.min_size[1]}, got {h}x{w}")
        out = np.empty(len(images), np.float64)
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                e = min(s + batch_size, len(images))
                try:
                    out[s:e] = self._run(images[s:e], None if references is None
                                         else references[s:e])
                except RuntimeError:
                    # One degenerate frame (e.g. flat: NIQE's covariance is singular) makes
                    # the whole batch fail; score its frames alone and give NaN to failures.
                    for i in range(s, e):
                        try:
                            out[i] = self._run(images[i:i + 1], None if references is None
                                               else references[i:i + 1])[0]
                        except RuntimeError:
                            out[i] = np.nan
                if progress is not None:
                    progress(e - s)
        return out

    def _run(self, images: np.ndarray, references: np.ndarray | None) -> np.ndarray:
        x = self._tensor(images)
        ref = self._tensor(references) if self.full_reference else None
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = self._model(x, ref) if ref is not None else self._model(x)
        return res.detach().double().cpu().reshape(-1).numpy()


def _as_stack(frames: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ParameterError(f"{what} must be (N, H, W) grey images, got shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < -1e-6 or hi > 1 + 1e-6 or not np.isfinite(lo + hi):
        raise ParameterError(f"{what} must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return a
