"""Frame outputs: a folder of 8- or 16-bit PNGs, or one ``.npy`` stack ``(N, H, W)`` float32."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import TracebackType

import numpy as np

from spkrecon.errors import OutputError, ParameterError
from spkrecon.export.atomic import (
    PendingFile,
    atomic_dir,
    check_output,
    foreign_entries,
    write_error,
)
from spkrecon.tonemap import to_uint8, to_uint16

#: What a PNG frame folder holds: ``frame_NNNNNN.png`` and the ``frames.json`` sidecar.
_OWN_FRAME = re.compile(r"frame_\d{6,}\.png|frames\.json")
#: Output names that are files, never a folder of frames.
FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".mp4",
                 ".mkv", ".mov", ".avi", ".m4v", ".npz", ".dat", ".json", ".csv", ".txt",
                 ".md", ".pt", ".pth")


def frame_folder_foreign(folder: Path) -> list[str]:
    """What ``folder`` holds besides the frames and sidecar a :class:`PngFolderWriter`
    writes (``--force`` replaces a frame folder only when this is empty)."""
    return foreign_entries(folder, lambda rel, is_dir: not is_dir and len(rel.parts) == 1
                           and bool(_OWN_FRAME.fullmatch(rel.name)))


def frames_output_kind(path: str | os.PathLike) -> str:
    """``"npy"`` (one stack) or ``"png"`` (a folder of frames) for a frames output path;
    :class:`OutputError` for a name that is another kind of file (``x.png``, ``x.mp4``)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix in FILE_SUFFIXES and not p.is_dir():
        stem = p.with_suffix("")
        raise OutputError(f"{path} is a {suffix} file name, but frames are written to a folder "
                          "of PNGs or a .npy stack",
                          f"give a folder ({stem}/) or a .npy file ({stem}.npy)"
                          + ("; 'spkrecon video' writes a video" if suffix in
                             (".mp4", ".mkv", ".mov", ".avi", ".m4v") else ""))
    return "png"


def check_frames_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Validate a frames output (a PNG folder or a ``.npy``) before any work."""
    if frames_output_kind(path) == "npy":
        return check_output(path, force)
    return check_output(path, force, kind="dir", foreign=frame_folder_foreign)


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
        self.path = Path(path)
        self._ctx = atomic_dir(path, force, foreign=frame_folder_foreign)
        self.tmp = self._ctx.__enter__()
        self.count = 0

    def write(self, index: int, image: np.ndarray) -> None:
        from PIL import Image  # not imageio: its plugin objects complain when interrupted

        data = to_uint8(image) if self.bit_depth == 8 else to_uint16(image)
        try:
            Image.fromarray(np.ascontiguousarray(data)).save(
                self.tmp / f"frame_{index:06d}.png", format="PNG")
        except OSError as exc:
            raise write_error(self.path / f"frame_{index:06d}.png", exc) from None
        self.count += 1

    def close(self, exc: BaseException | None = None) -> None:
        failure: OutputError | None = None
        if exc is None and self.count == 0:
            failure = OutputError("no frames were written")
        elif exc is None and self.metadata is not None:
            try:
                (self.tmp / "frames.json").write_text(json.dumps(self.metadata, indent=2))
            except OSError as err:
                failure = write_error(self.path / "frames.json", err)
        if failure is not None:
            self._ctx.__exit__(type(failure), failure, None)
            raise failure
        if exc is None:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)


class NpyStackWriter(FrameWriter):
    """One ``.npy`` file ``(N, H, W)`` float32, filled frame by frame through a memory map."""

    def __init__(self, path: str | os.PathLike, count: int, height: int, width: int,
                 force: bool = False) -> None:
        if Path(path).suffix.lower() != ".npy":
            raise OutputError(f"{path}: a frame stack must end in .npy")
        self._pending = PendingFile(path, force)
        try:
            self._arr = np.lib.format.open_memmap(self._pending.tmp, mode="w+",
                                                  dtype=np.float32, shape=(count, height, width))
        except OSError as exc:
            self._pending.discard()
            raise write_error(self._pending.final, exc) from None
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
