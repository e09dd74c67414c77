"""ATSNet: adaptive temporal support network (spkrecon's own CPU reconstruction network).

The physics: a rate estimate's noise falls with the number of spikes it reads, while its
motion blur grows with speed times the time it spans, so the best temporal support differs
per pixel. ATSNet gives a small U-Net the evidence for that choice and lets it decide per
pixel, at every scale:

- **multi-scale counts** (TFP, Zhu et al. ICME 2019) over centred windows of 3 to 255
  frames, from one cumulative sum;
- **spike-count-adaptive estimates**: ``(2k - 1) / (n_k + p_k)`` with ``p_k`` (``n_k``) the
  distance back to the ``k``-th spike at or before (after) the key frame, ``k = 1, 2, 4``;
  ``k = 1`` is TFI (Zhu et al. ICME 2019). Their support shrinks where light is bright and
  grows in the dark by itself;
- **temporal snapshots**: 5-frame counts centred 5, 10 and 15 frames before and after, and
  the 9 raw spike frames around the key frame, from which the network reads motion;
- **intervals along the motion** (``motion_isi``): every frame's interval estimate (TFI)
  near the key frame, sampled along the measured velocity (:mod:`spkrecon.models.motion`)
  and averaged: a pixel's interval is the exact mean of the light over the stretch of scene
  it swept, so along the motion it is sharp where a count along it is Bernoulli noise;
- **brightness normalisation**: every rate channel is divided by the frame's mean long-window
  rate ``s`` and ``log s`` is one more channel, so dark and bright inputs look alike; the
  output is multiplied back by ``s``.

Output: the firing rate at the key frame (``alpha * intensity``), like every reconstructor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from spkrecon.models.motion import Pooled

#: Frames a centred window of the longest count reaches on each side.
RADIUS = 127
#: Initial mixture logit of the 15-frame count (the others start at 0).
SELECT_BIAS = 2.0


@dataclass
class ATSNetConfig:
    """Feature set and U-Net widths."""

    tfp_windows: tuple[int, ...] = (3, 7, 15, 31, 63, 127, 255)
    isi_orders: tuple[int, ...] = (1, 2, 4)
    snapshot_offsets: tuple[int, ...] = (-15, -10, -5, 5, 10, 15)
    snapshot_width: int = 5
    raw_radius: int = 4
    widths: tuple[int, ...] = (16, 32, 64, 128)
    #: Floor of the brightness scale ``s`` (spikes per frame).
    min_scale: float = 2e-3
    #: Output = a per-pixel softmax mixture of the count and interval estimates (the
    #: network picks the temporal support) plus a learned correction; off: the 15-frame
    #: count plus the correction (the first trained networks).
    mixture: bool = False
    #: Motion-compensated features (:mod:`spkrecon.models.motion`): counts over these
    #: windows and the snapshots counted along the measured velocity, and the velocity.
    motion: bool = False
    motion_windows: tuple[int, ...] = (7, 15, 31, 63)
    #: Per motion stage, the multiple of the spike-count noise's gradient energy that
    #: regularises the velocity estimate (``noise`` of :func:`estimate_velocity`); empty:
    #: none (the networks trained before it existed).
    motion_noise: tuple[float, ...] = ()
    #: With ``motion``: interval estimates (TFI) of every frame within ``n // 2`` of the key
    #: frame, sampled along the measured velocity and averaged over these windows ``n``;
    #: empty: none (the networks trained before it existed).
    motion_isi: tuple[int, ...] = ()
    #: With ``motion``: the velocity estimate's refinement stages, each ``(pyramid level,
    #: half baseline, half count width, iterations, window half size)`` as
    #: :data:`spkrecon.models.motion.STAGES`; empty: ``STAGES`` (the networks trained before
    #: it existed). ``motion_noise`` gives one value per stage.
    motion_stages: tuple[tuple[int, int, int, int, int], ...] = ()
    #: With ``motion``: refinements of the velocity on each side of the key frame apart
    #: (:func:`spkrecon.models.motion.estimate_sides`), each ``(pyramid level, near, far,
    #: half count width, iterations, window half size)``; frames before the key frame are
    #: then sampled along the velocity before it, the others along the one after it. Empty:
    #: one velocity through the key frame (the networks trained before it existed).
    motion_sides: tuple[tuple[int, int, int, int, int, int], ...] = ()
    #: One noise multiple per ``motion_sides`` stage (as ``motion_noise``); empty: none.
    motion_side_noise: tuple[float, ...] = ()
    #: Widths of a full-resolution refinement after the U-Net (:class:`Refine`): it reads
    #: the input features, the U-Net's last features and its output, and adds a correction;
    #: empty: none (the networks trained before it existed).
    refine: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.motion_noise = tuple(float(k) for k in self.motion_noise)
        self.motion_stages = tuple(tuple(int(v) for v in st) for st in self.motion_stages)
        for st in self.motion_stages:
            if len(st) != 5 or st[0] < 0 or st[2] < 0 or st[1] < max(st[2], 1) or min(st[3:]) < 1:
                raise ValueError("each motion stage needs 5 integers (level >= 0, half "
                                 "baseline >= max(half width, 1), half width >= 0, "
                                 f"iterations >= 1, window >= 1), got {list(st)}")
        self.motion_sides = tuple(tuple(int(v) for v in st) for st in self.motion_sides)
        for st in self.motion_sides:
            if len(st) != 6 or st[0] < 0 or st[3] < 0 or st[1] < st[3] or st[2] <= st[1] \
                    or min(st[4:]) < 1:
                raise ValueError("each motion side stage needs 6 integers (level >= 0, near "
                                 ">= half width, far > near, half width >= 0, iterations >= "
                                 f"1, window >= 1), got {list(st)}")
        self.motion_side_noise = tuple(float(k) for k in self.motion_side_noise)
        if self.motion_side_noise and (len(self.motion_side_noise) != len(self.motion_sides)
                                       or min(self.motion_side_noise) < 0):
            raise ValueError(f"motion_side_noise needs {len(self.motion_sides)} values >= 0 "
                             f"(one per motion side stage), got {list(self.motion_side_noise)}")
        self.motion_isi = tuple(int(w) for w in self.motion_isi)
        self.tfp_windows = tuple(int(w) for w in self.tfp_windows)
        self.isi_orders = tuple(int(k) for k in self.isi_orders)
        self.snapshot_offsets = tuple(int(o) for o in self.snapshot_offsets)
        self.motion_windows = tuple(int(w) for w in self.motion_windows)
        self.widths = tuple(int(w) for w in self.widths)
        self.refine = tuple(int(w) for w in self.refine)
        if any(w < 1 for w in self.refine):
            raise ValueError(f"refine widths must be positive, got {list(self.refine)}")
        if any(w < 1 or w % 2 == 0
               for w in self.tfp_windows + self.motion_windows + self.motion_isi):
            raise ValueError("tfp_windows, motion_windows and motion_isi must be odd and "
                             "positive")
        if self.motion_isi and max(self.motion_isi) // 2 >= RADIUS:
            raise ValueError(f"motion_isi windows must be shorter than {2 * RADIUS + 1} frames")
        if len(self.widths) < 2:
            raise ValueError("widths needs at least two levels")
        if self.motion_noise:
            stages = self.stages
            if len(self.motion_noise) != len(stages) or min(self.motion_noise) < 0:
                raise ValueError(f"motion_noise needs {len(stages)} values >= 0 (one per "
                                 f"motion stage), got {list(self.motion_noise)}")

    @property
    def stages(self) -> tuple[tuple[int, int, int, int, int], ...]:
        """The velocity estimate's refinement stages (``motion_stages`` or the default)."""
        if self.motion_stages:
            return self.motion_stages  # type: ignore[return-value]
        from spkrecon.models.motion import STAGES

        return STAGES

    @property
    def radius(self) -> int:
        """Frames read on each side of the key frame."""
        snap = max((abs(o) + self.snapshot_width // 2 for o in self.snapshot_offsets), default=0)
        need = max(max(self.tfp_windows) // 2, RADIUS, snap, self.raw_radius)
        if not self.motion:
            return need
        return max(need, self.motion_reach)

    @property
    def motion_reach(self) -> int:
        """Frames the velocity estimate reads on each side of the key frame."""
        from spkrecon.models.motion import reach, side_reach

        return max(reach(self.stages), side_reach(self.motion_sides))  # type: ignore[arg-type]

    @property
    def estimates(self) -> int:
        """Leading feature channels that are rate estimates (counts, intervals, counts
        along the motion)."""
        return len(self.estimate_names)

    @property
    def estimate_names(self) -> list[str]:
        names = [f"tfp{n}" for n in self.tfp_windows] + [f"isi{k}" for k in self.isi_orders]
        if self.motion:
            names += [f"mc{n}" for n in self.motion_windows]
            names += [f"mi{n}" for n in self.motion_isi]
        return names

    @property
    def channel_names(self) -> list[str]:
        """One name per input channel of the network, in order."""
        names = self.estimate_names + [f"snap{o}" for o in self.snapshot_offsets]
        names += [f"raw{o}" for o in range(-self.raw_radius, self.raw_radius + 1)]
        if self.motion:
            names += [f"mcsnap{o}" for o in self.snapshot_offsets] + ["vx", "vy"]
        return names + ["logs"]

    @property
    def channels(self) -> int:
        return len(self.channel_names)

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v

        return {k: plain(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ATSNetConfig:
        bad = [k for k in d if k not in cls.__dataclass_fields__]
        if bad:
            raise ValueError(f"unknown ATSNet config fields: {', '.join(bad)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def window_features(win: torch.Tensor, cfg: ATSNetConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised features ``(B, C, H, W)`` and scales ``s (B, 1, 1, 1)`` of spike windows.

    ``win (B, 2 * radius + 1, H, W)`` (0/1, any dtype) holds the frames around each key frame
    (the middle one); callers complete windows at a recording's edges (by reflection in time).
    """
    b, t, h, w = win.shape
    r = cfg.radius
    if t != 2 * r + 1:
        raise ValueError(f"windows must hold {2 * r + 1} frames, got {t}")
    spk = win if win.dtype == torch.uint8 else win.to(torch.uint8)
    # One pass outwards from the key frame over the distance d: counts in [r - d, r] (back),
    # in (r, r + d] (ahead), and centred windows as their sum. p_k, the frames back to the
    # k-th spike at or before the key frame, is the number of d whose back count is below k;
    # n_k likewise ahead (from 1). Not found within the window: r + 1. A loop of small
    # element-wise ops beats a cumulative sum over the window on a CPU.
    small = (b, h, w)
    back = spk[:, r].to(torch.int16)
    ahead = torch.zeros(small, dtype=torch.int16, device=win.device)
    pk = {k: torch.zeros(small, dtype=torch.int16, device=win.device) for k in cfg.isi_orders}
    nk = {k: torch.ones(small, dtype=torch.int16, device=win.device) for k in cfg.isi_orders}
    tfp: dict[int, torch.Tensor] = {}
    wanted = {n // 2: n for n in cfg.tfp_windows}
    for d in range(r + 1):
        if d:
            back.add_(spk[:, r - d])
            ahead.add_(spk[:, r + d])
        for k in cfg.isi_orders:
            pk[k].add_(back < k)
            if d:
                nk[k].add_(ahead < k)
        if d in wanted:
            tfp[wanted[d]] = (back + ahead).float() * (1.0 / (2 * d + 1))
    isi = [(2 * k - 1) / (pk[k] + nk[k]).float() for k in cfg.isi_orders]

    def rate(a: int, z: int) -> torch.Tensor:
        """Mean count over window frames ``[a, z)``."""
        return spk[:, a:z].sum(1, dtype=torch.int16).float() * (1.0 / (z - a))

    return _assemble(spk, cfg, [tfp[n] for n in cfg.tfp_windows], isi, rate,
                     lambda reach: _intervals(spk, r, reach))


def _assemble(spk: torch.Tensor, cfg: ATSNetConfig, tfp: list[torch.Tensor],
              isi: list[torch.Tensor], rate: Callable[[int, int], torch.Tensor],
              intervals: Callable[[int], torch.Tensor], pooled: Pooled | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The rest of :func:`window_features`, given the windows ``spk (B, T, H, W)`` uint8,
    the counts over ``tfp_windows`` and the interval estimates over ``isi_orders`` (each
    ``(B, H, W)``), ``rate(a, z)``: the mean count over window frames ``[a, z)``,
    ``intervals(reach)``: :func:`_intervals` of the window, and ``pooled``: the window's
    frames at the motion estimate's pyramid levels, when the caller has them."""
    b, t, h, w = spk.shape
    r = t // 2
    feats = list(tfp)
    s = feats[-1].mean(dim=(1, 2), keepdim=True).clamp(min=cfg.min_scale)[:, None]
    feats += isi
    half = cfg.snapshot_width // 2
    extra: list[torch.Tensor] = []
    if cfg.motion:
        from spkrecon.models.motion import compensated_frames, estimate_sides, estimate_velocity

        v = estimate_velocity(spk, r, cfg.stages, noise=cfg.motion_noise or 0.0,
                              pooled=pooled)
        along_v: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = v
        if cfg.motion_sides:
            along_v = estimate_sides(spk, r, v, cfg.motion_sides,  # type: ignore[arg-type]
                                     noise=cfg.motion_side_noise or 0.0, pooled=pooled)
        reach = max([n // 2 for n in cfg.motion_windows]
                    + [abs(o) + half for o in cfg.snapshot_offsets])
        csum = _running_sum(compensated_frames(spk, r, along_v,
                                                 torch.arange(-reach, reach + 1)))
        if cfg.motion_isi:
            # A separate sampling call: the spikes and intervals as two channels of one
            # call measured slower, and their running sum over a 5-D tensor 5x slower.
            ireach = max(n // 2 for n in cfg.motion_isi)
            isum = _running_sum(compensated_frames(intervals(ireach), ireach, along_v,
                                                   torch.arange(-ireach, ireach + 1)))

        def along(cum: torch.Tensor, at: int, a: int, z: int) -> torch.Tensor:
            """Mean of ``cum``'s frames (cumulated, offset ``at`` at index 0) over offsets
            ``[a, z)`` from the key frame."""
            upto = cum[:, z + at - 1]
            if a + at > 0:
                upto = upto - cum[:, a + at - 1]
            return upto * (1.0 / (z - a))

        for n in cfg.motion_windows:
            feats.append(along(csum, reach, -(n // 2), n // 2 + 1))
        extra = [along(csum, reach, o - half, o + half + 1) for o in cfg.snapshot_offsets]
        for n in cfg.motion_isi:
            feats.append(along(isum, ireach, -(n // 2), n // 2 + 1))

    for o in cfg.snapshot_offsets:
        feats.append(rate(r + o - half, r + o + half + 1))
    for o in range(-cfg.raw_radius, cfg.raw_radius + 1):
        feats.append(spk[:, r + o].float())
    x = torch.stack(feats + extra, 1) / s
    parts = [x.clamp(max=20.0)]
    if cfg.motion:
        parts.append(v * 0.25)  # px/step; ~1 at the fastest speeds trained
    parts.append((torch.log(s) / 4.0 + 1.0).expand(b, 1, h, w))
    return torch.cat(parts, 1), s


def _running_sum(x: torch.Tensor) -> torch.Tensor:
    """``x (B, K, H, W)`` cumulated along ``K`` in place. A loop of frame-sized adds: torch's
    ``cumsum_`` over dim 1 measured 33x slower on a CPU (0.1 s for 63 frames of 256x400)."""
    for i in range(1, x.shape[1]):
        x[:, i].add_(x[:, i - 1])
    return x


def _intervals(spk: torch.Tensor, r: int, reach: int) -> torch.Tensor:
    """Interval estimates ``1 / (next - prev)`` ``(B, 2 * reach + 1, H, W)`` float of frames
    ``r - reach .. r + reach`` of ``spk (B, 2 * r + 1, H, W)`` uint8: ``prev`` the last spike
    at or before the frame, ``next`` the first after it; a spike not found within the window
    counts as one frame beyond it (as ``p_k`` and ``n_k`` of :func:`window_features`). At the
    key frame this is the ``isi1`` channel (TFI)."""
    b, t, h, w = spk.shape
    lo, hi = r - reach, r + reach
    dev = spk.device
    # The last spike before frame lo and the first after frame hi + 1, as maxima of frames
    # weighted by 1 + their index (0: none), in one vectorised pass each; a loop of where()s
    # over the whole window costs 3x more.
    up = torch.arange(1, lo + 1, dtype=torch.int16, device=dev).view(1, -1, 1, 1)
    prev = (spk[:, :lo] * up).amax(1) - 1 if lo else torch.full(
        (b, h, w), -1, dtype=torch.int16, device=dev)
    down = torch.arange(t - hi - 2, 0, -1, dtype=torch.int16, device=dev).view(1, -1, 1, 1)
    nxt = t - (spk[:, hi + 2:] * down).amax(1) if hi + 2 < t else torch.full(
        (b, h, w), t, dtype=torch.int16, device=dev)
    prevs = torch.empty((b, hi - lo + 1, h, w), dtype=torch.int16, device=dev)
    for i in range(lo, hi + 1):
        prev = torch.where(spk[:, i] > 0, i, prev)
        prevs[:, i - lo] = prev
    gaps = torch.empty((b, hi - lo + 1, h, w), dtype=torch.float32, device=dev)
    for i in range(hi + 1, lo, -1):
        nxt = torch.where(spk[:, i] > 0, i, nxt)
        gaps[:, i - 1 - lo] = nxt - prevs[:, i - 1 - lo]
    return gaps.reciprocal_()


class ChunkFeatures:
    """:func:`window_features` of many key frames of one stretch of frames, sharing the work
    that does not depend on the key frame: exactly the same features, in a third less time.

    ``frames (T, H, W)`` uint8 (0/1); ``keys``: frame indices with ``radius <= key < T -
    radius`` (complete a recording's edges by reflection first). One pass backwards and one
    forwards over the frames find every key frame's distances to its k-th spikes and every
    frame's distances to its neighbouring spikes; counts slide from one key frame to the
    next. What stays per key frame is the motion and the sampling along it. Memory, with the
    default radius: one byte per pixel per key frame and interval order, and two per pixel
    per frame whose interval a key frame samples.
    """

    #: Key frames further apart than this recount their windows instead of sliding them.
    SLIDE = 8

    def __init__(self, frames: torch.Tensor, keys: Sequence[int], cfg: ATSNetConfig) -> None:
        t = frames.shape[0]
        r = cfg.radius
        keys = sorted({int(k) for k in keys})
        if not keys or keys[0] < r or keys[-1] >= t - r:
            raise ValueError(f"key frames must lie in [{r}, {t - r}) of the {t} frames")
        spk = self.frames = frames if frames.dtype == torch.uint8 else frames.to(torch.uint8)
        self.cfg = cfg
        dev, small = spk.device, spk.shape[1:]
        index = torch.int16 if t < 2 ** 15 - 1 else torch.int32
        orders = cfg.isi_orders
        top = max(orders, default=0)
        ireach = max(cfg.motion_isi) // 2 if cfg.motion and cfg.motion_isi else -1
        # Distances up to 2r + 2 (orders) and r + 1 + ireach (intervals) fit a byte as
        # stored (p + n - 1; beyond, each distance is clipped anyway).
        store = torch.uint8 if 2 * r + 1 <= 255 and r + 1 + ireach <= 255 else index
        far = 255 if store == torch.uint8 else 2 ** 15 - 1
        # Frames whose interval a key frame samples: [ilo, ihi] (none without intervals).
        if ireach >= 0:
            self.ilo, ihi = keys[0] - ireach, keys[-1] + ireach
        else:
            self.ilo, ihi = keys[0], keys[0] - 1
        width = ihi - self.ilo + 1
        self.dprev = torch.empty((width, *small), dtype=store, device=dev)
        self.dnext = torch.empty((width, *small), dtype=store, device=dev)
        keyset = set(keys)
        self.sums: dict[int, list[torch.Tensor]] = {}
        # Backwards: nxt[j] is the (j + 1)-th earliest spike after frame i (t: none, beyond
        # every window's end); n_k = min(nxt - i, r + 1).
        need = max(top, 1)
        nxt = [torch.full(small, t, dtype=index, device=dev) for _ in range(need)]
        for i in range(min(t - 1, keys[-1] + r), min(keys[0], self.ilo) - 1, -1):
            if i in keyset:
                self.sums[i] = [(nxt[k - 1] - i).clamp_(max=r + 1).to(torch.int16)
                                for k in orders]
            if self.ilo <= i <= ihi:
                self.dnext[i - self.ilo] = (nxt[0] - i).clamp_(max=far)
            fired = spk[i] > 0
            for j in range(need - 1, 0, -1):
                nxt[j] = torch.where(fired, nxt[j - 1], nxt[j])
            nxt[0] = torch.where(fired, i, nxt[0])
        # Forwards: last[j] is the (j + 1)-th latest spike at or before frame i (-1: none, at
        # or before every window's start - 1); p_k = min(i - last, r + 1).
        last = [torch.full(small, -1, dtype=index, device=dev) for _ in range(need)]
        for i in range(min(keys[0] - r, self.ilo), max(keys[-1], ihi) + 1):
            fired = spk[i] > 0
            for j in range(need - 1, 0, -1):
                last[j] = torch.where(fired, last[j - 1], last[j])
            last[0] = torch.where(fired, i, last[0])
            if i in keyset:
                for q, k in enumerate(orders):
                    total = (i - last[k - 1]).clamp_(max=r + 1) + self.sums[i][q] - 1
                    self.sums[i][q] = total.to(store)
            if self.ilo <= i <= ihi:
                self.dprev[i - self.ilo] = (i - last[0]).clamp_(max=far)
        half = cfg.snapshot_width // 2
        self._spans = sorted({(r - n // 2, r + n // 2 + 1) for n in cfg.tfp_windows}
                             | {(r + o - half, r + o + half + 1) for o in cfg.snapshot_offsets})
        self._counts: dict[tuple[int, int], torch.Tensor] = {}
        self._at: int | None = None
        # Frame m of a key frame's interval span [key - ireach, key + ireach] clips its
        # distance ahead at key + r + 1 - j and back at j - (key - r - 1): both fixed per m.
        span = torch.arange(max(2 * ireach + 1, 0), dtype=torch.int16, device=dev).view(-1, 1, 1)
        self._ahead_max = r + 1 + ireach - span
        self._back_max = r + 1 - ireach + span
        # The motion estimate's pyramid levels of the frames it reads, pooled once per chunk
        # (a key frame's stages read about 180 frames; consecutive key frames, the same ones).
        self._pyramid: dict[int, torch.Tensor] = {}
        self._plo = self._phi = 0
        if cfg.motion:
            need = cfg.motion_reach
            self._plo, self._phi = keys[0] - need, keys[-1] + need + 1

    def _pooled(self, key: int) -> Pooled:
        """:data:`~spkrecon.models.motion.Pooled` of the window around ``key``."""
        from spkrecon.models.motion import pool

        def pooled(level: int, frames: torch.Tensor) -> torch.Tensor:
            if level not in self._pyramid:
                span = self.frames[self._plo:self._phi]
                self._pyramid[level] = torch.cat([pool(span[i:i + 32][None], level)[0]
                                                  for i in range(0, len(span), 32)])
            at = frames + (key - self.cfg.radius - self._plo)
            return self._pyramid[level][at][None]

        return pooled

    def _slide(self, key: int) -> None:
        """Bring the counts over ``_spans`` (window frames ``[a, z)``) to ``key``."""
        r, spk = self.cfg.radius, self.frames
        if self._at is None or not 0 <= key - self._at <= self.SLIDE:
            self._counts = {(a, z): spk[key - r + a:key - r + z].sum(0, dtype=torch.int16)
                            for a, z in self._spans}
        else:
            for k in range(self._at, key):  # from k to k + 1
                for (a, z), c in self._counts.items():
                    c.sub_(spk[k - r + a]).add_(spk[k - r + z])
        self._at = key

    def __call__(self, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(1, C, H, W)`` and scale ``(1, 1, 1, 1)`` of the window around ``key``,
        equal to :func:`window_features` of ``frames[key - radius : key + radius + 1]``.
        Fastest called in increasing order of ``key``."""
        cfg, r = self.cfg, self.cfg.radius
        if key not in self.sums:
            raise ValueError(f"frame {key} is not one of this chunk's key frames")
        self._slide(key)

        def count(a: int, z: int) -> torch.Tensor:
            """Mean count over window frames ``[a, z)`` (window index r: the key frame)."""
            return (self._counts[(a, z)].float() * (1.0 / (z - a)))[None]

        tfp = [count(r - n // 2, r + n // 2 + 1) for n in cfg.tfp_windows]
        isi = [((2 * k - 1) / (d.to(torch.int16) + 1).float())[None]
               for k, d in zip(cfg.isi_orders, self.sums[key], strict=True)]

        def intervals(reach: int) -> torch.Tensor:
            # gap = min(next, key + r + 1) - max(prev, key - r - 1) for each frame j, from
            # the distances next - j and j - prev; reach is the config's, as in __init__.
            a = key - reach - self.ilo
            ahead = torch.minimum(self.dnext[a:a + 2 * reach + 1].to(torch.int16),
                                  self._ahead_max)
            back = torch.minimum(self.dprev[a:a + 2 * reach + 1].to(torch.int16),
                                 self._back_max)
            return (ahead + back).float().reciprocal_()[None]

        return _assemble(self.frames[key - r:key + r + 1][None], cfg, tfp, isi, count,
                         intervals, self._pooled(key) if cfg.motion else None)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True))


class Refine(nn.Module):
    """Full-resolution refinement ``(N, C + w0 + 1, H, W) -> (N, 1, H, W)``: a 1x1 mixing of
    the input features, the U-Net's last features and its output, 3x3 layers of ``widths``,
    and a correction that starts at zero (so a grown network starts as the one it grew from).
    The U-Net has only two convolutions at full resolution on each side; pixel-scale detail
    (dense texture) is where its error exceeds the lite network's.
    """

    def __init__(self, cin: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, widths[0], 1), nn.LeakyReLU(0.1, True)]
        for a, b in zip(widths, widths[1:] + widths[-1:], strict=True):
            layers += [nn.Conv2d(a, b, 3, 1, 1), nn.LeakyReLU(0.1, True)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(widths[-1], 1, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class ATSNet(nn.Module):
    """U-Net on :func:`window_features`: ``(N, C, H, W)`` -> normalised rate ``(N, 1, H, W)``.

    The output adds a learned correction to a per-pixel softmax mixture of the count and
    interval estimates (``mixture``: the network chooses each pixel's temporal support), or
    to the 15-frame count; the mixture starts leaning towards the 15-frame count.
    """

    def __init__(self, config: ATSNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or ATSNetConfig()
        self.config = cfg
        w = cfg.widths
        self.inc = _block(cfg.channels, w[0])
        self.down = nn.ModuleList(_block(w[i], w[i + 1], 2) for i in range(len(w) - 1))
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(w[i + 1] + w[i], w[i], 3, 1, 1), nn.LeakyReLU(0.1, True),
                          nn.Conv2d(w[i], w[i], 3, 1, 1), nn.LeakyReLU(0.1, True))
            for i in range(len(w) - 1))
        self.head = nn.Conv2d(w[0], 1, 3, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.base_channel = cfg.tfp_windows.index(15) if 15 in cfg.tfp_windows else 0
        self.select: nn.Conv2d | None = None
        if cfg.mixture:
            # Starts leaning towards the 15-frame count (weight ~0.45) but soft: a saturated
            # start (a logit of 8, as the first mixture networks had) leaves the other
            # estimates ~3e-4 of the weight and as little gradient, and the mixture never
            # learns to choose (measured: 0.99 on the 15-frame count after 9k steps).
            self.select = nn.Conv2d(w[0], cfg.estimates, 3, 1, 1)
            nn.init.zeros_(self.select.weight)
            with torch.no_grad():
                self.select.bias.zero_()
                self.select.bias[self.base_channel] = SELECT_BIAS
        self.refine: Refine | None = None
        if cfg.refine:
            self.refine = Refine(cfg.channels + w[0] + 1, cfg.refine)

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this (padding is the caller's)."""
        return 2 ** (len(self.config.widths) - 1)

    def unet(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output before :class:`Refine` ``(N, 1, H, W)`` and the U-Net's last features
        ``(N, widths[0], H, W)``, which the refinement reads."""
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in reversed(self.up):
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat([y, skip], 1))
        if self.select is None:
            return x[:, self.base_channel:self.base_channel + 1] + self.head(y), y
        weights = torch.softmax(self.select(y).float(), 1)
        base = (weights * x[:, :self.config.estimates].float()).sum(1, keepdim=True)
        return base + self.head(y), y

    def refined(self, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` with :class:`Refine`'s correction added (``out`` itself without one), from
        the inputs ``x`` and :meth:`unet`'s ``(out, y)``."""
        if self.refine is None:
            return out
        return out + self.refine(torch.cat([x, y, out.to(y.dtype)], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, y = self.unet(x)
        return self.refined(x, y, out)


def pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad ``(..., H, W)`` at the bottom/right to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


#: The mirror images ``predict(..., flips=n)`` averages, as the dims each one flips.
FLIPS: dict[int, tuple[tuple[int, ...], ...]] = {
    1: ((),),
    2: ((), (-1,)),
    4: ((), (-1,), (-2,), (-2, -1)),
}
#: The velocity component a flip of each dim negates.
_VELOCITY = {-1: "vx", -2: "vy"}


def mirrored(model: ATSNet, x: torch.Tensor, flips: int = 1, keep: bool | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`ATSNet.unet` averaged over the mirror images of ``FLIPS[flips]``: the output
    ``(N, 1, H, W)`` and the last features ``(N, widths[0], H, W)`` of features ``x``
    ``(N, C, H, W)`` (any size: padding is done here), each mirrored back.

    The features of a mirrored window are the mirrored features (with the velocity's
    component negated), so only the U-Net runs again; its errors differ between mirror
    images and partly average out. :class:`Refine` then runs once, on the averages.
    ``keep``: whether to average the features (default: only when the model has a head;
    otherwise they come back with 0 channels). A cache for training a head needs them.
    """
    if flips not in FLIPS:
        raise ValueError(f"flips must be one of {sorted(FLIPS)}, got {flips}")
    names = model.config.channel_names
    keep = model.refine is not None if keep is None else keep
    out: torch.Tensor | None = None
    feats: torch.Tensor | None = None
    # One U-Net call per mirror image, channels-last: on a CPU a batch of two measured 2.7x
    # the time of one (1.9x channels-last), and channels-last is 10 % faster by itself.
    for dims in FLIPS[flips]:
        xf = x.flip(dims) if dims else x  # flip() copies, so x is never written
        for d in dims if model.config.motion else ():
            xf[:, names.index(_VELOCITY[d])].neg_()
        xp, (h, w) = pad_to(xf, model.multiple)
        o, y = model.unet(xp.contiguous(memory_format=torch.channels_last))
        o, y = o[..., :h, :w].float(), y[..., :h, :w]
        if dims:
            o, y = o.flip(dims), y.flip(dims)
        out = o if out is None else out.add_(o)
        if keep:
            feats = y if feats is None else feats.add_(y)
    assert out is not None
    n = len(FLIPS[flips])
    if feats is None:
        return out / n, out.new_empty((out.shape[0], 0, *out.shape[2:]))
    return out / n, feats / n


def predict(model: ATSNet, win: torch.Tensor | None, flips: int = 1,
            features: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Rates ``(B, H, W)`` in [0, 1] at the middle frames of windows ``(B, T, H, W)``.

    ``flips`` 2 or 4: the U-Net's output is the mean over mirror images (:func:`mirrored`);
    a refinement head (:class:`Refine`) runs once, on the mirror-averaged output and features.
    ``features``: :func:`window_features` of ``win`` (or of the same windows by another
    route, e.g. :class:`ChunkFeatures`), when the caller has them; ``win`` is then unused.
    """
    if flips not in FLIPS:
        raise ValueError(f"flips must be one of {sorted(FLIPS)}, got {flips}")
    if features is None and win is None:
        raise ValueError("predict needs the windows or their features")
    x, s = features if features is not None else window_features(win, model.config)
    out, y = mirrored(model, x, flips)
    if model.refine is not None:
        out = model.refined(x.to(y.dtype), y, out).float()
    return (out[:, 0] * s[:, 0]).clamp_(0.0, 1.0)


def parameter_count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def receptive_frames(cfg: ATSNetConfig) -> int:
    """Frames one output frame reads (``2 * radius + 1``)."""
    return 2 * cfg.radius + 1


__all__ = ["ARCH", "FLIPS", "NAME", "ATSNet", "ATSNetConfig", "ChunkFeatures", "load_atsnet",
           "mirrored", "pad_to", "parameter_count", "predict", "receptive_frames", "save_atsnet",
           "window_features"]


# -- weights files --------------------------------------------------------------------------
ARCH = "atsnet"
NAME = "atsnet"


def save_atsnet(model: ATSNet, path: str | Path, meta: dict[str, Any] | None = None,
                alpha: float = 0.6, half: bool = False) -> Path:
    """Write a spkrecon weights file (``arch: atsnet``) atomically; ``half`` stores fp16."""
    from spkrecon.models.weights import FORMAT, FORMAT_VERSION, atomic_torch_save, make_meta

    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
          for k, v in model.state_dict().items()}
    dest = Path(path)
    atomic_torch_save({"format": FORMAT, "format_version": FORMAT_VERSION, "arch": ARCH,
                       "config": model.config.to_dict(), "alpha": float(alpha),
                       "meta": make_meta(**(meta or {})), "state_dict": sd}, dest)
    return dest


def load_atsnet(spec: str | Path | None = None) -> tuple[ATSNet, dict[str, Any]]:
    """The network of a weights file or name (default ``atsnet``), and the file's fields
    other than the tensors (``path``, ``alpha``, ``meta``, ``config``)."""
    from spkrecon.errors import WeightsError
    from spkrecon.models.weights import FORMAT, _torch_load, resolve_weights

    try:
        path = resolve_weights(spec or NAME)
    except WeightsError as exc:
        if spec not in (None, NAME):
            raise
        raise WeightsError(str(exc).split(";")[0].rstrip(". "),
                           "spkrecon ships weights/atsnet.pt: reinstall spkrecon, or train "
                           "your own with 'python -m spkrecon.train.atsnet' (docs/atsnet.md) "
                           "and pass -p weights=PATH") from None
    data = _torch_load(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a spkrecon weights file")
    if data.get("arch") != ARCH:
        raise WeightsError(f"{path} holds weights for '{data.get('arch')}', not {ARCH}",
                           "use them with the method of that architecture")
    try:
        model = ATSNet(ATSNetConfig.from_dict(dict(data["config"])))
        sd = {k: v.float() if v.is_floating_point() else v
              for k, v in data["state_dict"].items()}
        model.load_state_dict(sd, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise WeightsError(f"{path} does not fit the ATSNet architecture ({first})") from None
    info = {k: v for k, v in data.items() if k != "state_dict"}
    info["path"] = path
    return model.eval(), info
