"""``.npy`` / ``.npz`` spike arrays in ``(T, H, W)`` or ``(H, W, T)`` layout."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from spkrecon.errors import ParameterError, RecordingFormatError
from spkrecon.io.source import SpikeSource

Layout = Literal["auto", "thw", "hwt"]
_NPZ_KEYS = ("spikes", "spike", "spk", "arr_0")


def _guess_layout(shape: tuple[int, ...], height: int | None, width: int | None) -> str:
    if height is not None and width is not None:
        if shape[1:] == (height, width):
            return "thw"
        if shape[:2] == (height, width):
            return "hwt"
    # A frame is rarely much narrower than the frame count: (250, 400, 41) is H, W, T.
    if shape[2] < min(shape[0], shape[1]) / 2:
        return "hwt"
    return "thw"


class ArrayRecording(SpikeSource):
    """Spikes from a ``.npy`` (memory-mapped) or ``.npz`` (loaded) file.

    Arrays are taken as upright unless ``flip`` is set. Values must be 0/1 (bool or
    integers); a non-binary array raises :class:`RecordingFormatError`.
    """

    def __init__(self, path: str | Path, layout: Layout = "auto", flip: bool = False,
                 height: int | None = 250, width: int | None = 400, key: str | None = None
                 ) -> None:
        self.path = Path(path)
        arr = self._load(key)
        if arr.ndim != 3:
            raise RecordingFormatError(
                f"{self.path} holds an array of shape {arr.shape}; spikes must be 3-D "
                "(T, H, W) or (H, W, T)")
        if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer) \
                and not np.issubdtype(arr.dtype, np.floating):
            raise RecordingFormatError(f"{self.path} has dtype {arr.dtype}, not spikes")
        if layout not in ("auto", "thw", "hwt"):
            raise ParameterError(f"layout must be auto, thw or hwt, not {layout!r}")
        self.layout = _guess_layout(arr.shape, height, width) if layout == "auto" else layout
        self._arr = arr
        self.flip = flip
        self.num_frames = arr.shape[0] if self.layout == "thw" else arr.shape[2]
        if self.num_frames == 0:
            raise RecordingFormatError(f"{self.path} holds no frames")
        self.read(0, min(self.num_frames, 64))  # fails early on a non-binary array

    def _load(self, key: str | None) -> np.ndarray:
        from spkrecon.io.sniff import sniff_file

        npz = self.path.suffix.lower() == ".npz"
        kind = sniff_file(self.path, 16)
        expected = "a zip archive" if npz else "a numpy .npy array"
        if self.path.stat().st_size == 0:
            raise RecordingFormatError(f"{self.path} is empty", "pass a spike recording")
        if kind is None or not kind.startswith(expected):
            what = f"is {kind}" if kind else f"is not a numpy {'.npz' if npz else '.npy'} file"
            raise RecordingFormatError(f"{self.path} {what}, not a spike array",
                                       "give a .dat, .npy or .npz recording")
        try:
            if npz:
                with np.load(self.path, allow_pickle=False) as z:
                    names = list(z.keys())
                    pick = key or next((k for k in _NPZ_KEYS if k in names), None)
                    if pick is None and len(names) == 1:
                        pick = names[0]
                    if pick not in names:
                        raise RecordingFormatError(
                            f"{self.path} holds arrays {', '.join(names) or '(none)'}; none is "
                            f"named {' / '.join(_NPZ_KEYS)}",
                            "save the spikes under the name 'spikes' "
                            "(numpy.savez(path, spikes=array))")
                    arr = z[pick]
                    if not isinstance(arr, np.ndarray):
                        raise RecordingFormatError(
                            f"{self.path} holds '{pick}', which is not a numpy array",
                            "an .npz recording holds its spikes as a .npy array named 'spikes'")
                    return arr
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            if "pickle" in str(exc):
                raise RecordingFormatError(
                    f"{self.path} holds Python objects (an object array), which spkrecon "
                    "never loads: loading them could run code",
                    "save the spikes as a numeric (bool or uint8) array") from None
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise RecordingFormatError(f"{self.path} is not a readable numpy file ({first})",
                                       "the file may be damaged or truncated") from None

    def _check_binary(self, block: np.ndarray) -> None:
        if block.dtype == np.bool_ or not block.size:
            return
        if np.issubdtype(block.dtype, np.floating) and np.isnan(block).any():
            raise RecordingFormatError(f"{self.path} holds NaN values, not binary spikes",
                                       "spike arrays hold 0/1 per pixel and frame")
        if np.any((block != 0) & (block != 1)):
            raise RecordingFormatError(
                f"{self.path} is not a binary spike array (values from {block.min()} to "
                f"{block.max()})", "spike arrays hold 0/1 per pixel and frame")

    @property
    def height(self) -> int:
        return int(self._arr.shape[1] if self.layout == "thw" else self._arr.shape[0])

    @property
    def width(self) -> int:
        return int(self._arr.shape[2] if self.layout == "thw" else self._arr.shape[1])

    def read(self, start: int, stop: int, check: bool = True) -> np.ndarray:
        s, e = max(0, start), min(self.num_frames, max(0, stop))
        block = self._arr[s:e] if self.layout == "thw" else np.moveaxis(self._arr[:, :, s:e], 2, 0)
        block = np.asarray(block)
        if check:
            self._check_binary(block)
        if block.dtype != np.uint8:
            block = block.astype(np.uint8)
        if self.flip:
            block = block[:, ::-1, :]
        return np.ascontiguousarray(block)
