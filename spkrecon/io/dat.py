"""The Vidar ``.dat`` spike format: headerless concatenated bit frames.

Pixel ``p = y*W + x`` is bit ``p & 7`` (least significant first) of byte ``p >> 3`` of its
frame, and rows are stored bottom-up: a decoded frame is flipped vertically.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from spkrecon.errors import InputError, ParameterError, RecordingFormatError
from spkrecon.io.source import SpikeSource

#: Sensor sizes seen in the wild, as (height, width), used to suggest a fix.
COMMON_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (250, 400),
    (250, 416),
    (1000, 1000),
    (500, 800),
    (480, 640),
    (400, 250),
)


def frame_bytes(height: int, width: int) -> int:
    """Bytes of one ``height x width`` bit frame; the pixel count must be a multiple of 8."""
    if height <= 0 or width <= 0:
        raise ParameterError(f"resolution must be positive, got {height}x{width}")
    if (height * width) % 8:
        raise ParameterError(
            f"{height}x{width} has {height * width} pixels, not a multiple of 8: "
            "a .dat frame holds whole bytes"
        )
    return height * width // 8


def fitting_resolutions(size: int) -> list[tuple[int, int]]:
    """Common resolutions whose frame size divides ``size`` bytes."""
    return [(h, w) for h, w in COMMON_RESOLUTIONS if size % frame_bytes(h, w) == 0]


def decode(data: bytes | bytearray | memoryview | np.ndarray, height: int = 250,
           width: int = 400) -> np.ndarray:
    """Decode whole frames of ``.dat`` bytes to upright spikes ``(T, H, W)`` uint8 0/1."""
    fb = frame_bytes(height, width)
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    raw = raw.reshape(-1)
    if raw.size % fb:
        raise RecordingFormatError(
            f"{raw.size} bytes is not a whole number of {height}x{width} frames ({fb} bytes each)"
        )
    n = raw.size // fb
    if width % 8 == 0:
        # Flip whole byte rows before unpacking: the result is contiguous and upright.
        rows = raw.reshape(n, height, width // 8)[:, ::-1, :]
        return np.unpackbits(rows, axis=2, bitorder="little")
    bits = np.unpackbits(raw.reshape(n, fb), axis=1, bitorder="little")
    return np.ascontiguousarray(bits.reshape(n, height, width)[:, ::-1, :])


def encode(spikes: np.ndarray) -> bytes:
    """Encode upright spikes ``(T, H, W)`` (bool or 0/1 integers) to ``.dat`` bytes."""
    spikes = np.asarray(spikes)
    if spikes.ndim == 2:
        spikes = spikes[None]
    if spikes.ndim != 3:
        raise ParameterError(f"spikes must be (T, H, W), got shape {spikes.shape}")
    t, h, w = spikes.shape
    frame_bytes(h, w)
    flipped = np.ascontiguousarray(spikes[:, ::-1, :]).reshape(t, h * w) != 0
    return np.packbits(flipped, axis=1, bitorder="little").tobytes()


def write_dat(path: str | os.PathLike, spikes: np.ndarray) -> None:
    """Write upright spikes ``(T, H, W)`` to a ``.dat`` file (whole, not atomic)."""
    Path(path).write_bytes(encode(spikes))


class DatRecording(SpikeSource):
    """A ``.dat`` recording read through a memory map, a chunk at a time.

    ``crop_right`` drops columns on the right after decoding (16 for the header of
    416-wide captures). Pages already decoded are released so resident memory stays
    bounded on recordings of many GB.
    """

    def __init__(self, path: str | os.PathLike, height: int = 250, width: int = 400,
                 crop_right: int = 0) -> None:
        self.path = Path(path)
        self.raw_height, self.raw_width = height, width
        self._fb = frame_bytes(height, width)
        if not 0 <= crop_right < width:
            raise ParameterError(f"cannot crop {crop_right} columns from a {width}-wide frame")
        self.crop_right = crop_right
        size = self.path.stat().st_size
        if size == 0:
            raise RecordingFormatError(f"{self.path} is empty", "pass a spike recording")
        not_spikes(self.path)
        if size % self._fb:
            fits = [f"{h}x{w}" for h, w in fitting_resolutions(size)]
            whole, extra = divmod(size, self._fb)
            hint = (f"sizes that fit: {', '.join(fits)} (use --height/--width)" if fits
                    else f"it holds {whole} whole frames and {extra} bytes more: the file may "
                    "be truncated (no common resolution fits its size)")
            raise RecordingFormatError(
                f"{self.path} is {size} bytes, not a whole number of {height}x{width} frames "
                f"({self._fb} bytes each)", hint)
        self.num_frames = size // self._fb
        self._file = open(self.path, "rb")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self._buf = np.frombuffer(self._mm, dtype=np.uint8)

    @property
    def height(self) -> int:
        return self.raw_height

    @property
    def width(self) -> int:
        return self.raw_width - self.crop_right

    def fitting_resolutions(self) -> list[tuple[int, int, int]]:
        """``(height, width, frames)`` of every resolution the file's size fits: the one it
        is read as first, then the common ones (:data:`COMMON_RESOLUTIONS`)."""
        size = self.num_frames * self._fb
        out = [(self.raw_height, self.raw_width, self.num_frames)]
        out += [(h, w, size // frame_bytes(h, w)) for h, w in fitting_resolutions(size)
                if (h, w) != (self.raw_height, self.raw_width)]
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` as upright ``(n, H, W)`` uint8 0/1."""
        start, stop = max(0, start), min(self.num_frames, stop)
        if stop <= start:
            return np.zeros((0, self.height, self.width), np.uint8)
        lo, hi = start * self._fb, stop * self._fb
        out = decode(self._buf[lo:hi], self.raw_height, self.raw_width)
        if self.crop_right:
            out = np.ascontiguousarray(out[:, :, : self.width])
        self._release(lo, hi)
        return out

    def _release(self, lo: int, hi: int) -> None:
        if not hasattr(mmap, "MADV_DONTNEED"):  # pragma: no cover - non-Linux
            return
        page = mmap.PAGESIZE
        lo = (lo // page) * page
        if hi - lo >= page:
            try:
                self._mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            except (OSError, ValueError):  # pragma: no cover - best effort
                pass

    def close(self) -> None:
        try:
            del self._buf
            self._mm.close()
        except (AttributeError, BufferError):
            pass
        self._file.close()


def not_spikes(path: Path) -> None:
    """Raise :class:`RecordingFormatError` when the file's content shows it is something
    else (an image, a video, text, an archive...), whatever its size."""
    from spkrecon.io.sniff import recording_hint, sniff_file

    kind = sniff_file(path)
    if kind is not None:
        raise RecordingFormatError(f"{path} is {kind}, not a spike recording",
                                   recording_hint(kind))


def check_dat_path(path: Path) -> None:
    """Raise a clear InputError when ``path`` cannot be a recording file."""
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a recording file")
