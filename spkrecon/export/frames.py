"""Frame outputs: a folder of 8- or 16-bit PNGs, or one ``.npy`` stack ``(N, H, W)`` float32."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType

import numpy as np

from spkrecon.errors import OutputError, ParameterError
from spkrecon.export.atomic import PendingFile, atomic_dir
from spkrecon.tonemap import to_uint8, to_uint16


class FrameWriter:
    """Common interface: ``write(index, image)``, then ``close()``; a context manager."""

    def write(self, index: int, image: np.ndarray) -> None:
        raise NotImplementedError

    def close(self, exc: BaseException | None = None) -> None:
        raise NotImplementedError

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(ev)


class PngFolderWriter(FrameWriter):
    """``DIR/frame_000123.png`` (index = recording frame), grey, 8 or 16 bit.

    The folder appears under its final name only when complete.
    """

    def __init__(self, path: str | os.PathLike, bit_depth: int = 8, force: bool = False,
                 metadata: dict | None = None) -> None:
        if bit_depth not in (8, 16):
            raise ParameterError(f"PNG bit depth must be 8 or 16, got {bit_depth}")
        self.bit_depth = bit_depth
        self.metadata = metadata
        self._ctx = atomic_dir(path, force)
        self.tmp = self._ctx.__enter__()
        self.count = 0

    def write(self, index: int, image: np.ndarray) -> None:
        import imageio.v3 as iio

        data = to_uint8(image) if self.bit_depth == 8 else to_uint16(image)
        try:
            iio.imwrite(self.tmp / f"frame_{index:06d}.png", data)
        except OSError as exc:
            raise OutputError(f"cannot write frame {index}: {exc}") from None
        self.count += 1

    def close(self, exc: BaseException | None = None) -> None:
        if exc is None and self.count == 0:
            exc = OutputError("no frames were written")
            self._ctx.__exit__(type(exc), exc, None)
            raise exc
        if exc is None and self.metadata is not None:
            (self.tmp / "frames.json").write_text(json.dumps(self.metadata, indent=2))
        if exc is None:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)


class NpyStackWriter(FrameWriter):
    """One ``.npy`` file ``(N, H, W)`` float32, filled frame by frame through a memory map."""

    def __init__(self, path: str | os.PathLike, count: int, height: int, width: int,
                 force: bool = False) -> None:
        if Path(path).suffix.lower() != ".npy":
            raise ParameterError(f"{path}: a frame stack must end in .npy")
        self._pending = PendingFile(path, force)
        self._arr = np.lib.format.open_memmap(self._pending.tmp, mode="w+", dtype=np.float32,
                                              shape=(count, height, width))
        self.indices: list[int] = []

    def write(self, index: int, image: np.ndarray) -> None:
        self._arr[len(self.indices)] = image
        self.indices.append(index)

    def close(self, exc: BaseException | None = None) -> None:
        arr, self._arr = self._arr, None
        if arr is None:
            return
        if exc is None and len(self.indices) != arr.shape[0]:
            exc = OutputError(f"wrote {len(self.indices)} of {arr.shape[0]} frames")
            arr.flush()
            del arr
            self._pending.discard()
            raise exc
        arr.flush()
        del arr
        if exc is None:
            self._pending.commit()
        else:
            self._pending.discard()
