"""Firing-rate statistics of a recording, computed in one streaming pass."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from spkrecon.errors import ParameterError
from spkrecon.io.source import SpikeSource


def recording_stats(source: SpikeSource, readout_hz: float = 40000.0, chunk: int = 256,
                    wrap: Callable[[Iterable[Any]], Iterator[Any]] | None = None
                    ) -> dict[str, Any]:
    """Resolution, frames, duration and firing-rate statistics (rates in spikes per frame).

    ``wrap`` may wrap the chunk iterator (e.g. in a progress bar). A ``.dat`` recording
    whose size also fits other common resolutions lists them all under
    ``fitting_resolutions`` (``[height, width, frames]``, the one read first).
    """
    if not (isinstance(readout_hz, (int, float)) and math.isfinite(readout_hz)
            and readout_hz > 0):
        raise ParameterError(f"the readout rate must be a positive number of Hz, got "
                             f"{readout_hz:g}", "e.g. --rate 40000 (20000 for older sensors)")
    counts = np.zeros((source.height, source.width), np.int64)
    frame_means: list[np.ndarray] = []
    chunks: Iterable[tuple[int, np.ndarray]] = source.iter_chunks(chunk=chunk)
    for _, block in (wrap(chunks) if wrap else chunks):
        counts += block.sum(axis=0, dtype=np.int64)
        frame_means.append(block.reshape(block.shape[0], -1).mean(axis=1, dtype=np.float64))
    n = source.num_frames
    rates = counts / max(n, 1)
    per_frame = np.concatenate(frame_means) if frame_means else np.zeros(1)
    p1, med, p99 = np.percentile(rates, [1, 50, 99])
    fits = getattr(source, "fitting_resolutions", None)
    out = {
        "height": source.height,
        "width": source.width,
        "frames": n,
        "readout_hz": readout_hz,
        "duration_s": n / readout_hz,
        "mean_rate": float(rates.mean()),
        "pixel_rate_min": float(rates.min()),
        "pixel_rate_p1": float(p1),
        "pixel_rate_median": float(med),
        "pixel_rate_p99": float(p99),
        "pixel_rate_max": float(rates.max()),
        "frame_rate_min": float(per_frame.min()),
        "frame_rate_max": float(per_frame.max()),
        "silent_pixels": int((counts == 0).sum()),
        "saturated_pixels": int((counts == n).sum()),
    }
    if fits is not None:
        out["fitting_resolutions"] = [list(f) for f in fits()]
    return out
