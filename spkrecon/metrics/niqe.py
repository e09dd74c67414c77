"""NIQE (Mittal, Soundararajan and Bovik, IEEE SPL 2013) through pyiqa, offline.

The pristine model (``mu_prisparam`` 1x36, ``cov_prisparam`` 36x36) ships in
``spkrecon/data/niqe_pris_params.npz``: MATLAB's NIQE model as converted by BasicSR 1.4.2
(Apache-2.0) and published by pyiqa as ``niqe_modelparameters.mat``; see
``tools/convert_niqe_model.py``. pyiqa reads a ``.mat``, so the arrays are written once to
``<user cache>/spkrecon/niqe/niqe_modelparameters.mat`` and passed as
``pretrained_model_path``: pyiqa never downloads anything.

pyiqa scores a 1-channel [0, 1] image by scaling it by 255 and rounding, and reads whole
96x96 blocks only (a 250x400 frame is scored on its top-left 192x384); smaller frames are
an error. A frame NIQE cannot score (a flat one: its feature covariance is singular) gets NaN.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from spkrecon.errors import OutputError
from spkrecon.metrics.iqa import Progress, PyiqaMetric

MODEL_NPZ = Path(__file__).resolve().parent.parent / "data" / "niqe_pris_params.npz"
MAT_NAME = "niqe_modelparameters.mat"


def pristine_params() -> dict[str, np.ndarray]:
    """The bundled pristine model: ``mu_prisparam`` (1, 36) and ``cov_prisparam`` (36, 36)."""
    with np.load(MODEL_NPZ) as data:
        return {k: np.asarray(data[k], np.float64) for k in ("mu_prisparam", "cov_prisparam")}


def _cache_dirs() -> list[Path]:
    import platformdirs

    return [Path(platformdirs.user_cache_dir("spkrecon")) / "niqe",
            Path(tempfile.gettempdir()) / f"spkrecon-{os.getuid() if hasattr(os, 'getuid') else 0}"
            / "niqe"]


def _matches(path: Path, params: dict[str, np.ndarray]) -> bool:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
        return all(np.array_equal(mat[k], v) for k, v in params.items())
    except Exception:  # unreadable or truncated: rewrite it
        return False


def niqe_model_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The ``.mat`` pyiqa loads, written from the bundled model when missing or different.

    Written to ``cache_dir`` or the user cache folder (a temporary folder when that is not
    writable), atomically, so concurrent runs do not see half a file.
    """
    import scipy.io

    params = pristine_params()
    dirs = [Path(cache_dir)] if cache_dir is not None else _cache_dirs()
    errors = []
    for d in dirs:
        target = d / MAT_NAME
        if target.is_file() and _matches(target, params):
            return target
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".niqe-", suffix=".mat.partial", dir=d)
            os.close(fd)
            try:
                scipy.io.savemat(tmp, params)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return target
        except OSError as exc:
            errors.append(f"{d}: {exc.strerror or exc}")
    raise OutputError(f"cannot write the NIQE model file ({'; '.join(errors)})",
                      "set XDG_CACHE_HOME to a writable folder")


def create_niqe(device: str | None = None, model_path: str | os.PathLike | None = None
                ) -> PyiqaMetric:
    """pyiqa's NIQE with the bundled pristine model (or the ``.mat`` at ``model_path``)."""
    path = Path(model_path) if model_path is not None else niqe_model_path()
    return PyiqaMetric("niqe", device=device, label="niqe",
                       options={"pretrained_model_path": str(path)}, min_size=(96, 96))


def niqe(frames: np.ndarray, device: str | None = None, batch_size: int | None = None,
         progress: Progress | None = None) -> np.ndarray | float:
    """NIQE (lower is better) of a grey ``(H, W)`` image (a float) or ``(N, H, W)`` stack.

    Frames are float in [0, 1]; ``device`` is ``auto`` (CUDA when available), ``cpu`` or
    ``cuda[:N]``; ``progress`` is called with the number of frames done after each batch.
    """
    single = np.ndim(frames) == 2
    out = create_niqe(device).score(frames, batch_size=batch_size, progress=progress)
    return float(out[0]) if single else out
