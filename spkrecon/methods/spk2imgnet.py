"""Spk2ImgNet as a reconstructor: whole recordings, streaming, with work shared across frames.

Zhao, Xiong, Liu, Zhang, Huang. "Spk2ImgNet: Learning to Reconstruct Dynamic Scene from
Continuous Spike Stream", CVPR 2021. The network is :mod:`spkrecon.models.spk2imgnet`.

Each output frame ``t`` reads the 41 frames ``t-20 .. t+20`` as five 13-frame blocks
centred at ``t-14, t-7, t, t+7, t+14``. A block's features (SALI, feature extractor,
alignment pyramid) do not depend on which output frame uses them, so :meth:`stream` computes
them once per block and keeps them in a cache that slides with the output frames (ascending):
at stride 1 or 7 each block serves five output frames, and only alignment, reliability and
fusion run per output frame. The cache holds the blocks between ``t-14`` and
``t+14`` of the current batch: 28 + batch_size blocks at stride 1 (84 channels each, 34 MB at
250x400 in fp32: about 1 GB), 4 + batch_size at stride 7; it does not grow with the
recording. Where that could pass ``cache_mb`` (large frames: about 10 GB at 1000x1000), the
stream runs the plain per-frame forward pass instead, which holds five blocks per output
frame. Spike frames are read from the source in chunks as the window advances.
``reuse=False`` always runs the plain per-frame forward pass (same numbers, to 1e-5).

Edges: where fewer than 20 frames exist before (after) ``t``, the window is completed by
reflecting frames in time about the first (last) frame, without repeating it (numpy's
``reflect``). Frame size: height and width are padded to multiples of 4 by symmetric
padding at the bottom/right (250 -> 252, as the authors do) and cropped back.

Output: the network estimates ``alpha * intensity`` (alpha = 0.6 in the training data), i.e.
a firing rate; it is clipped to [0, 1], so ``ToneMapper("alpha")`` divides by alpha as for
the other methods (the authors' ``clip(out / 0.6, 0, 1)``) and ``auto`` suits real data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import numpy as np

from spkrecon.errors import DeviceError, ParameterError, SpkreconError
from spkrecon.io.source import ArraySource, SpikeSource
from spkrecon.methods.base import Reconstructor

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX-BF16).

    Elsewhere CPU autocast to bf16 is emulated and slower than fp32.
    """
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported() and torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):  # private API: absent or changed in this torch
        return False


def resolve_precision(precision: str, device: Any) -> str:
    """``auto`` -> ``bf16`` on a CPU with native bf16 (:func:`cpu_native_bf16`), else
    ``fp32``; any other precision is returned as it is."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and cpu_native_bf16() else "fp32"


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map frame indices outside ``[0, n)`` back inside by reflection (period ``2(n-1)``)."""
    if n <= 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m < n, m, period - m)


def resolve_device(spec: str | None) -> Any:
    """``auto``/``cpu``/``cuda[:N]`` -> ``torch.device``; DeviceError when unavailable."""
    import torch

    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index = text.partition(":")[2]
        if index and not index.isdigit():
            raise ParameterError(f"invalid device {spec!r}", "use auto, cpu, cuda or cuda:N")
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} requested but CUDA is not available "
                              f"(torch {torch.__version__}, no usable NVIDIA GPU)",
                              "use --device cpu or --device auto")
        n = torch.cuda.device_count()
        if index and int(index) >= n:
            raise DeviceError(f"device {spec!r} requested but only {n} CUDA device(s) exist",
                              f"use cuda:0 .. cuda:{n - 1}")
        return torch.device(text if index else "cuda")
    raise ParameterError(f"unknown device {spec!r}", "use auto, cpu, cuda or cuda:N")


def check_precision(precision: str, device: Any) -> Any:
    """The autocast dtype for ``precision`` on ``device`` (``None`` for fp32)."""
    import torch

    if precision not in PRECISIONS:
        raise ParameterError(f"unknown precision {precision!r}",
                             f"use one of {', '.join(PRECISIONS)}")
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return None
    if device.type == "cpu":
        if precision == "fp16":
            raise DeviceError("fp16 is not supported on the CPU",
                              "use --precision fp32 (or bf16, through CPU autocast)")
        return torch.bfloat16
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"bf16 is not supported by {torch.cuda.get_device_name(device)}",
                          "use --precision fp16 or fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16


