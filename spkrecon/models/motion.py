"""Motion from spikes, coarse to fine, and counts integrated along it.

A spike count's noise falls with the frames it spans, but where the scene moves it blurs by
speed times span. Counting along the motion instead of at a fixed pixel removes the blur
(the idea of motion-compensated integration in video denoising; for spike cameras see the
motion-aligned windows of Spk2ImgNet, Zhao et al., CVPR 2021, which learns its alignment).
Here the velocity is measured, not learned:

- **estimate** (:func:`estimate_velocity`): pyramidal Lucas-Kanade (Lucas and Kanade, 1981;
  Bouguet's pyramid) between two short spike counts before and after the key frame, each
  already counted along the current velocity, so that every refinement sees sharper images
  and a longer baseline; a velocity field ``(B, 2, H, W)`` in px per readout step;
- **sides** (:func:`estimate_sides`): that velocity refined on each side of the key frame
  apart, for trajectories that turn there (accelerating motion; videos interpolated between
  frames, which turn at every original frame);
- **integrate** (:func:`compensated_frames`): every frame ``tau`` steps from the key frame
  sampled bilinearly at ``x + v(x) * tau`` (with two velocities, the one on ``tau``'s side);
  counts along the motion are sums of those.

The velocity is the apparent motion of the content at the key frame: content at ``x``
is at ``x + v * tau`` ``tau`` steps later. Everything is plain torch (CPU or GPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: Refinement stages: (pyramid level, half baseline D in frames, half width of each count,
#: iterations, half size of the Lucas-Kanade window at that level). The first stage sees
#: displacements of 2 * D * v / 2**level level pixels: about 2.5 at 5 px/step.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 2, 2, 3, 3), (3, 6, 4, 2, 3), (2, 12, 8, 2, 4), (2, 24, 16, 2, 4))

#: Largest speed the estimate returns (px per step); beyond, it is clipped.
MAX_SPEED = 8.0


def reach(stages: tuple[tuple[int, int, int, int, int], ...] = STAGES) -> int:
    """Frames :func:`estimate_velocity` reads on each side of the key frame."""
    return max(d + hw for _, d, hw, _, _ in stages)


def _base_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Pixel centres ``(h, w, 2)`` in grid_sample's normalised coordinates
    (align_corners=False: ``(2x + 1) / w - 1``)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                            torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    return torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], -1)


def _sample(frames: torch.Tensor, v: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
            taus: torch.Tensor, scale: float, base: torch.Tensor | None = None) -> torch.Tensor:
    """``frames (B, K, h, w)`` sampled at ``x + v * tau / scale`` for their ``taus (K,)``.

    ``v (B, 2, h, w)`` in full-resolution px/step, or a pair ``(v_back, v_ahead)``: frames
    with ``tau < 0`` follow the first; out ``(B, K, h, w)``; the border repeats.
    ``base``: :func:`_base_grid` of ``(h, w)``, when the caller has it.
    """
    b, k, h, w = frames.shape
    if base is None:
        base = _base_grid(h, w, frames.device)

    def steps(u: torch.Tensor) -> torch.Tensor:  # (B, 1, h, w, 2) grid units per step
        return torch.stack([u[:, 0] * (2.0 / (w * scale)), u[:, 1] * (2.0 / (h * scale))],
                           -1)[:, None]

    t = taus.to(frames.dtype).view(1, k, 1, 1, 1)
    step = steps(v) if not isinstance(v, tuple) else torch.where(t < 0, steps(v[0]),
                                                                  steps(v[1]))
    grid = torch.addcmul(base, step, t)  # (B, K, h, w, 2)
    out = F.grid_sample(frames.reshape(b * k, 1, h, w), grid.reshape(b * k, h, w, 2),
                        mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(b, k, h, w)


def _box(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of each channel of ``x (B, C, h, w)`` over ``(2k + 1)`` x ``(2k + 1)`` windows (the
    border repeats), as two 1-D convolutions: a square ``avg_pool2d`` measured 3-4x slower
    on a CPU."""
    b, c, h, w = x.shape
    kx = torch.full((1, 1, 1, 2 * k + 1), 1.0 / (2 * k + 1), dtype=x.dtype, device=x.device)
    y = F.conv2d(F.pad(x.reshape(b * c, 1, h, w), (k, k, 0, 0), mode="replicate"), kx)
    y = F.conv2d(F.pad(y, (0, 0, k, k), mode="replicate"), kx.transpose(2, 3))
    return y.view(b, c, h, w)


def _blur(x: torch.Tensor, passes: int) -> torch.Tensor:
    """``passes`` 3x3 binomial filters (a Gaussian of sigma ~0.7 * sqrt(passes))."""
    k = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    kx, ky = k.view(1, 1, 1, 3), k.view(1, 1, 3, 1)
    for _ in range(passes):
        x = F.conv2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), kx)
        x = F.conv2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), ky)
    return x


