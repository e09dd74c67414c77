"""ATSNet as a reconstructor: spkrecon's adaptive-temporal-support network (ours).

The network (:mod:`spkrecon.models.atsnet`) reads 255 frames around each output frame and
decides per pixel how much of them to trust, from multi-scale spike counts (TFP; Zhu et al.,
ICME 2019), spike-count-adaptive inter-spike-interval estimates (TFI, ibid.), short
snapshots and the raw spike frames near the key frame, and (networks trained with
``motion``) counts, and (with ``motion_isi``) interval estimates, along a velocity field
measured from the spikes by pyramidal Lucas-Kanade (Lucas and Kanade, 1981;
:mod:`spkrecon.models.motion`; with ``motion_sides``, one velocity on each side of the key
frame), all normalised by the
frame's brightness so that dark and bright recordings look alike to it. Trained by spkrecon on a
2-core CPU with broad speed (0 to 5 px per readout step) and light (0.01 to 0.5 spikes per
frame) distributions; see docs/atsnet.md.

Windows that pass a recording's first or last frame are completed by reflecting frames in
time about it (as for Spk2ImgNet), so recordings of any length work; frames are read in
chunks of ``batch_frames`` output frames plus the window (streaming, bounded memory).
``flips`` 2 (the default) or 4 averages the network's output over mirror images of its
features (the U-Net runs that many times; the features once); 1 runs it once (faster, about
0.1 dB less). Output: the firing rate (``alpha * intensity``), clipped to [0, 1].
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from spkrecon.errors import ParameterError, SpkreconError
from spkrecon.methods.base import Reconstructor

#: Mirror images averaged per frame by default (``flips``; see :func:`predict`): the
#: left-right pair gained 0.06-0.28 dB on every suite condition for about 0.17 s more per
#: 250x400 frame on two threads (the main job 81 s to 123 s with the shipped weights).
DEFAULT_FLIPS = 2


class ATSNetMethod(Reconstructor):
    """ATSNet rates ``(T, H, W) -> (N, H, W)``; see the module docstring."""

    name = "atsnet"
    summary = ("ATSNet: per-pixel adaptive temporal support from multi-scale counts, "
               "intervals, and counts and intervals along measured motion, for CPUs (ours)")
    paper = "spkrecon (ours); features after Zhu et al., ICME 2019"
    batch_frames: ClassVar[int] = 64

    def __init__(self, weights: str | None = None, device: str = "auto",
                 precision: str = "auto", batch_size: int = 1, alpha: float = 0.6,
                 flips: Literal[1, 2, 4] = DEFAULT_FLIPS) -> None:
        super().__init__(alpha)
        try:
            import torch
        except ImportError:
            raise SpkreconError("atsnet needs PyTorch", "install it (pip install torch)") from None
        from spkrecon.methods.spk2imgnet import check_precision, resolve_device, resolve_precision
        from spkrecon.models.atsnet import FLIPS, NAME, load_atsnet

        if int(batch_size) < 1:
            raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
        if flips not in FLIPS:
            raise ParameterError(f"flips must be 1, 2 or 4, got {flips}",
                                 "e.g. -p flips=4 (slower, slightly sharper and cleaner) or "
                                 "-p flips=1 (faster)")
        dev = resolve_device(device)
        self.precision = resolve_precision(precision, dev)
        self._dtype = check_precision(self.precision, dev)
        model, info = load_atsnet(weights or NAME)
        self.weights = str(info["path"])
        self.weights_alpha = float(info.get("alpha", 0.6))
        self.device = str(dev)
        self.batch_size = int(batch_size)
        self.flips = int(flips)
        # channels-last: see predict()
        self.model = model.to(dev).to(memory_format=torch.channels_last)
        self.config = model.config
        self._torch = torch
        self._dev = dev

    @property
    def past(self) -> int:
        return self.config.radius

    @property
    def future(self) -> int:
        return self.config.radius

    @property
    def min_frames(self) -> int:
        return 2  # windows are completed by reflection in time

    def reconstruct(self, spikes: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Rates at ``centers`` of a chunk ``(T, H, W)``; where a window passes the chunk's
        ends (the recording's edges), it is completed by reflection."""
        import contextlib

        from spkrecon.methods.spk2imgnet import reflect_index
        from spkrecon.models.atsnet import ChunkFeatures, predict

        torch = self._torch
        t, h, w = spikes.shape
        if t < self.min_frames:
            raise ParameterError(f"the recording has {t} frames; atsnet needs at least "
                                 f"{self.min_frames}")
        r = self.config.radius
        data = torch.from_numpy(np.require(spikes, np.uint8, ["C"]))
        out = np.empty((len(centers), h, w), np.float32)
        centers = np.asarray(centers, dtype=np.int64)
        if not len(centers):
            return out
        # The frames every window reads, in order: a view of the chunk, or (where windows
        # pass the recording's edges) a copy completed by reflection.
        start, stop = int(centers.min()) - r, int(centers.max()) + r + 1
        if start >= 0 and stop <= t:
            frames = data[start:stop]
        else:
            frames = data[torch.from_numpy(reflect_index(np.arange(start, stop), t))]
        autocast: Any = contextlib.nullcontext() if self._dtype is None else torch.autocast(
            self._dev.type, dtype=self._dtype)
        # Only the network runs in reduced precision: the features (counts, intervals, the
        # motion estimate) stay fp32; they gain nothing from bf16 and the motion would lose.
        with torch.inference_mode():
            features = ChunkFeatures(frames.to(self._dev), centers - start, self.config)
            for i in range(0, len(centers), self.batch_size):
                part = [features(int(c) - start) for c in centers[i:i + self.batch_size]]
                x, s = (part[0] if len(part) == 1 else
                        (torch.cat([p[0] for p in part]), torch.cat([p[1] for p in part])))
                with autocast:
                    rates = predict(self.model, None, self.flips, features=(x, s))
                out[i:i + len(part)] = rates.float().cpu().numpy()
        return out

    def __repr__(self) -> str:
        return (f"ATSNetMethod(weights={self.weights!r}, device={self.device!r}, "
                f"precision={self.precision!r}, batch_size={self.batch_size}, "
                f"alpha={self.alpha}, flips={self.flips})")