class Spk2ImgNet(Reconstructor):
    """Spk2ImgNet rates ``(T, H, W) -> (N, H, W)``; see the module docstring."""

    name = "spk2imgnet"
    summary = "Spk2ImgNet CNN: SALI, deformable alignment, reliability fusion (CVPR 2021)"
    paper = "Zhao et al., CVPR 2021"
    #: Spike frames read from the source at a time.
    read_chunk: ClassVar[int] = 64

    def __init__(self, weights: str | None = None, device: str = "auto",
                 precision: str = "fp32", channels_last: bool = False, compile: bool = False,
                 batch_size: int | None = None, reuse: bool = True, cache_mb: float = 2048,
                 alpha: float = 0.6) -> None:
        super().__init__(alpha)
        try:
            import torch
        except ImportError:
            raise SpkreconError("spk2imgnet needs PyTorch and torchvision",
                                "install them (pip install torch torchvision)") from None
        from spkrecon.models.weights import load_model

        dev = resolve_device(device)
        self.precision = resolve_precision(precision, dev)
        self._dtype = check_precision(self.precision, dev)
        if batch_size is None:
            batch_size = 4 if dev.type == "cuda" else 1
        if int(batch_size) < 1:
            raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
        if not float(cache_mb) >= 0:
            raise ParameterError(f"cache_mb must be >= 0, got {cache_mb}")
        self.cache_mb = float(cache_mb)
        model, ckpt = load_model(weights)
        self.weights = str(ckpt.path)
        self.weights_alpha = ckpt.alpha
        self.device = str(dev)
        self.channels_last = bool(channels_last)
        self.compile = bool(compile)
        self.batch_size = int(batch_size)
        # A block's features depend on its window position with separate encoders.
        self.reuse = bool(reuse) and not model.config.separate_encoders
        self.config = model.config
        self._torch = torch
        self._dev = dev
        model = model.to(dev)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._encode: Callable[..., Any] = model.encode
        self._fuse: Callable[..., Any] = model.fuse
        self._forward: Callable[..., Any] = model.forward
        if self.compile:
            self._encode = torch.compile(model.encode, dynamic=True)
            self._fuse = torch.compile(model.fuse, dynamic=True)
            self._forward = torch.compile(model.forward, dynamic=True)
        #: Blocks encoded and output frames fused by the last :meth:`stream` (for benchmarks).
        self.counts = {"blocks": 0, "frames": 0}
        self.reusing = self.reuse

    # -- context ---------------------------------------------------------------------
    @property
    def past(self) -> int:
        return self.config.window // 2

    @property
    def future(self) -> int:
        return self.config.window // 2

    @property
    def min_frames(self) -> int:
        # Reflection in time completes the window of recordings down to half a window.
        return self.config.window // 2 + 1

    # -- work ------------------------------------------------------------------------
    def reconstruct(self, spikes: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Rates at ``centers`` of an in-memory chunk ``(T, H, W)``; its ends are the edges."""
        centers = np.asarray(centers, dtype=np.int64)
        order = np.argsort(centers, kind="stable")
        out = np.empty((len(centers), spikes.shape[1], spikes.shape[2]), np.float32)
        frames = dict(self.stream(ArraySource(np.asarray(spikes)), np.unique(centers)))
        for i in order:
            out[i] = frames[int(centers[i])]
        return out

    def stream(self, source: SpikeSource, indices: Iterable[int]
               ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, rate)`` for ascending ``indices``, ``batch_size`` frames at a time."""
        n = source.num_frames
        if n < self.min_frames:
            raise ParameterError(f"the recording has {n} frames; spk2imgnet needs at least "
                                 f"{self.min_frames}")
        self.counts = {"blocks": 0, "frames": 0}
        #: Whether this stream shares block features (``reuse`` and the cache fits cache_mb).
        self.reusing = self.reuse and self.cache_bytes(source.height, source.width) <= \
            self.cache_mb * 2**20
        frames = _FrameWindow(source, self._dev, self.read_chunk)
        cache: dict[int, Any] = {}
        batch: list[int] = []
        last = -1
        for idx in indices:
            idx = int(idx)
            if not 0 <= idx < n:
                raise ParameterError(f"frame {idx} is outside the recording's {n} frames")
            if idx <= last:
                raise ParameterError("spk2imgnet needs output frame indices in ascending "
                                     f"order ({idx} after {last})")
            last = idx
            batch.append(idx)
            if len(batch) == self.batch_size:
                yield from zip(batch, self._batch(frames, cache, batch), strict=True)
                batch = []
        if batch:
            yield from zip(batch, self._batch(frames, cache, batch), strict=True)

    def _batch(self, frames: _FrameWindow, cache: dict[int, Any], batch: list[int]
               ) -> np.ndarray:
        """Rates ``(len(batch), H, W)``; torch's modes are set only while computing."""
        t = np.asarray(batch)
        half = self.config.window // 2
        frames.keep(max(0, int(t[0]) - half), min(frames.num_frames, int(t[-1]) + half + 1))
        with self._torch.inference_mode(), self._autocast():
            img = self._reuse(frames, cache, t) if self.reusing else self._naive(frames, t)
            self.counts["frames"] += len(batch)
            h, w = frames.height, frames.width
            return img[:, 0, :h, :w].float().clamp_(0, 1).cpu().numpy()

    def cache_bytes(self, height: int, width: int) -> int:
        """Largest size of the block cache for ``height`` x ``width`` frames (stride 1)."""
        cfg = self.config
        pixels = (height + -height % 4) * (width + -width % 4)
        levels = 1 + 1 / 4 + 1 / 16 if cfg.pda else 1
        channels = cfg.features * levels + cfg.estimates
        blocks = (cfg.num_temporal_blocks - 1) * cfg.block_step + self.batch_size
        return int(blocks * channels * pixels * (4 if self._dtype is None else 2))

    def _naive(self, frames: _FrameWindow, t: np.ndarray) -> Any:
        half = self.config.window // 2
        x = self._prep(frames.get(t[:, None] + np.arange(-half, half + 1)))
        self.counts["blocks"] += len(t) * self.config.num_temporal_blocks
        return self._call(self._forward, x)[0]

    def _reuse(self, frames: _FrameWindow, cache: dict[int, Any], t: np.ndarray) -> Any:
        from spkrecon.models.spk2imgnet import _stack

        cfg = self.config
        offsets = cfg.block_offsets()
        needed = sorted({int(c) + o for c in t for o in offsets})
        for c in [c for c in cache if c < needed[0]]:
            del cache[c]  # outputs come in ascending order: never needed again
        new = [c for c in needed if c not in cache]
        rel = np.arange(-cfg.block_radius, cfg.block_radius + 1)
        step = max(self.batch_size, cfg.num_temporal_blocks)
        for j in range(0, len(new), step):
            part = new[j:j + step]
            blocks = self._prep(frames.get(np.asarray(part)[:, None] + rel))
            feats = self._call(self._encode, blocks)
            for i, c in enumerate(part):
                cache[c] = feats.index(slice(i, i + 1))
        self.counts["blocks"] += len(new)
        per_block = [_stack([cache[int(c) + o] for c in t]) for o in offsets]
        return self._call(self._fuse, per_block)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._dtype is None:
            return contextlib.nullcontext()
        return self._torch.autocast(self._dev.type, dtype=self._dtype)

    def _prep(self, x: Any) -> Any:
        x = x.float()
        if self.channels_last:
            x = x.contiguous(memory_format=self._torch.channels_last)
        return x

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.compile:
            return fn(*args)
        try:
            return fn(*args)
        except SpkreconError:
            raise
        except Exception as exc:  # torch.compile fails late, at the first call
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise DeviceError(f"torch.compile failed: {type(exc).__name__}: {first}",
                              "run without --compile") from None

    def __repr__(self) -> str:
        return (f"Spk2ImgNet(weights={self.weights!r}, device={self.device!r}, "
                f"precision={self.precision!r}, batch_size={self.batch_size}, "
                f"reuse={self.reuse}, cache_mb={self.cache_mb:g}, alpha={self.alpha})")


class _FrameWindow:
    """Frames ``[lo, hi)`` of a source on the device, padded to multiples of 4 in H and W."""

    def __init__(self, source: SpikeSource, device: Any, chunk: int) -> None:
        import torch

        self._torch = torch
        self.source = source
        self.device = device
        self.chunk = max(int(chunk), 1)
        self.num_frames = source.num_frames
        self.height, self.width = source.height, source.width
        self._pad = (-(-self.height // 4) * 4 - self.height, -(-self.width // 4) * 4 - self.width)
        self.lo = self.hi = 0
        self.data = torch.zeros((0, self.height + self._pad[0], self.width + self._pad[1]),
                                dtype=torch.uint8, device=device)

    def keep(self, lo: int, hi: int) -> None:
        """Hold at least frames ``[lo, hi)``; drop those before ``lo`` (ascending use)."""
        if lo >= self.hi:
            self.data = self.data[:0]
            self.lo = self.hi = lo
        elif lo > self.lo:
            self.data = self.data[lo - self.lo:]
            self.lo = lo
        if hi > self.hi:
            stop = min(self.num_frames, max(hi, self.hi + self.chunk))
            block = self.source.read(self.hi, stop)
            if any(self._pad):
                block = np.pad(block, ((0, 0), (0, self._pad[0]), (0, self._pad[1])),
                               mode="symmetric")
            new = self._torch.from_numpy(np.require(block, np.uint8, ["C", "W"]))
            self.data = self._torch.cat([self.data, new.to(self.device)])
            self.hi = stop

    def get(self, idx: np.ndarray) -> Any:
        """Frames at virtual indices ``idx (..., n)`` (reflected into the recording)."""
        real = reflect_index(idx, self.num_frames) - self.lo
        if real.min() < 0 or real.max() >= self.hi - self.lo:
            raise RuntimeError("frame window does not hold the requested frames")
        return self.data[self._torch.from_numpy(real).to(self.device)]
