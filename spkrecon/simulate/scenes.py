"""Scenes: light ``(B, n, H, W)`` in [0, 1] at any readout time, and their inputs.

A :class:`Scene` answers :meth:`Scene.light_at` for float times in readout steps, so the
simulator can sample the light at every step (and between steps). Stills are moved by
``spkrecon.simulate.motion``; frame sequences are interpolated between frames (linear
blending or optical-flow warping) with ``steps_per_frame`` readout steps per frame.

Light is the grey value / 255 (ITU-R BT.601 luma of RGB inputs), the convention of the
REDS-simulated data (rate = alpha * light).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkrecon.errors import InputError, ParameterError
from spkrecon.io.sniff import unreadable

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")
INTERPOLATIONS = ("flow", "linear")


# -- loading ---------------------------------------------------------------------------
def to_grey(arr: np.ndarray) -> np.ndarray:
    """An image array (H, W), (H, W, 1|2|3|4) of any integer/float type -> float32 [0, 1]."""
    a = np.asarray(arr)
    if np.issubdtype(a.dtype, np.integer):
        scale = float(np.iinfo(a.dtype).max)
    elif a.dtype == np.bool_:
        scale = 1.0
    else:
        scale = 1.0
    a = a.astype(np.float32) / np.float32(scale)
    if a.ndim == 3:
        if a.shape[2] in (1, 2):
            a = a[..., 0]
        elif a.shape[2] in (3, 4):
            a = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
        else:
            raise InputError(f"an image with {a.shape[2]} channels is not supported")
    if a.ndim != 2:
        raise InputError(f"expected an image, got an array of shape {a.shape}")
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def load_grey(path: str | Path) -> np.ndarray:
    """Read an image file as grey float32 ``(H, W)`` in [0, 1]."""
    import imageio.v3 as iio

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist or is not a file")
    try:
        arr = iio.imread(p)
    except Exception as exc:  # imageio raises many types for unreadable files
        raise InputError(unreadable(p, "image", exc)) from None
    if arr.ndim == 4:  # animated formats: first frame
        arr = arr[0]
    return to_grey(arr)


def _natural_key(p: Path) -> list[Any]:
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", p.name)]


def list_frames(folder: str | Path) -> list[Path]:
    """Image files of a frame folder in natural order (``frame_2`` before ``frame_10``)."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d} is not a folder of frames")
    frames = sorted((f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file()),
                    key=_natural_key)
    if not frames:
        raise InputError(f"{d} holds no image frames ({', '.join(IMAGE_EXTS)})")
    return frames


def input_kind(path: str | Path) -> str:
    """``"image"``, ``"frames"`` (a folder) or ``"video"`` for a simulator input."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist", "give an image, a folder of frames or a video")
    if p.is_dir():
        return "frames"
    suffix = p.suffix.lower()
    if suffix in IMAGE_EXTS:
        return "image"
    if suffix in VIDEO_EXTS:
        return "video"
    raise InputError(f"{p} is neither an image ({', '.join(IMAGE_EXTS)}) nor a video "
                     f"({', '.join(VIDEO_EXTS)})")


def count_video_frames(path: str | Path) -> int:
    """Exact frame count of a video file (decodes it once with ffmpeg)."""
    import imageio_ffmpeg

    try:
        n, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except Exception as exc:
        raise InputError(unreadable(path, "video", exc)) from None
    if n < 1:
        raise InputError(f"{path} holds no video frames")
    return int(n)


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Grey float32 frames ``(H, W)`` of a video file, decoded by ffmpeg one at a time."""
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="gray", bits_per_pixel=8)
        meta = next(gen)
    except Exception as exc:
        raise InputError(unreadable(path, "video", exc)) from None
    w, h = meta["size"]
    try:
        for raw in gen:
            yield np.frombuffer(raw, np.uint8).reshape(h, w).astype(np.float32) / 255.0
    finally:
        gen.close()


def iter_frame_files(paths: Iterable[Path]) -> Iterator[np.ndarray]:
    for p in paths:
        yield load_grey(p)