def _grad(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    px = F.pad(m, (1, 1, 0, 0), mode="replicate")
    py = F.pad(m, (0, 0, 1, 1), mode="replicate")
    return (px[..., 2:] - px[..., :-2]) * 0.5, (py[..., 2:, :] - py[..., :-2, :]) * 0.5


#: ``pooled(level, frames)``: window frames ``frames (K,)`` of every window, averaged over
#: ``2**level`` x ``2**level`` blocks as :func:`pool` does: ``(B, K, h, w)`` float.
Pooled = Callable[[int, torch.Tensor], torch.Tensor]


def pool(frames: torch.Tensor, level: int) -> torch.Tensor:
    """``frames (B, K, H, W)`` (any dtype) as float means over ``2**level`` blocks, ``(B, K,
    ceil(H / 2**level), ceil(W / 2**level))``: the pyramid levels of :func:`estimate_velocity`."""
    x = frames.float()
    if not level:
        return x
    s = 2 ** level
    return F.adaptive_avg_pool2d(x, (max(1, math.ceil(x.shape[-2] / s)),
                                     max(1, math.ceil(x.shape[-1] / s))))


def estimate_velocity(win: torch.Tensor, centre: int,
                      stages: tuple[tuple[int, int, int, int, int], ...] = STAGES,
                      blur: int = 1, reg: float = 0.05,
                      noise: float | tuple[float, ...] = 0.0,
                      pooled: Pooled | None = None) -> torch.Tensor:
    """Velocity field ``(B, 2, H, W)`` (px/step, x then y) at frame ``centre`` of spike
    windows ``win (B, T, H, W)``; stages must stay inside the window. ``pooled``: the window
    frames at a pyramid level, when the caller has them (by default pooled here from ``win``).

    ``reg`` regularises each 2x2 system by that share of the frame's mean structure-tensor
    trace; ``noise`` adds that many times the gradient energy that spike-count noise alone
    gives (at each pixel's rate, count length and pyramid level): without it, a scene with
    little texture anywhere (a floor, a wall, the sky) has only noise to align, and noise
    moves it at up to several px/step.
    """
    b, t, h, w = win.shape
    need = reach(stages)
    if centre - need < 0 or centre + need >= t:
        raise ValueError(f"motion stages need {need} frames on each side of the key frame")
    v: torch.Tensor | None = None
    kappas = tuple(noise) if isinstance(noise, (tuple, list)) else (noise,) * len(stages)
    pooled = pooled or _pool_window(win)
    for (level, d, hw, iters, k), kappa in zip(stages, kappas, strict=True):
        s = 2 ** level
        lh, lw = max(1, math.ceil(h / s)), max(1, math.ceil(w / s))
        taus = torch.cat([torch.arange(-d - hw, -d + hw + 1),
                          torch.arange(d - hw, d + hw + 1)]).to(win.device)
        frames = pooled(level, centre + taus)
        if v is None:
            v = torch.zeros((b, 2, lh, lw), device=win.device)
        else:
            v = F.interpolate(v, size=(lh, lw), mode="bilinear", align_corners=False)
        v = _refine(frames, v, taus, 2 * hw + 1, 2 * d, s, iters, k, kappa, reg, blur)
    assert v is not None
    return F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)


def _refine(frames: torch.Tensor, v: torch.Tensor, taus: torch.Tensor, n: int, span: int,
            s: int, iters: int, k: int, kappa: float, reg: float, blur: int) -> torch.Tensor:
    """Lucas-Kanade refinements of ``v (B, 2, h, w)`` (full-resolution px/step) at pyramid
    scale ``s`` between two counts of ``n`` frames each: ``frames (B, 2n, h, w)`` at offsets
    ``taus`` from the key frame, the earlier count first, their centres ``span`` frames
    apart."""
    base = _base_grid(v.shape[-2], v.shape[-1], v.device)
    for _ in range(iters):
        samp = _sample(frames, v, taus, s, base)
        before, after = samp[:, :n].mean(1, keepdim=True), samp[:, n:].mean(1, keepdim=True)
        if blur:  # spike counts are noisy: smooth before differentiating
            before, after = _blur(before, blur), _blur(after, blur)
        gx, gy = _grad(0.5 * (before + after))
        dt = after - before
        terms = [gx * gx, gx * gy, gy * gy, gx * dt, gy * dt]
        if kappa:
            # A count of n frames (Bernoulli-like along a trajectory) pooled over s x s
            # pixels has variance r (1 - r) / (n s^2); blurring keeps ~0.14 of it, the
            # central difference of the two counts' mean ~0.25 of that.
            m = (0.5 * (before + after)).clamp(0.0, 1.0)
            terms.append(m * (1 - m) * ((0.035 if blur else 0.25) / (n * s * s)))
        boxed = _box(torch.cat(terms, 1), k)  # one call: each is a frame-sized conv
        a, bb, c, p, q = (boxed[:, i:i + 1] for i in range(5))
        # Tikhonov term: where the image has no texture the step is ~0 (keep the coarse
        # estimate) instead of noise amplified by an ill-conditioned 2x2 system.
        lam = reg * (a + c).mean(dim=(1, 2, 3), keepdim=True) + 1e-9
        if kappa:
            lam = lam + kappa * boxed[:, 5:6]
        a, c = a + lam, c + lam
        det = a * c - bb * bb
        ux = -(c * p - bb * q) / det
        uy = -(a * q - bb * p) / det
        # The two counts are span frames apart: level px -> full-resolution px/step.
        step = torch.cat([ux, uy], 1).clamp(-1.5, 1.5) * (s / span)
        # Normalised convolution: each step is averaged with its neighbours' weighted by
        # how well they are determined (the structure tensor's determinant over trace),
        # so flat or saturated regions take the motion of textured ones around them.
        conf = det / (a + c)
        boxed = _box(torch.cat([step * conf, conf], 1), k)
        step = boxed[:, :2] / boxed[:, 2:].clamp(min=1e-12)
        v = (v + step).clamp(-MAX_SPEED, MAX_SPEED)
    return v


