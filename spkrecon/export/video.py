"""H.264 (yuv420p) MP4 through imageio-ffmpeg's bundled ffmpeg, at the frames' exact size."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np

from spkrecon.errors import OutputError, ParameterError
from spkrecon.export.atomic import PendingFile, write_error
from spkrecon.io.sniff import ffmpeg_reason
from spkrecon.tonemap import to_uint8

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")


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
        if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
            raise OutputError(f"{path}: the video name must end in .mp4 (or .mkv/.mov)",
                              f"use {Path(path).with_suffix('.mp4')}")
        self.fps, self.crf = fps, crf
        self._pending = PendingFile(path, force)
        self._tmp: Path = self._pending.tmp
        self.path = self._pending.final
        try:  # fail now, not after the reconstruction, when the file cannot be created
            self._tmp.open("wb").close()
        except OSError as exc:
            self._pending.discard()
            raise write_error(self.path, exc) from None
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def _open(self, h: int, w: int) -> None:
        import imageio_ffmpeg

        self._size = (h, w)
        self._pad = (h % 2, w % 2)
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-nostdin",
               "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w + self._pad[1]}x{h + self._pad[0]}",
               "-r", f"{self.fps:g}", "-i", "-", "-an", "-vcodec", "libx264",
               "-pix_fmt", "yuv420p", "-crf", str(self.crf), "-preset", self.preset,
               "-movflags", "+faststart", str(self._tmp)]
        # ffmpeg's messages go to a file (one line of them is reported on failure), and it
        # runs in its own session: Ctrl-C reaches spkrecon, which stops it and cleans up.
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._log, start_new_session=True)

    def _failure(self, what: str) -> OutputError:
        reason = ""
        if self._log is not None:
            self._log.seek(0)
            reason = ffmpeg_reason(self._log.read().decode("utf-8", "replace"))
        return OutputError(f"ffmpeg could not {what} {self.path}" +
                           (f": {reason}" if reason else ""),
                           "check the output folder and its free space")

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W)`` float [0, 1] (or uint8) frame."""
        if frame.ndim != 2:
            raise ParameterError(f"video frames must be (H, W), got {frame.shape}")
        if self._proc is None:
            self._open(*frame.shape)
        elif frame.shape != self._size:
            raise ParameterError(f"frame size changed from {self._size} to {frame.shape}")
        img = frame if frame.dtype == np.uint8 else to_uint8(frame)
        if any(self._pad):
            img = np.pad(img, ((0, self._pad[0]), (0, self._pad[1])), mode="edge")
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(img).tobytes())
        except OSError:
            self._proc.wait()
            raise self._failure("write") from None
        self.frames_written += 1

    def close(self, exc: BaseException | None = None) -> None:
        """Finish and publish the file, or discard it when ``exc`` (the failure) is given."""
        proc, self._proc = self._proc, None
        failure: OutputError | None = None
        if proc is not None:
            if exc is not None:
                proc.kill()
                proc.wait()
            try:
                assert proc.stdin is not None
                proc.stdin.close()
            except OSError:
                pass
            if exc is None:
                try:
                    code = proc.wait()
                except BaseException:  # interrupted while ffmpeg finishes
                    proc.kill()
                    proc.wait()
                    self._pending.discard()
                    raise
                if code != 0:
                    failure = self._failure("finish")
        if self._log is not None:
            self._log.close()
            self._log = None
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
