"""The one interface every spike recording offers: sized, random-access, streamable."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

from spkrecon.errors import ParameterError


class SpikeSource(ABC):
    """A spike recording of ``num_frames`` upright ``height x width`` bit frames."""

    num_frames: int

    @property
    @abstractmethod
    def height(self) -> int: ...

    @property
    @abstractmethod
    def width(self) -> int: ...

    @abstractmethod
    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` (clamped to the recording) as ``(n, H, W)`` uint8 0/1."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and maps."""

    def __enter__(self) -> SpikeSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.num_frames

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.num_frames, self.height, self.width)

    def read_all(self) -> np.ndarray:
        """The whole recording ``(T, H, W)``; only for recordings known to be small."""
        return self.read(0, self.num_frames)

    def frame_range(self, start: int | None = None, end: int | None = None) -> range:
        """Validated ``range(start, end)`` of frame indices (end exclusive; negative values
        count back from the end)."""
        n = self.num_frames
        s = 0 if start is None else (start + n if start < 0 else start)
        e = n if end is None else (end + n if end < 0 else end)
        if not 0 <= s < n:
            raise ParameterError(f"start frame {start} is outside the recording's {n} frames")
        if not s < e <= n:
            raise ParameterError(
                f"end frame {end} must be after start {s} and at most {n} (the frame count)")
        return range(s, e)

    def iter_chunks(self, start: int = 0, stop: int | None = None,
                    chunk: int = 256) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_index, frames)`` for consecutive chunks of at most ``chunk`` frames."""
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        for s in range(max(0, start), stop, chunk):
            yield s, self.read(s, min(s + chunk, stop))

    def iter_frames(self, start: int = 0, stop: int | None = None,
                    chunk: int = 256) -> Iterator[np.ndarray]:
        """Yield single ``(H, W)`` frames, decoding ``chunk`` at a time."""
        for _, block in self.iter_chunks(start, stop, chunk):
            yield from block

    def iter_windows(self, length: int, stride: int = 1, start: int = 0,
                     stop: int | None = None, chunk: int = 256
                     ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_index, window)`` for windows ``(length, H, W)`` inside ``[start, stop)``.

        Each frame is decoded once; memory holds at most ``length + chunk`` frames.
        """
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        if length < 1 or stride < 1:
            raise ParameterError("window length and stride must be at least 1")
        if stop - start < length:
            raise ParameterError(
                f"window of {length} frames is longer than the {stop - start} frames available")
        buf = np.zeros((0, self.height, self.width), np.uint8)
        buf_start = start
        t0 = start
        read_pos = start
        while t0 + length <= stop:
            while buf_start + buf.shape[0] < t0 + length:
                nxt = self.read(read_pos, min(read_pos + max(chunk, length), stop))
                read_pos += nxt.shape[0]
                drop = max(0, t0 - buf_start)
                buf = np.concatenate([buf[drop:], nxt])
                buf_start += drop
            off = t0 - buf_start
            yield t0, buf[off:off + length]
            t0 += stride


class ArraySource(SpikeSource):
    """An in-memory or memory-mapped ``(T, H, W)`` array of 0/1 spikes."""

    def __init__(self, spikes: np.ndarray, name: str = "<array>") -> None:
        if spikes.ndim != 3:
            raise ParameterError(f"spikes must be (T, H, W), got shape {spikes.shape}")
        self.array = spikes
        self.name = name
        self.num_frames = spikes.shape[0]

    @property
    def height(self) -> int:
        return int(self.array.shape[1])

    @property
    def width(self) -> int:
        return int(self.array.shape[2])

    def read(self, start: int, stop: int) -> np.ndarray:
        block = np.asarray(self.array[max(0, start):max(0, stop)])
        if block.dtype != np.uint8:
            block = (block != 0).astype(np.uint8)
        return block
