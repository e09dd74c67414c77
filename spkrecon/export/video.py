"""H.264 (yuv420p) MP4 through imageio-ffmpeg's bundled ffmpeg, at the frames' exact size."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import numpy as np

from spkrecon.errors import OutputError, ParameterError
from spkrecon.export.atomic import PendingFile
from spkrecon.tonemap import to_uint8


class VideoWriter:
    """Write grey float [0, 1] frames ``(H, W)`` to an MP4 that ordinary players read.

    yuv420p needs even sides: an odd height or width gets one replicated row or column
    (the only case where the video is not the frames' exact size). The file appears under
    its final name only when closed without error; on an error or Ctrl-C the partial file
    is removed.
    """

    PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
               "slower", "veryslow")

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, crf: int = 18,
                 force: bool = False, preset: str = "veryfast") -> None:
        if not 0 < fps <= 1000:
            raise ParameterError(f"fps must be in (0, 1000], got {fps}")
        if not 0 <= crf <= 51:
            raise ParameterError(f"crf must be in 0..51, got {crf}")
        if preset not in self.PRESETS:
            raise ParameterError(f"unknown x264 preset '{preset}'",
                                 f"use one of {', '.join(self.PRESETS)}")
        self.preset = preset
        if Path(path).suffix.lower() not in (".mp4", ".m4v", ".mov", ".mkv"):
            raise ParameterError(f"{path}: the video name must end in .mp4 (or .mkv/.mov)")
        self.fps, self.crf = fps, crf
        self._pending = PendingFile(path, force)
        self._tmp: Path = self._pending.tmp
        self.path = self._pending.final
        self._gen = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def _open(self, h: int, w: int) -> None:
        import imageio_ffmpeg

        self._size = (h, w)
        self._pad = (h % 2, w % 2)
        self._gen = imageio_ffmpeg.write_frames(
            str(self._tmp), (w + self._pad[1], h + self._pad[0]), fps=self.fps,
            codec="libx264", pix_fmt_in="gray", pix_fmt_out="yuv420p", macro_block_size=1,
            quality=None, ffmpeg_log_level="error",
            output_params=["-crf", str(self.crf), "-preset", self.preset,
                           "-movflags", "+faststart"])
        self._gen.send(None)

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W)`` float [0, 1] (or uint8) frame."""
        if frame.ndim != 2:
            raise ParameterError(f"video frames must be (H, W), got {frame.shape}")
        if self._gen is None:
            self._open(*frame.shape)
        elif frame.shape != self._size:
            raise ParameterError(f"frame size changed from {self._size} to {frame.shape}")
        img = frame if frame.dtype == np.uint8 else to_uint8(frame)
        if any(self._pad):
            img = np.pad(img, ((0, self._pad[0]), (0, self._pad[1])), mode="edge")
        try:
            self._gen.send(np.ascontiguousarray(img))
        except (OSError, RuntimeError) as exc:
            raise OutputError(f"ffmpeg failed while writing the video: {exc}") from None
        self.frames_written += 1

    def close(self, exc: BaseException | None = None) -> None:
        """Finish and publish the file, or discard it when ``exc`` (the failure) is given."""
        gen, self._gen = self._gen, None
        failure: OutputError | None = None
        if gen is not None:
            try:
                gen.close()
            except (OSError, RuntimeError) as err:
                failure = OutputError(f"ffmpeg failed to finish the video: {err}")
        if failure is None and self.frames_written == 0:
            failure = OutputError("no frames to write: the video would be empty")
        if exc is not None or failure is not None:
            self._pending.discard()
            if exc is None and failure is not None:
                raise failure
            return
        self._pending.commit()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(ev)
