"""Recording -> reconstructed display frames, streaming."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from spkrecon.errors import ParameterError
from spkrecon.io.source import SpikeSource
from spkrecon.methods.base import Reconstructor
from spkrecon.tonemap import ToneMapper


def output_indices(source: SpikeSource, method: Reconstructor, start: int | None = None,
                   end: int | None = None, stride: int = 1) -> range:
    """Frame indices to reconstruct: ``[start, end)`` every ``stride`` frames.

    Raises :class:`ParameterError` when the recording is shorter than the method's window.
    """
    if stride < 1:
        raise ParameterError(f"stride must be at least 1, got {stride}")
    if source.num_frames < method.min_frames:
        raise ParameterError(
            f"the recording has {source.num_frames} frames, fewer than the {method.min_frames}-"
            f"frame window of {method.name}", "use a shorter --window or a longer recording")
    frames = source.frame_range(start, end)
    return range(frames.start, frames.stop, stride)


def reconstruct(source: SpikeSource, method: Reconstructor, indices: range,
                tonemap: ToneMapper | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, image)``: rates from ``method``, mapped by ``tonemap`` if given."""
    for idx, rate in method.stream(source, indices):
        yield idx, (tonemap(rate) if tonemap is not None else rate)
