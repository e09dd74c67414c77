"""Real-motion training data for ATSNet: frame sequences with their optical flow computed once.

Photos under a moving camera teach rigid motion only. Video clips (DAVIS and the like) add
what real scenes do: several motions at once, non-rigid bodies, occlusions. Between video
frames the light follows the flow-based interpolation of :mod:`spkrecon.simulate.flow`
(Horn-Schunck flow, Super SloMo style blending). Estimating that flow is by far the costliest
part, so :class:`FlowClips` computes it once per frame pair at a reduced resolution; a batch
then crops frames and flows alike (:meth:`FlowClips.scene`), and rendering a readout step
costs two warps.

Clips whose folder name the suites hold out (:func:`spkrecon.suites.is_holdout`) are kept
for validation only.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from spkrecon.simulate.flow import FlowPair, prepare_pair
from spkrecon.simulate.scenes import FrameScene, list_frames, load_grey


class PairScene(FrameScene):
    """A :class:`FrameScene` whose frame pairs (and their flows) are given, not estimated.

    With ``shift``, frame ``k`` is the light at readout step ``k * steps_per_frame - shift``
    (the scene starts ``shift`` steps into the clip).
    """

    def __init__(self, frames: torch.Tensor, steps_per_frame: float,
                 pairs: list[FlowPair], shift: float = 0.0) -> None:
        super().__init__(frames, steps_per_frame, interp="flow")
        if len(pairs) != self.count - 1:
            raise ValueError(f"{self.count} frames need {self.count - 1} pairs, got {len(pairs)}")
        if not 0.0 <= shift < steps_per_frame:
            raise ValueError(f"shift must be in [0, {steps_per_frame}), got {shift}")
        self.pairs = pairs
        self.shift = float(shift)
        self.num_steps = int(math.floor((self.count - 1) * self.steps_per_frame - shift
                                        + 1e-9)) + 1

    def _pair(self, i: int) -> FlowPair:
        return self.pairs[i]

    def light_at(self, times: torch.Tensor) -> torch.Tensor:
        return super().light_at(times.double() + self.shift)


def split_clips(folders: list[str], holdout: bool) -> list[Path]:
    """The clip folders of ``folders`` that the suites hold out, or the others."""
    from spkrecon.suites import is_holdout
    from spkrecon.train.data import clip_folders

    return [c for d in folders for c in clip_folders(d) if is_holdout(c.name) == holdout]


class FlowClips:
    """Frame sequences ``(S, H, W)`` uint8 and, per consecutive pair, both flows and
    visibility maps at ``flow_side`` pixels (float16, ``(S - 1, 6, h, w)``)."""

    def __init__(self, folders: list[str], *, holdout: bool, max_side: int = 800,
                 flow_side: int = 256) -> None:
        from spkrecon.train.data import _shrink, _to_u8

        self.names: list[str] = []
        self.frames: list[torch.Tensor] = []
        self.flows: list[torch.Tensor] = []
        for clip in split_clips(folders, holdout):
            frames = torch.stack([_shrink(torch.from_numpy(load_grey(f)), max_side)
                                  for f in list_frames(clip)])
            if frames.shape[0] < 2:
                continue
            self.names.append(clip.name)
            self.frames.append(_to_u8(frames))
            self.flows.append(_clip_flows(frames, flow_side))
        if not self.frames:
            raise ValueError(f"no {'held-out' if holdout else 'training'} clips in {folders}")

    @classmethod
    def cached(cls, folders: list[str], *, holdout: bool, max_side: int = 800,
               flow_side: int = 256) -> FlowClips:
        """The same, kept in the user cache (keyed by the frame files, their sizes and the
        options): the flows of 15 DAVIS clips take about two minutes on one core."""
        import hashlib
        import json

        import platformdirs

        from spkrecon.models.weights import atomic_torch_save
        from spkrecon.train.data import clip_folders

        files = [(str(f), f.stat().st_size) for d in folders for c in clip_folders(d)
                 for f in list_frames(c)]
        key = json.dumps([1, files, holdout, max_side, flow_side])
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        path = Path(platformdirs.user_cache_dir("spkrecon")) / f"atsnet-clips-{digest}.pt"
        if path.is_file():
            data = torch.load(path, map_location="cpu", weights_only=True)
            out = cls.__new__(cls)
            out.names, out.frames, out.flows = data["names"], data["frames"], data["flows"]
            return out
        out = cls(folders, holdout=holdout, max_side=max_side, flow_side=flow_side)
        atomic_torch_save({"names": out.names, "frames": out.frames, "flows": out.flows}, path)
        return out

    def __len__(self) -> int:
        return len(self.frames)

    def scene(self, n: int, patch: int, steps: int, steps_per_frame: float,
              scale: tuple[float, float], g: torch.Generator, shift: float = 0.0
              ) -> PairScene:
        """``n`` random ``patch`` x ``patch`` crops of random clips at a random scale, with the
        light of frame ``k`` at readout step ``k * steps_per_frame - shift``, covering
        ``steps`` (``shift`` in ``[0, steps_per_frame)``; see :func:`key_shift`)."""
        need = int(math.ceil((steps - 1 + shift) / steps_per_frame)) + 1
        frames, flows = [], []
        for _ in range(n):
            i = int(torch.randint(len(self.frames), (), generator=g))
            clip, flow = self.frames[i], self.flows[i]
            count, h, w = clip.shape
            k = min(count, need)
            s0 = int(torch.randint(count - k + 1, (), generator=g))
            s = float(scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=g,
                                                                     dtype=torch.float64))
            side = min(h, w, max(8, round(patch / s)))
            y = int(torch.randint(h - side + 1, (), generator=g))
            x = int(torch.randint(w - side + 1, (), generator=g))
            part = clip[s0:s0 + k, y:y + side, x:x + side].float()[:, None] / 255.0
            part = F.interpolate(part, size=(patch, patch), mode="bilinear", antialias=True,
                                 align_corners=False)[:, 0].clamp_(0.0, 1.0)
            fl = _crop_flow(flow[s0:s0 + k - 1].float(), (h, w), (y, x, side), patch)
            if k < need:  # a short clip: hold its last frame
                part = torch.cat([part, part[-1:].expand(need - k, -1, -1)])
                hold = torch.zeros((need - k, 6, patch, patch))
                hold[:, 4:] = 1.0
                fl = torch.cat([fl, hold])
            frames.append(part)
            flows.append(fl)
        light = torch.stack(frames)  # (n, need, P, P)
        fl = torch.stack(flows)  # (n, need - 1, 6, P, P)
        pairs = [FlowPair(light[:, j:j + 1], light[:, j + 1:j + 2], fl[:, j, 0:2],
                          fl[:, j, 2:4], fl[:, j, 4:5], fl[:, j, 5:6])
                 for j in range(need - 1)]
        return PairScene(light, steps_per_frame, pairs, shift)


def key_shift(key: float, steps_per_frame: float) -> float:
    """The :meth:`FlowClips.scene` ``shift`` that puts an original video frame at readout
    step ``key``, as the REDS-simulated recordings (and the video suite at 32 and 16 steps
    per frame) have it: their ground truth is an original frame, sharp, while the light
    around it is interpolated between frames (softer)."""
    return math.ceil(key / steps_per_frame - 1e-9) * steps_per_frame - key


def _clip_flows(frames: torch.Tensor, side: int) -> torch.Tensor:
    """Flows ``(S - 1, 6, h, w)`` float16 of frames ``(S, H, W)`` in [0, 1], at ``side`` px
    across: channels flow01 (x, y), flow10 (x, y) in pixels of that size, vis0, vis1."""
    h, w = frames.shape[-2:]
    s = min(1.0, side / max(h, w))
    small = F.interpolate(frames[:, None].float(), size=(max(8, round(h * s)),
                                                          max(8, round(w * s))),
                          mode="bilinear", antialias=True, align_corners=False)
    out = []
    for i in range(small.shape[0] - 1):
        p = prepare_pair(small[i:i + 1], small[i + 1:i + 2], max_side=max(small.shape[-2:]))
        out.append(torch.cat([p.flow01, p.flow10, p.vis0, p.vis1], 1)[0].half())
    return torch.stack(out)


def _crop_flow(flow: torch.Tensor, size: tuple[int, int], region: tuple[int, int, int],
               patch: int) -> torch.Tensor:
    """The region ``(y, x, side)`` of frames ``size`` cut from flows ``(m, 6, h, w)`` at their
    lower resolution and resampled to ``patch`` x ``patch``, displacements in patch pixels."""
    m, _, fh, fw = flow.shape
    h, w = size
    y, x, side = region
    # Centres of the patch's pixels in frame coordinates, normalised as grid_sample wants
    # them (align_corners=False: the same numbers at any resolution of the map).
    c = (torch.arange(patch, dtype=torch.float32) + 0.5) * (side / patch) - 0.5
    gx = (2 * (x + c) + 1) / w - 1
    gy = (2 * (y + c) + 1) / h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), -1)
    out = F.grid_sample(flow, grid[None].expand(m, -1, -1, -1), mode="bilinear",
                        padding_mode="border", align_corners=False)
    # Displacements: flow-map pixels -> frame pixels -> patch pixels.
    out[:, 0:4:2] *= (w / fw) * (patch / side)
    out[:, 1:4:2] *= (h / fh) * (patch / side)
    return out
