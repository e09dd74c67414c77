"""Motion synthesis from still images: camera paths and moving sprites, rendered in torch.

A :class:`MotionScene` renders, for any (fractional) readout time ``t``, a background image
seen through a moving camera (pan, zoom, rotation) with sprites (textured blobs cut from other
images) moving over it independently. Paths are closed-form smooth functions of time
(:class:`Trajectory`), so every readout step is rendered from the continuous path: exact
sub-frame motion, no interpolation between key frames. Rendering resamples each layer for a
whole chunk of steps, batched over ``B`` scenes, on any device, with
:func:`spkrecon.simulate.exact.sample` (``grid_sample``'s function in exactly rounded float64
steps); paths, affines and random shapes use :mod:`spkrecon.simulate.exact`'s functions too, so
a seed gives the same light, to the bit, on every CPU. :func:`random_motion_scene` draws
random paths and sprites from a ``torch.Generator`` (deterministic under a seed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from spkrecon.errors import ParameterError
from spkrecon.simulate import exact
from spkrecon.simulate.scenes import Scene


# -- paths ---------------------------------------------------------------------------------
@dataclass
class Trajectory:
    """Smooth paths of ``D`` components for a batch of shape ``lead`` (float64 parameters).

    ``q(t) = p0 + v t + a t^2 / 2 + sum_k (b_k / w_k) (cos(phi_k) - cos(w_k t + phi_k))``:
    a drift, a constant acceleration and ``K`` sinusoidal velocity wobbles. ``p0`` is the
    value at ``t = origin``. ``turn`` (optional, ``(*lead, D)``) adds ``turn * max(t, 0)``:
    the velocity changes by ``turn`` at ``origin``, as a video interpolated between frames
    changes it at every original frame (the REDS-simulated recordings' key frames).
    """

    p0: torch.Tensor  # (*lead, D)
    v: torch.Tensor  # (*lead, D)
    a: torch.Tensor  # (*lead, D)
    amp: torch.Tensor  # (*lead, D, K)
    omega: torch.Tensor  # (*lead, D, K)
    phase: torch.Tensor  # (*lead, D, K)
    origin: float = 0.0
    turn: torch.Tensor | None = None  # (*lead, D)

    @classmethod
    def linear(cls, p0: torch.Tensor, v: torch.Tensor | None = None,
               a: torch.Tensor | None = None, origin: float = 0.0) -> Trajectory:
        """``p0 + v (t - origin) + a (t - origin)^2 / 2``."""
        p0 = torch.as_tensor(p0, dtype=torch.float64)
        z = torch.zeros_like(p0)
        v = z if v is None else torch.as_tensor(v, dtype=torch.float64, device=p0.device)
        a = z if a is None else torch.as_tensor(a, dtype=torch.float64, device=p0.device)
        k = torch.zeros((*p0.shape, 1), dtype=torch.float64, device=p0.device)
        return cls(p0, v, a, k, k + 1.0, k, origin)

    @property
    def device(self) -> torch.device:
        return self.p0.device

    def to(self, device: str | torch.device) -> Trajectory:
        """The same paths with their parameters on ``device``."""
        return Trajectory(*(x.to(device) for x in (self.p0, self.v, self.a, self.amp,
                                                    self.omega, self.phase)), self.origin,
                          None if self.turn is None else self.turn.to(device))

    def at(self, t: torch.Tensor) -> torch.Tensor:
        """Values ``(*lead, n, D)`` at times ``t (n,)``."""
        t = t.to(self.device, torch.float64) - self.origin
        tt = t.view(*([1] * (self.p0.ndim - 1)), -1, 1)  # (*1, n, 1)
        q = (self.p0.unsqueeze(-2) + self.v.unsqueeze(-2) * tt) \
            + (self.a.unsqueeze(-2) * 0.5) * (tt * tt)
        w = self.omega.unsqueeze(-3)  # (*lead, 1, D, K)
        ph = self.phase.unsqueeze(-3)
        tk = tt.unsqueeze(-1)  # (*1, n, 1, 1)
        wob = (self.amp.unsqueeze(-3) / w) * (exact.cos(ph) - exact.cos(w * tk + ph))
        if self.turn is not None:
            q = q + self.turn.unsqueeze(-2) * tt.clamp(min=0.0)
        return q + _sum_last(wob)

    def velocity(self, t: torch.Tensor) -> torch.Tensor:
        """Derivatives ``(*lead, n, D)`` at times ``t (n,)``."""
        t = t.to(self.device, torch.float64) - self.origin
        tt = t.view(*([1] * (self.p0.ndim - 1)), -1, 1)
        dq = self.v.unsqueeze(-2) + self.a.unsqueeze(-2) * tt
        w = self.omega.unsqueeze(-3)
        wob = self.amp.unsqueeze(-3) * exact.sin(w * tt.unsqueeze(-1) + self.phase.unsqueeze(-3))
        if self.turn is not None:
            dq = dq + self.turn.unsqueeze(-2) * (tt > 0).to(dq.dtype)
        return dq + _sum_last(wob)

    def scaled(self, factor: torch.Tensor) -> Trajectory:
        """Deviations from ``p0`` multiplied by ``factor`` (broadcast over ``lead``)."""
        f = factor.to(self.device, torch.float64)
        fv = f.view(*f.shape, *([1] * (self.v.ndim - f.ndim)))
        fk = fv.unsqueeze(-1)
        return Trajectory(self.p0.clone(), self.v * fv, self.a * fv, self.amp * fk,
                          self.omega, self.phase, self.origin,
                          None if self.turn is None else self.turn * fv)


def planar(size: torch.Tensor | float, angle: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Vectors shaped as ``like (..., D)``: length ``size`` at ``angle`` (radians) in the
    first two components (x, y), zero in the others (zoom, rotation)."""
    out = torch.zeros_like(like)
    out[..., 0], out[..., 1] = size * torch.cos(angle), size * torch.sin(angle)
    return out


def _sum_last(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last dimension in a fixed order (a reduction's order may depend on the
    CPU's vector width)."""
    out = x[..., 0]
    for k in range(1, x.shape[-1]):
        out = out + x[..., k]
    return out


# -- configuration -------------------------------------------------------------------------
RESAMPLE = ("bilinear", "bicubic")


@dataclass
class MotionConfig:
    """Random motion: speeds in pixels per readout step, rates per step."""

    #: Fastest sprite, px/step (real recordings: a car at several px/step).
    max_speed: float = 4.0
    #: Fastest camera pan, px/step (also limited by the room the image leaves).
    camera_max_speed: float = 1.0
    #: Slowest non-static speed; speeds are log-uniform in [min_speed, max].
    min_speed: float = 0.02
    #: Probability that the camera (or a sprite) is still.
    static_prob: float = 0.15
    max_zoom_rate: float = 0.002
    max_rotation_rate: float = 0.002
    #: Share of the speed given to sinusoidal wobbles (curved, accelerating paths).
    wobble: float = 0.3
    #: Number of sprites, drawn uniformly in [min, max].
    objects: tuple[int, int] = (0, 3)
    #: Sprite diameter as a fraction of the output's shorter side.
    object_size: tuple[float, float] = (0.15, 0.45)
    object_max_rotation_rate: float = 0.01
    object_max_zoom_rate: float = 0.002
    #: Resampling of the moving images: ``bilinear`` or ``bicubic``. Bilinear halves the
    #: high-frequency energy of a still photo at random sub-pixel offsets; bicubic keeps most.
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLE:
            raise ParameterError(f"unknown resampling '{self.resample}'",
                                 f"use one of {', '.join(RESAMPLE)}")
        if self.max_speed < 0 or self.camera_max_speed < 0:
            raise ParameterError("speeds must be >= 0")
        if not 0 < self.min_speed:
            raise ParameterError(f"min_speed must be positive, got {self.min_speed}")
        if not 0 <= self.static_prob <= 1:
            raise ParameterError(f"static_prob must be in [0, 1], got {self.static_prob}")
        if not 0 <= self.wobble < 1:
            raise ParameterError(f"wobble must be in [0, 1), got {self.wobble}")
        lo, hi = self.objects
        if not 0 <= lo <= hi:
            raise ParameterError(f"objects must be 0 <= min <= max, got {self.objects}")
        slo, shi = self.object_size
        if not 0 < slo <= shi <= 1:
            raise ParameterError(f"object_size must be 0 < min <= max <= 1, got {self.object_size}")
        for name in ("max_zoom_rate", "max_rotation_rate", "object_max_rotation_rate",
                     "object_max_zoom_rate"):
            if getattr(self, name) < 0:
                raise ParameterError(f"{name} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objects"], d["object_size"] = list(self.objects), list(self.object_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MotionConfig:
        bad = [k for k in d if k not in cls.__dataclass_fields__]
        if bad:
            raise ParameterError(f"unknown motion parameters: {', '.join(bad)}")
        d = dict(d)
        for k in ("objects", "object_size"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    @classmethod
    def still(cls) -> MotionConfig:
        """No motion at all."""
        return cls(max_speed=0.0, camera_max_speed=0.0, static_prob=1.0, max_zoom_rate=0.0,
                   max_rotation_rate=0.0, objects=(0, 0))


# -- sprites -----------------------------------------------------------------------------
@dataclass
class Sprites:
    """``K`` sprites per scene: premultiplied light and coverage ``(B, K, 2, S, S)`` and their
    paths ``(B, K)`` of (x, y, log scale, angle) in output pixels (centre position)."""

    layers: torch.Tensor
    path: Trajectory

    @property
    def count(self) -> int:
        return int(self.layers.shape[1])

    def to(self, device: str | torch.device) -> Sprites:
        return Sprites(self.layers.to(device), self.path.to(device))


@dataclass(eq=False)
class MotionScene(Scene):
    """A background seen through a camera path with sprites on top; see module docstring.

    ``background (B, Hb, Wb)``; the camera path gives (x, y) of the output centre in
    background pixels, the log zoom (output pixels per background pixel) and the angle.
    """

    background: torch.Tensor
    size: tuple[int, int]
    camera: Trajectory
    sprites: Sprites | None = None
    num_steps: int | None = None
    padding: str = "reflection"
    info: dict[str, Any] = field(default_factory=dict)
    #: ``bilinear`` or ``bicubic`` (see :class:`MotionConfig`).
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        bg = self.background
        if bg.ndim == 4 and bg.shape[1] == 1:
            bg = bg[:, 0]
        if bg.ndim != 3:
            raise ParameterError(
                f"background must be (B, H, W), got {tuple(self.background.shape)}")
        self.background = bg.float()
        self.batch = bg.shape[0]
        self.height, self.width = (int(s) for s in self.size)
        self.device = bg.device
        self._ys = torch.arange(self.height, device=self.device, dtype=torch.float64)
        self._xs = torch.arange(self.width, device=self.device, dtype=torch.float64)

    def to(self, device: str | torch.device) -> MotionScene:
        """The same scene rendered on ``device``."""
        return MotionScene(self.background.to(device), self.size, self.camera.to(device),
                           self.sprites.to(device) if self.sprites is not None else None,
                           self.num_steps, self.padding, dict(self.info), self.resample)

    def _sample(self, image: torch.Tensor, m: torch.Tensor, padding: str,
                window: tuple[slice, slice] | None = None) -> torch.Tensor:
        """``image (B, C, Hs, Ws)`` seen through pixel affines ``m (B, n, 2, 3)`` over the
        whole view or the ``window`` (rows, columns) of it: ``(B, C, n, h, w)`` float32."""
        xs, ys = (self._xs, self._ys) if window is None else (self._xs[window[1]],
                                                               self._ys[window[0]])
        # float32 coordinates (1e-5 px at 1000 px): exact steps all the same, half the memory
        x, y = exact.affine_coords(m, xs, ys, torch.float32)
        return exact.sample(image, x, y, self.resample, padding, torch.float32)

    def camera_affine(self, times: torch.Tensor) -> torch.Tensor:
        """Pixel affines ``(B, n, 2, 3)``: output pixel (x, y, 1) -> background pixel."""
        q = self.camera.at(times)  # (B, n, 4)
        cx, cy, lz, ang = q.unbind(-1)
        inv = exact.exp(-lz)
        c, s = exact.cos(ang) * inv, exact.sin(ang) * inv
        ox, oy = (self.width - 1) / 2, (self.height - 1) / 2
        return torch.stack([torch.stack([c, -s, (cx - c * ox) + s * oy], -1),
                            torch.stack([s, c, (cy - s * ox) - c * oy], -1)], -2)

    def light_at(self, times: torch.Tensor) -> torch.Tensor:
        h, w = self.height, self.width
        out = self._sample(self.background[:, None], self.camera_affine(times),
                           self.padding)[:, 0]  # (B, n, h, w)
        if self.sprites is not None and self.sprites.count:
            q = self.sprites.path.at(times)  # (B, K, n, 4)
            size = self.sprites.layers.shape[-1]
            centre = (size - 1) / 2
            active = self.sprites.layers[:, :, 1].flatten(2).amax(-1).amax(0) > 0  # (K,)
            for k in range(self.sprites.count):
                if not bool(active[k]):
                    continue
                px, py, lz, ang = q[:, k].unbind(-1)
                # Only the window the sprite can touch during these steps is sampled.
                reach = (size / 2) * math.sqrt(2) * float(exact.exp(lz).max()) + 2
                x0, x1 = max(0, math.floor(float(px.min()) - reach)), \
                    min(w, math.ceil(float(px.max()) + reach))
                y0, y1 = max(0, math.floor(float(py.min()) - reach)), \
                    min(h, math.ceil(float(py.max()) + reach))
                if x1 <= x0 or y1 <= y0:
                    continue
                inv = exact.exp(-lz)
                c, s = exact.cos(ang) * inv, exact.sin(ang) * inv
                # local = R(-ang) (o - p) / scale + centre
                m = torch.stack([torch.stack([c, s, -(c * px + s * py) + centre], -1),
                                 torch.stack([-s, c, (s * px - c * py) + centre], -1)], -2)
                win = (slice(y0, y1), slice(x0, x1))
                layer = self._sample(self.sprites.layers[:, k], m, "zeros", win)
                if self.resample != "bilinear":  # cubic taps overshoot: keep the mask in [0, 1]
                    layer[:, 1].clamp_(0.0, 1.0)
                region = out[:, :, y0:y1, x0:x1]
                region.mul_(1 - layer[:, 1]).add_(layer[:, 0])
        return out.clamp_(0.0, 1.0)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "background": list(self.background.shape[-2:]),
                "sprites": self.sprites.count if self.sprites is not None else 0, **self.info}


# -- random synthesis ----------------------------------------------------------------------
def _u(shape: tuple[int, ...], g: torch.Generator | None, device: torch.device,
       lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, device=device, dtype=torch.float64)


def sample_speeds(shape: tuple[int, ...], max_speed: float, config: MotionConfig,
                  g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Speeds: 0 with ``static_prob``, else log-uniform in ``[min_speed, max_speed]``."""
    still = _u(shape, g, device) < config.static_prob
    lo = min(config.min_speed, max_speed)
    if max_speed <= 0:
        return torch.zeros(shape, dtype=torch.float64, device=device)
    logs = _u(shape, g, device, math.log(lo), math.log(max_speed))
    return torch.where(still, torch.zeros_like(logs), exact.exp(logs))


def _random_path(lead: tuple[int, ...], steps: int, rates: torch.Tensor, planar: torch.Tensor,
                 config: MotionConfig, g: torch.Generator | None, device: torch.device,
                 origin: float) -> Trajectory:
    """Paths of 4 components (x, y, log zoom, angle) with peak rates about ``rates (*lead, 4)``.

    ``planar (*lead,)`` is the speed of the (x, y) drift, in a random direction.
    """
    k = 2
    wob = config.wobble
    ang = _u(lead, g, device, 0, 2 * math.pi)
    sign = torch.where(_u((*lead, 2), g, device) < 0.5, -1.0, 1.0).to(torch.float64)
    v = torch.stack([planar * exact.cos(ang), planar * exact.sin(ang),
                     rates[..., 2] * sign[..., 0], rates[..., 3] * sign[..., 1]], -1) * (1 - wob)
    span = torch.stack([planar, planar, rates[..., 2], rates[..., 3]], -1)
    amp = span[..., None] * (wob / k) * _u((*lead, 4, k), g, device, -1.0, 1.0)
    period = _u((*lead, 4, k), g, device, 0.5, 2.0) * max(steps, 8)
    omega = 2 * math.pi / period
    phase = _u((*lead, 4, k), g, device, 0, 2 * math.pi)
    p0 = torch.zeros((*lead, 4), dtype=torch.float64, device=device)
    return Trajectory(p0, v, torch.zeros_like(v), amp, omega, phase, origin)


def _even_times(steps: int, count: int) -> torch.Tensor:
    """``count`` times evenly spread over ``[0, steps - 1]`` (``torch.linspace``'s job, in
    exactly rounded steps)."""
    if count < 2:
        return torch.zeros(max(count, 0), dtype=torch.float64)
    return torch.arange(count, dtype=torch.float64) * (max(steps - 1, 0) / (count - 1))


def _fit_camera(path: Trajectory, steps: int, size: tuple[int, int], bg_size: tuple[int, int],
                g: torch.Generator | None) -> Trajectory:
    """Shrink each camera path until the view stays inside the background, then place it."""
    h, w = size
    bh, bw = bg_size
    n = min(steps, 2000)
    times = _even_times(steps, n + 1)
    q = path.at(times)  # (B, n+1, 4) deviations, p0 = 0
    slack = 1.5  # pixels kept free at the border for bilinear taps and sampling between times

    def bounds(f: torch.Tensor) -> tuple[torch.Tensor, ...]:
        qf = q * f[:, None, None]
        lz, ang = qf[..., 2], qf[..., 3]
        inv = exact.exp(-lz)
        ca, sa = exact.cos(ang).abs(), exact.sin(ang).abs()
        hx = (ca * (w / 2) + sa * (h / 2)) * inv + slack
        hy = (sa * (w / 2) + ca * (h / 2)) * inv + slack
        lo_x = (hx - 0.5 - qf[..., 0]).amax(1)
        hi_x = (bw - 0.5 - hx - qf[..., 0]).amin(1)
        lo_y = (hy - 0.5 - qf[..., 1]).amax(1)
        hi_y = (bh - 0.5 - hy - qf[..., 1]).amin(1)
        return lo_x, hi_x, lo_y, hi_y

    b = q.shape[0]
    zero = torch.zeros(b, dtype=torch.float64, device=q.device)
    lo_x, hi_x, lo_y, hi_y = bounds(zero)
    if bool(((lo_x > hi_x) | (lo_y > hi_y)).any()):
        raise ParameterError(
            f"a {bh}x{bw} background cannot fill a {h}x{w} view",
            "use a larger image or prepare it with spkrecon.simulate.prepare_background")
    lo_f, hi_f = zero.clone(), torch.ones_like(zero)
    lx, hx_, ly, hy_ = bounds(hi_f)
    ok = (lx <= hx_) & (ly <= hy_)
    for _ in range(20):
        mid = (lo_f + hi_f) / 2
        lx, hx_, ly, hy_ = bounds(mid)
        good = (lx <= hx_) & (ly <= hy_)
        lo_f = torch.where(good, mid, lo_f)
        hi_f = torch.where(good, hi_f, mid)
    factor = torch.where(ok, torch.ones_like(lo_f), lo_f)
    lx, hx_, ly, hy_ = bounds(factor)
    fitted = path.scaled(factor)
    ux = _u((b,), g, q.device)
    uy = _u((b,), g, q.device)
    fitted.p0[..., 0] = lx + (hx_ - lx).clamp(min=0) * ux
    fitted.p0[..., 1] = ly + (hy_ - ly).clamp(min=0) * uy
    return fitted


def _sprite_masks(b: int, k: int, size: int, diam: torch.Tensor, g: torch.Generator | None,
                  device: torch.device) -> torch.Tensor:
    """Soft star-convex blobs ``(B, K, S, S)``: superellipses with a wavy rim, 1-px edges."""
    c = (size - 1) / 2
    r = torch.arange(size, device=device, dtype=torch.float64) - c
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    rho = torch.sqrt(xx * xx + yy * yy)
    phi = exact.atan2(yy, xx)
    expo = _u((b, k, 1, 1), g, device, 2.0, 6.0)
    aspect = _u((b, k, 1, 1), g, device, 0.45, 1.0)
    tilt = _u((b, k, 1, 1), g, device, 0, math.pi)
    p = phi - tilt
    ax, ay = torch.ones_like(aspect), aspect
    se = exact.pow(exact.cos(p).abs() / ax, expo) + exact.pow(exact.sin(p).abs() / ay, expo)
    radius = exact.pow(se, -1.0 / expo)
    wav = torch.zeros_like(radius)
    for harm in (2, 3, 5):
        a = _u((b, k, 1, 1), g, device, -0.08, 0.08)
        ph = _u((b, k, 1, 1), g, device, 0, 2 * math.pi)
        wav = wav + a * exact.cos(harm * p + ph)
    edge = (diam[..., None, None] / 2) * radius * (1 + wav)
    return (edge - rho + 0.5).clamp(0.0, 1.0).float()


def _crop_textures(sources: torch.Tensor, b: int, k: int, size: int,
                   g: torch.Generator | None) -> torch.Tensor:
    """Random ``size x size`` crops ``(B, K, S, S)`` of the source images, scaled 0.7-1.4x."""
    device = sources.device
    nsrc, sh, sw = sources.shape
    pick = torch.randint(0, nsrc, (b, k), generator=g, device=device)
    scale = _u((b, k), g, device, 0.7, 1.4)
    half = scale * size / 2
    cx = half + _u((b, k), g, device) * (sw - 2 * half).clamp(min=0)
    cy = half + _u((b, k), g, device) * (sh - 2 * half).clamp(min=0)
    r = (torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2)
    x = cx[..., None, None] + scale[..., None, None] * r[None, None, None, :]
    y = cy[..., None, None] + scale[..., None, None] * r[None, None, :, None]
    x, y = torch.broadcast_tensors(x, y)
    src = sources[pick.flatten()][:, None]  # (B*K, 1, H, W)
    out = exact.sample(src, x.reshape(b * k, size, size), y.reshape(b * k, size, size),
                       "bilinear", "reflection")
    return out.view(b, k, size, size).float()


def random_sprites(batch: int, size: tuple[int, int], steps: int, config: MotionConfig,
                   sources: torch.Tensor, g: torch.Generator | None = None,
                   key_step: float | None = None) -> Sprites | None:
    """Random sprites cut from ``sources (N, H, W)``; each is inside the view at ``key_step``."""
    kmax = config.objects[1]
    if kmax == 0:
        return None
    device = sources.device
    h, w = size
    short = min(h, w)
    canvas = max(4, math.ceil(config.object_size[1] * short) + 3)
    count = torch.randint(config.objects[0], kmax + 1, (batch,), generator=g, device=device)
    active = torch.arange(kmax, device=device)[None] < count[:, None]  # (B, K)
    diam = _u((batch, kmax), g, device, *config.object_size) * short
    masks = _sprite_masks(batch, kmax, canvas, diam, g, device)
    tex = _crop_textures(sources, batch, kmax, canvas, g)
    gain = _u((batch, kmax, 1, 1), g, device, 0.6, 1.4).float()
    tex = (tex * gain).clamp(0.0, 1.0)
    masks = masks * active[..., None, None]
    layers = torch.stack([tex * masks, masks], dim=2)  # (B, K, 2, S, S)
    key = (steps - 1) / 2 if key_step is None else float(key_step)
    speeds = sample_speeds((batch, kmax), config.max_speed, config, g, device)
    rates = torch.stack([speeds, speeds,
                         _u((batch, kmax), g, device) * config.object_max_zoom_rate,
                         _u((batch, kmax), g, device) * config.object_max_rotation_rate], -1)
    path = _random_path((batch, kmax), steps, rates, speeds, config, g, device, key)
    path.p0[..., 0] = _u((batch, kmax), g, device, 0.1, 0.9) * w
    path.p0[..., 1] = _u((batch, kmax), g, device, 0.1, 0.9) * h
    path.p0[..., 3] = _u((batch, kmax), g, device, 0, 2 * math.pi)
    return Sprites(layers, path)


def prepare_background(image: torch.Tensor, size: tuple[int, int], margin: float = 0.25
                       ) -> torch.Tensor:
    """Scale ``(..., H, W)`` (antialiased) so it covers ``size`` enlarged by ``margin``.

    The aspect ratio is kept; the room left over is where the camera can travel.
    """
    h, w = image.shape[-2:]
    th, tw = size[0] * (1 + margin), size[1] * (1 + margin)
    scale = max(th / h, tw / w)
    nh, nw = max(size[0] + 4, round(h * scale)), max(size[1] + 4, round(w * scale))
    return exact.resize(image, nh, nw).float().clamp(0.0, 1.0)


def random_motion_scene(backgrounds: torch.Tensor, size: tuple[int, int], steps: int,
                        config: MotionConfig | None = None,
                        generator: torch.Generator | None = None,
                        sprite_sources: torch.Tensor | None = None,
                        key_step: float | None = None, align_key: bool = False
                        ) -> MotionScene:
    """``B`` random moving scenes of ``size`` over ``steps`` readout steps.

    ``backgrounds (B, Hb, Wb)`` are used at their own scale (1 background pixel = 1 output
    pixel at zoom 1); they must be larger than ``size`` (see :func:`prepare_background`),
    and the camera stays inside them. Sprites are cut from ``sprite_sources (N, H, W)``
    (default: the backgrounds, rolled so a scene's sprites come from other images). Sprites
    are inside the view at ``key_step`` (default: the middle step). With ``align_key`` the
    camera's view at ``key_step`` is an exact pixel crop of the background (whole-pixel
    position, no zoom or rotation): unresampled, as sharp as the image. All randomness comes
    from ``generator`` (on the backgrounds' device).
    """
    cfg = config or MotionConfig()
    bg = backgrounds[:, 0] if backgrounds.ndim == 4 else backgrounds
    if bg.ndim != 3:
        raise ParameterError(f"backgrounds must be (B, H, W), got {tuple(backgrounds.shape)}")
    if steps < 1:
        raise ParameterError(f"steps must be at least 1, got {steps}")
    b = bg.shape[0]
    device = bg.device
    speeds = sample_speeds((b,), cfg.camera_max_speed, cfg, generator, device)
    still = speeds == 0
    rates = torch.stack([speeds, speeds,
                         _u((b,), generator, device) * cfg.max_zoom_rate,
                         _u((b,), generator, device) * cfg.max_rotation_rate], -1)
    rates[..., 2:] = torch.where(still[:, None], torch.zeros_like(rates[..., 2:]), rates[..., 2:])
    path = _random_path((b,), steps, rates, speeds, cfg, generator, device, 0.0)
    camera = _fit_camera(path, steps, size, tuple(bg.shape[-2:]), generator)
    if align_key:
        t_key = (steps - 1) / 2 if key_step is None else float(key_step)
        q = camera.at(torch.tensor([t_key], dtype=torch.float64, device=device))[:, 0]
        cx, cy = (size[1] - 1) / 2, (size[0] - 1) / 2
        # background x of output pixel i at zero zoom and angle: i - cx + q_x; make it whole
        camera.p0[:, 0] += torch.round(q[:, 0] - cx) + cx - q[:, 0]
        camera.p0[:, 1] += torch.round(q[:, 1] - cy) + cy - q[:, 1]
        camera.p0[:, 2:] -= q[:, 2:]
    sources = sprite_sources
    if sources is None:
        sources = bg.roll(1, dims=0) if b > 1 else bg.flip(-1)
    sprites = random_sprites(b, size, steps, cfg, sources.to(device), generator, key_step)
    vel = camera.velocity(_even_times(steps, min(steps, 512)))
    peak = torch.sqrt(vel[..., 0] * vel[..., 0] + vel[..., 1] * vel[..., 1]).amax(-1)
    info = {"camera_peak_speed": [round(float(v), 4) for v in peak.cpu()]}
    return MotionScene(bg, size, camera, sprites, steps, info=info, resample=cfg.resample)