# -- geometry helpers -----------------------------------------------------------------
def resize_cover(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale ``(..., H, W)`` to cover ``height x width`` (antialiased) and crop the centre."""
    h, w = img.shape[-2:]
    scale = max(height / h, width / w)
    nh, nw = max(height, math.ceil(h * scale - 1e-6)), max(width, math.ceil(w * scale - 1e-6))
    from spkrecon.simulate.exact import resize

    x = img.float()
    if (nh, nw) != (h, w):  # antialiased bilinear, in exactly rounded steps (any CPU, same bits)
        x = resize(x, nh, nw).float()
    top, left = (nh - height) // 2, (nw - width) // 2
    return x[..., top:top + height, left:left + width].clamp(0.0, 1.0)


# -- scenes ------------------------------------------------------------------------------
class Scene(ABC):
    """Light of ``batch`` scenes of ``height x width`` pixels as a function of time."""

    batch: int
    height: int
    width: int
    device: torch.device
    #: Natural length in readout steps (``None``: endless, e.g. a still under a path).
    num_steps: int | None = None

    @abstractmethod
    def light_at(self, times: torch.Tensor) -> torch.Tensor:
        """Light ``(B, n, H, W)`` float32 in [0, 1] at float ``times (n,)`` (readout steps)."""

    def describe(self) -> dict[str, Any]:
        """Parameters for sidecars."""
        return {"kind": type(self).__name__, "batch": self.batch, "height": self.height,
                "width": self.width}


class StaticScene(Scene):
    """A still image ``(B, H, W)`` or ``(H, W)`` that never moves."""

    def __init__(self, image: torch.Tensor) -> None:
        img = image if image.ndim == 3 else image[None]
        if img.ndim != 3:
            raise ParameterError(f"image must be (H, W) or (B, H, W), got {tuple(image.shape)}")
        self.image = img.float().clamp(0.0, 1.0)
        self.batch, self.height, self.width = img.shape
        self.device = img.device

    def light_at(self, times: torch.Tensor) -> torch.Tensor:
        return self.image[:, None].expand(self.batch, times.numel(), self.height, self.width)


def _split_times(times: torch.Tensor, steps_per_frame: float, frames: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame pair index and fraction for each time; times outside the clip hold its ends."""
    u = (times.double() / steps_per_frame).clamp(0.0, frames - 1.0)
    i0 = torch.floor(u).clamp(max=max(frames - 2, 0))
    return i0.long(), (u - i0).float()


class FrameScene(Scene):
    """Frames ``(B, S, H, W)`` in memory, ``steps_per_frame`` readout steps apart.

    Frame ``k`` is the light at step ``k * steps_per_frame``; between frames the light is
    blended linearly (``interp="linear"``) or warped along optical flow (``"flow"``).
    """

    def __init__(self, frames: torch.Tensor, steps_per_frame: float = 1.0,
                 interp: str = "linear") -> None:
        if frames.ndim != 4:
            raise ParameterError(f"frames must be (B, S, H, W), got {tuple(frames.shape)}")
        if not steps_per_frame > 0:
            raise ParameterError(f"steps per frame must be positive, got {steps_per_frame}")
        if interp not in INTERPOLATIONS:
            raise ParameterError(f"unknown interpolation '{interp}'",
                                 f"use one of {', '.join(INTERPOLATIONS)}")
        self.frames = frames.float().clamp(0.0, 1.0)
        self.batch, self.count, self.height, self.width = frames.shape
        self.device = frames.device
        self.steps_per_frame = float(steps_per_frame)
        self.interp = interp
        self.num_steps = int(math.floor((self.count - 1) * self.steps_per_frame + 1e-9)) + 1
        self._pairs: dict[int, Any] = {}

    def _pair(self, i: int) -> Any:
        from spkrecon.simulate.flow import prepare_pair

        if i not in self._pairs:
            self._pairs = {i: prepare_pair(self.frames[:, i:i + 1], self.frames[:, i + 1:i + 2])}
        return self._pairs[i]

    def light_at(self, times: torch.Tensor) -> torch.Tensor:
        if self.count == 1:
            return self.frames.expand(self.batch, times.numel(), self.height, self.width)
        idx, tau = _split_times(times, self.steps_per_frame, self.count)
        idx, tau = idx.to(self.device), tau.to(self.device)
        if self.interp == "linear":
            a = self.frames[:, idx]
            b = self.frames[:, idx + 1]
            t = tau.view(1, -1, 1, 1)
            return a + (b - a) * t
        from spkrecon.simulate.flow import interpolate

        out = torch.empty((self.batch, times.numel(), self.height, self.width), device=self.device)
        for i in torch.unique(idx).tolist():
            sel = (idx == i).nonzero().flatten()
            out[:, sel] = interpolate(self._pair(i), tau[sel])
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "frames": self.count,
                "steps_per_frame": self.steps_per_frame, "interp": self.interp}


