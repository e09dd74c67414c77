"""Integrate-and-fire spike camera core, in torch (CPU or GPU, batched).

Each pixel integrates ``alpha * I(t)`` per readout step (``I`` the light in [0, 1]); when its
accumulator reaches the threshold ``theta`` it fires and ``theta`` is subtracted (the remainder
is kept). Accumulators start at a random phase ``U[0, theta)``. This is the model of the
spike camera papers (Zhu et al. ICME 2019; Zhao et al. CVPR 2021, Sec. 3.1): a still grey
``g`` fires at ``alpha * g / theta`` spikes per step. A pixel fires at most once per step;
light beyond one spike per step saturates.

The time loop runs over readout steps with all pixels of the batch at once; random numbers
are drawn in a fixed order (phase, fixed-pattern maps, then per step) so that a seed gives the
same spikes whatever the chunk size. Every operation that decides a spike is one exactly
rounded IEEE operation per pixel (float32 add, multiply, compare; no fused multiply-adds, no
reductions), and normal numbers come from :func:`spkrecon.simulate.exact.normal` rather than
``torch.randn``: the same light and seed give the same spikes on every CPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from spkrecon.errors import ParameterError
from spkrecon.simulate.exact import box_muller, normal
from spkrecon.simulate.noise import NoiseModel
from spkrecon.simulate.scenes import FrameScene, Scene


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed))
    return g


def _check_alpha_theta(alpha: float, theta: float) -> None:
    if not 0 < alpha <= 1:
        raise ParameterError(f"alpha (conversion rate) must be in (0, 1], got {alpha}")
    if not theta > 0:
        raise ParameterError(f"theta (threshold) must be positive, got {theta}")


class SpikeCamera:
    """Stateful sensor of ``(B, H, W)`` pixels; :meth:`integrate` advances it by some steps.

    ``noise`` adds the fixed-pattern maps (drawn here) and the per-step noise (drawn in
    :meth:`integrate`). ``generator`` must live on ``device``.
    """

    def __init__(self, batch: int, height: int, width: int, alpha: float = 0.6,
                 theta: float = 1.0, noise: NoiseModel | None = None,
                 generator: torch.Generator | None = None,
                 device: str | torch.device = "cpu") -> None:
        _check_alpha_theta(alpha, theta)
        if batch < 1 or height < 1 or width < 1:
            raise ParameterError(f"sensor shape must be positive, got {(batch, height, width)}")
        self.alpha, self.theta = float(alpha), float(theta)
        self.noise = None if noise is None or noise.is_off else noise
        self.device = torch.device(device)
        self.generator = generator
        self.shape = (batch, height, width)
        self.steps_done = 0
        kw = {"generator": generator, "device": self.device, "dtype": torch.float32}
        phase = torch.rand(self.shape, **kw)

        def randn() -> torch.Tensor:
            return normal(self.shape, **kw)

        self.threshold: torch.Tensor | float = self.theta
        self.gain: torch.Tensor | None = None
        self.dark: torch.Tensor | None = None
        nz = self.noise
        if nz is not None:
            s = nz.scale
            gain = nz.prnu_mean + (s * nz.prnu_std) * randn()
            self.gain = (gain / nz.prnu_mean).clamp_(min=0.0)
            dark = s * (nz.dark_current_mean + nz.dark_current_std * randn())
            cap = nz.capacitance_mean + (s * nz.capacitance_std) * randn()
            offset = s * (nz.threshold_offset_mean + nz.threshold_offset_std * randn())
            thr = self.theta * (cap / nz.capacitance_mean + offset)
            self.threshold = thr.clamp_(min=0.05 * self.theta)
            if nz.hot_pixel_fraction > 0:
                hot = torch.rand(self.shape, **kw) < nz.hot_pixel_fraction
                lo, hi = nz.hot_pixel_rate
                rate = lo + (hi - lo) * torch.rand(self.shape, **kw)
                dark = torch.where(hot, rate * self.threshold, dark)
            self.dark = dark.clamp_(min=0.0)
        self.accumulator = phase * self.threshold

    def integrate(self, light: torch.Tensor) -> torch.Tensor:
        """Spikes ``(B, n, H, W)`` bool for light ``(B, n, H, W)`` in [0, 1] over ``n`` steps."""
        if light.ndim != 4 or (light.shape[0], *light.shape[2:]) != self.shape:
            raise ParameterError(
                f"light must be (B, n, H, W) with (B, H, W) = {self.shape}, "
                f"got {tuple(light.shape)}")
        light = light.to(device=self.device, dtype=torch.float32)
        n = light.shape[1]
        out = torch.empty(light.shape, dtype=torch.bool, device=self.device)
        acc, thr, nz = self.accumulator, self.threshold, self.noise
        kw = {"generator": self.generator, "device": self.device, "dtype": torch.float32}
        photons = nz.shot_photons if nz is not None else float("inf")
        jitter = nz.scale * nz.threshold_jitter_std if nz is not None else 0.0
        temporal = photons < float("inf") or jitter > 0
        inc_all = None if temporal else light * self.alpha
        shot = jit = None
        for i in range(n):
            if temporal and i % 8 == 0:
                # one pair of uniform arrays per step, drawn step by step (the same numbers
                # whatever the chunk size), made normal 8 steps at a time
                m = min(8, n - i)
                u = torch.stack([torch.rand((2, *self.shape), **kw) for _ in range(m)], 1)
                z_cos, z_sin = box_muller(u)  # (m, B, H, W)
                shot, jit = (z_cos, z_sin) if photons < float("inf") else (None, z_cos)
            if inc_all is not None:
                inc = inc_all[:, i]
            else:
                li = light[:, i]
                if shot is not None:
                    li = (li + shot[i % 8] * (li.clamp(min=0) / photons).sqrt()).clamp_(min=0.0)
                inc = li * self.alpha
            if self.gain is not None:
                inc = self.dark + inc * self.gain  # not addcmul: it may fuse into one FMA
            acc.add_(inc)
            t = thr + jitter * jit[i % 8] if jit is not None else thr
            fired = acc >= t
            if isinstance(t, float):
                acc.sub_(fired.to(acc.dtype), alpha=t)
                acc.clamp_(max=t)
            else:
                acc.sub_(fired * t)
                torch.minimum(acc, t, out=acc)
            out[:, i] = fired
        self.steps_done += n
        return out


@dataclass
class SimChunk:
    """One chunk of a simulation: steps ``[start, start + n)``."""

    start: int
    spikes: torch.Tensor  # (B, n, H, W) bool
    #: Ground-truth light at the requested steps inside the chunk: step -> (B, H, W).
    gt: dict[int, torch.Tensor] = field(default_factory=dict)
    #: Light at every step of the chunk (B, n, H, W), when asked for.
    light: torch.Tensor | None = None


def _light_for_integration(scene: Scene, times: torch.Tensor, substeps: int) -> torch.Tensor:
    if substeps == 1:
        return scene.light_at(times)
    off = (torch.arange(substeps, dtype=torch.float64) + 0.5) / substeps - 0.5
    sub = (times[:, None] + off[None, :]).reshape(-1)
    light = scene.light_at(sub)
    b, _, h, w = light.shape
    light = light.view(b, times.numel(), substeps, h, w)
    total = light[:, :, 0]
    for k in range(1, substeps):  # a fixed order (a reduction's may depend on the CPU)
        total = total + light[:, :, k]
    return total / substeps


def iter_simulation(scene: Scene, steps: int, camera: SpikeCamera, *, chunk: int = 64,
                    substeps: int = 1, gt_steps: Sequence[int] = (),
                    keep_light: bool = False) -> Iterator[SimChunk]:
    """Run ``camera`` on ``scene`` for ``steps`` readout steps, ``chunk`` steps at a time.

    Readout step ``t`` integrates the light at time ``t`` (the mean over ``substeps``
    instants spread across the step when ``substeps > 1``); the ground truth of a step is the
    light at the instant ``t``. Memory holds one chunk.
    """
    if steps < 1:
        raise ParameterError(f"steps must be at least 1, got {steps}")
    if chunk < 1 or substeps < 1:
        raise ParameterError("chunk and substeps must be at least 1")
    wanted = sorted(set(int(s) for s in gt_steps))
    bad = [s for s in wanted if not 0 <= s < steps]
    if bad:
        raise ParameterError(f"ground-truth steps {bad} are outside 0..{steps - 1}")
    for start in range(0, steps, chunk):
        stop = min(steps, start + chunk)
        times = torch.arange(start, stop, dtype=torch.float64)
        light = _light_for_integration(scene, times, substeps)
        spikes = camera.integrate(light)
        in_chunk = [s for s in wanted if start <= s < stop]
        instant = light if substeps == 1 else None
        if keep_light and instant is None:
            instant = scene.light_at(times)
        gt: dict[int, torch.Tensor] = {}
        if in_chunk:
            if instant is not None:
                for s in in_chunk:
                    gt[s] = instant[:, s - start]
            else:
                sel = scene.light_at(torch.tensor(in_chunk, dtype=torch.float64))
                for j, s in enumerate(in_chunk):
                    gt[s] = sel[:, j]
        yield SimChunk(start, spikes, gt, instant if keep_light else None)


@dataclass
class SimResult:
    """Spikes ``(B, T, H, W)`` bool and ground truth ``(B, K, H, W)`` float32 at ``gt_steps``."""

    spikes: torch.Tensor
    gt: torch.Tensor | None
    gt_steps: list[int]


def simulate_batch(light: torch.Tensor | Scene, steps: int | None = None, *,
                   alpha: float = 0.6, theta: float = 1.0, noise: NoiseModel | None = None,
                   generator: torch.Generator | None = None,
                   gt_steps: Sequence[int] | None = None, steps_per_frame: float = 1.0,
                   substeps: int = 1, chunk: int = 64) -> SimResult:
    """Simulate a batch in memory (training, tests).

    ``light`` is a tensor ``(B, S, H, W)`` in [0, 1] (scene frames; ``steps_per_frame`` readout
    steps per frame, linearly blended between frames) or a :class:`Scene` (e.g. from
    :func:`spkrecon.simulate.random_motion_scene`). ``steps`` defaults to the scene's length.
    Runs on the device of ``light``; ``generator`` must be on the same device.
    """
    scene = light if isinstance(light, Scene) else FrameScene(light, steps_per_frame)
    if steps is None:
        if scene.num_steps is None:
            raise ParameterError("steps must be given for a scene without a natural length")
        steps = scene.num_steps
    b, h, w = scene.batch, scene.height, scene.width
    cam = SpikeCamera(b, h, w, alpha, theta, noise, generator, scene.device)
    gts = list(gt_steps) if gt_steps is not None else []
    spikes = torch.empty((b, steps, h, w), dtype=torch.bool, device=scene.device)
    found: dict[int, torch.Tensor] = {}
    for part in iter_simulation(scene, steps, cam, chunk=chunk, substeps=substeps, gt_steps=gts):
        spikes[:, part.start:part.start + part.spikes.shape[1]] = part.spikes
        found.update(part.gt)
    gt = torch.stack([found[s] for s in gts], dim=1) if gts else None
    return SimResult(spikes, gt, gts)