def side_reach(sides: tuple[tuple[int, int, int, int, int, int], ...]) -> int:
    """Frames :func:`estimate_sides` reads on each side of the key frame."""
    return max((far + hw for _, _, far, hw, _, _ in sides), default=0)


def estimate_sides(win: torch.Tensor, centre: int, v: torch.Tensor,
                   sides: tuple[tuple[int, int, int, int, int, int], ...],
                   blur: int = 1, reg: float = 0.05,
                   noise: float | tuple[float, ...] = 0.0,
                   pooled: Pooled | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The velocity ``v (B, 2, H, W)`` (of :func:`estimate_velocity`) refined on each side of
    the key frame apart: ``(v_back, v_ahead)``, each ``(B, 2, H, W)`` px/step.

    A trajectory need not be straight through the key frame: real motion accelerates, and a
    video interpolated between frames (as the REDS-simulated recordings are) changes its
    velocity at every original frame, the key frame included. ``sides``: stages ``(pyramid
    level, near, far, half count width, iterations, window half size)``, each between
    counts centred ``near`` and ``far`` frames from the key frame on one side. The two sides
    run as one batch: the side before the key frame is the side after it with time, and
    hence the velocity, reversed.
    """
    b, t, h, w = win.shape
    need = side_reach(sides)
    if centre - need < 0 or centre + need >= t:
        raise ValueError(f"motion sides need {need} frames on each side of the key frame")
    kappas = tuple(noise) if isinstance(noise, (tuple, list)) else (noise,) * len(sides)
    pooled = pooled or _pool_window(win)
    u = torch.cat([v, -v], 0)  # ahead, then back with time reversed
    for (level, near, far, hw, iters, k), kappa in zip(sides, kappas, strict=True):
        s = 2 ** level
        lh, lw = max(1, math.ceil(h / s)), max(1, math.ceil(w / s))
        taus = torch.cat([torch.arange(near - hw, near + hw + 1),
                          torch.arange(far - hw, far + hw + 1)]).to(win.device)
        frames = torch.cat([pooled(level, centre + taus), pooled(level, centre - taus)], 0)
        u = F.interpolate(u, size=(lh, lw), mode="bilinear", align_corners=False)
        u = _refine(frames, u, taus, 2 * hw + 1, far - near, s, iters, k, kappa, reg, blur)
    u = F.interpolate(u, size=(h, w), mode="bilinear", align_corners=False)
    return -u[b:], u[:b]


def _pool_window(win: torch.Tensor) -> Pooled:
    def pooled(level: int, frames: torch.Tensor) -> torch.Tensor:
        return pool(win[:, frames], level)

    return pooled


def compensated_frames(win: torch.Tensor, centre: int,
                       v: torch.Tensor | tuple[torch.Tensor, torch.Tensor], taus: torch.Tensor,
                       chunk: int = 16) -> torch.Tensor:
    """Frames ``centre + taus`` of ``win (B, T, H, W)`` sampled along ``v (B, 2, H, W)``:
    ``(B, K, H, W)`` float, each at ``x + v(x) * tau``. ``v`` may be a pair ``(v_back,
    v_ahead)`` (:func:`estimate_sides`): frames before the key frame follow the first,
    the others the second.

    Sampled ``chunk`` frames at a time: the sampling grid of all K frames at once would take
    twice the output's memory (100 MB for 127 frames of 250x400).
    """
    offsets = taus.tolist()
    taus = taus.to(win.device)
    b, _, h, w = win.shape
    out = torch.empty((b, len(taus), h, w), dtype=torch.float32, device=win.device)
    base = _base_grid(h, w, win.device)
    for i in range(0, len(taus), chunk):
        part = taus[i:i + chunk]
        vel = v
        if isinstance(v, tuple):  # a chunk on one side takes that side's velocity alone
            lo, hi = min(offsets[i:i + chunk]), max(offsets[i:i + chunk])
            vel = v[0] if hi <= 0 else v[1] if lo >= 0 else v  # tau = 0 moves by neither
        out[:, i:i + len(part)] = _sample(win[:, centre + part].float(), vel, part, 1.0, base)
    return out


__all__ = ["MAX_SPEED", "STAGES", "Pooled", "compensated_frames", "estimate_sides",
           "estimate_velocity", "pool", "reach", "side_reach"]