class VideoScene(Scene):
    """A frame sequence streamed from disk (``B = 1``), read forward once.

    ``frames`` yields grey ``(H0, W0)`` arrays; each is scaled to cover ``size`` and
    centre-cropped. Only the two frames around the current time (and their flows) are held.
    """

    def __init__(self, frames: Iterable[np.ndarray], num_frames: int,
                 size: tuple[int, int] | None = None, steps_per_frame: float = 8.0,
                 interp: str = "flow", device: str | torch.device = "cpu",
                 flow_max_side: int = 256) -> None:
        if num_frames < 1:
            raise InputError("the frame sequence is empty")
        if not steps_per_frame > 0:
            raise ParameterError(f"steps per frame must be positive, got {steps_per_frame}")
        if interp not in INTERPOLATIONS:
            raise ParameterError(f"unknown interpolation '{interp}'",
                                 f"use one of {', '.join(INTERPOLATIONS)}")
        self._iter = iter(frames)
        self.count = int(num_frames)
        self.device = torch.device(device)
        self.steps_per_frame = float(steps_per_frame)
        self.interp = interp
        self.flow_max_side = flow_max_side
        self._cache: dict[int, torch.Tensor] = {}
        self._next = 0
        self._pair_cache: tuple[int, Any] | None = None
        self.size = size
        first = self._read_next()
        self.batch = 1
        self.height, self.width = first.shape[-2:]
        self.num_steps = int(math.floor((self.count - 1) * self.steps_per_frame + 1e-9)) + 1

    def _read_next(self) -> torch.Tensor:
        try:
            arr = next(self._iter)
        except StopIteration:
            raise InputError(f"the frame sequence ended after {self._next} of {self.count} "
                             "frames") from None
        t = torch.as_tensor(np.asarray(arr, np.float32), device=self.device)
        if self.size is not None:
            t = resize_cover(t, *self.size)
        elif hasattr(self, "height") and tuple(t.shape) != (self.height, self.width):
            raise InputError(f"frame {self._next} is {tuple(t.shape)}, not "
                             f"{(self.height, self.width)} like the first frame")
        self._cache[self._next] = t.view(1, 1, *t.shape[-2:])
        self._next += 1
        return self._cache[self._next - 1]

    def _frame(self, i: int) -> torch.Tensor:
        if i in self._cache:
            return self._cache[i]
        if i < self._next:
            raise ParameterError("video scenes are read forward only; ask for times in order")
        while self._next <= i:
            self._read_next()
        for k in [k for k in self._cache if k < i - 1]:
            del self._cache[k]
        return self._cache[i]

    def _pair(self, i: int) -> Any:
        from spkrecon.simulate.flow import prepare_pair

        if self._pair_cache is None or self._pair_cache[0] != i:
            self._pair_cache = (i, prepare_pair(self._frame(i), self._frame(i + 1),
                                                max_side=self.flow_max_side))
        return self._pair_cache[1]

    def light_at(self, times: torch.Tensor) -> torch.Tensor:
        n = times.numel()
        if self.count == 1:
            return self._frame(0)[:, :1].expand(1, n, self.height, self.width)
        idx, tau = _split_times(times, self.steps_per_frame, self.count)
        out = torch.empty((1, n, self.height, self.width), device=self.device)
        tau = tau.to(self.device)
        for i in torch.unique(idx).tolist():
            sel = (idx == i).nonzero().flatten().to(self.device)
            if self.interp == "linear":
                a, b = self._frame(i), self._frame(i + 1)
                t = tau[sel].view(1, -1, 1, 1)
                out[:, sel] = a[:, 0:1] + (b[:, 0:1] - a[:, 0:1]) * t
            else:
                from spkrecon.simulate.flow import interpolate

                out[:, sel] = interpolate(self._pair(i), tau[sel])
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "frames": self.count,
                "steps_per_frame": self.steps_per_frame, "interp": self.interp}


class GainScene(Scene):
    """``clip(gain * light, 0, 1)`` of another scene; ``gain`` a number or one per scene
    ``(B,)`` (light levels for suites and training)."""

    def __init__(self, inner: Scene, gain: float | torch.Tensor) -> None:
        self.inner = inner
        self.gain = gain.float().view(-1, 1, 1, 1) if isinstance(gain, torch.Tensor) \
            else float(gain)
        self.batch, self.height, self.width = inner.batch, inner.height, inner.width
        self.device, self.num_steps = inner.device, inner.num_steps

    def light_at(self, times: torch.Tensor) -> torch.Tensor:
        return (self.inner.light_at(times) * self.gain).clamp_(0.0, 1.0)

    def describe(self) -> dict[str, Any]:
        gain = self.gain if isinstance(self.gain, float) else self.gain.view(-1).tolist()
        return {**self.inner.describe(), "gain": gain}
