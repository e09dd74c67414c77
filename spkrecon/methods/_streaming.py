"""Helpers shared by the stateful reconstructors (TFSTP, TVS): the queue of wanted frames."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from spkrecon.errors import ParameterError
from spkrecon.io.source import ArraySource, SpikeSource
from spkrecon.methods.base import Reconstructor


class IndexQueue:
    """The ascending output indices a ``stream`` call still has to yield, with one look-ahead.

    Raises :class:`ParameterError` for an index outside ``[0, num_frames)`` or one smaller
    than the index before it (repeats are allowed and yielded again).
    """

    def __init__(self, indices: Iterable[int], num_frames: int) -> None:
        self._it: Iterator[int] = iter(indices)
        self._n = num_frames
        self._last = -1
        self.peek: int | None = None
        self._advance()

    def _advance(self) -> None:
        nxt = next(self._it, None)
        if nxt is not None:
            nxt = int(nxt)
            if not 0 <= nxt < self._n:
                raise ParameterError(
                    f"frame {nxt} is outside the recording's {self._n} frames")
            if nxt < self._last:
                raise ParameterError(
                    f"output frames must be ascending for a stateful method ({nxt} after "
                    f"{self._last})")
            self._last = nxt
        self.peek = nxt

    def __bool__(self) -> bool:
        return self.peek is not None

    def pop(self) -> int:
        """The next index (the queue must not be empty)."""
        assert self.peek is not None
        out = self.peek
        self._advance()
        return out


def segment_start(first: int, warmup: int) -> int:
    """Where a run of output frames starting at ``first`` begins reading (its warm-up)."""
    return max(0, first - warmup)


def iter_flat_frames(source: SpikeSource, start: int, chunk: int
                     ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t, frame)`` with ``frame`` a flat ``(H*W,)`` uint8 view, from ``start`` on."""
    for first, block in source.iter_chunks(start, None, chunk):
        flat = block.reshape(block.shape[0], -1)
        for i in range(block.shape[0]):
            yield first + i, flat[i]


def reconstruct_chunk(method: Reconstructor, spikes: np.ndarray, centers: np.ndarray
                      ) -> np.ndarray:
    """``reconstruct`` of a stateful method: one run over the chunk ``(T, H, W)`` from frame 0.

    ``method`` must offer ``_stream(source, indices, warmup)``.
    """
    centers = np.asarray(centers, dtype=np.int64)
    out = np.zeros((len(centers), *spikes.shape[1:]), np.float32)
    if not len(centers):
        return out
    order = np.argsort(centers, kind="stable")
    run = method._stream(ArraySource(spikes), centers[order],  # type: ignore[attr-defined]
                         warmup=spikes.shape[0])
    for j, (_, rate) in zip(order, run, strict=True):
        out[j] = rate
    return out
