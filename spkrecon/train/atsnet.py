"""Training ATSNet on the CPU from simulated spikes: broad speed and light distributions.

Every batch is simulated on the fly from still photos (:mod:`spkrecon.simulate`): a random
crop at a random scale, seen through a camera that pans at a log-uniform speed of up to
``max_speed`` px per readout step (or is still), with up to two sprites moving at their own
speeds; the light is scaled to a log-uniform mean firing rate between ``min_rate`` and
``max_rate`` spikes per frame (or left as it is); SCSim sensor noise at a random scale. The
input is rendered with bilinear or bicubic resampling at random, the truth always bicubic,
and each readout step integrates ``substeps`` instants (motion blur within a step). Images
that the project's evaluation suites hold out (:func:`spkrecon.suites.is_holdout`) are never
used; the validation set is drawn from them with a fixed seed.

Run (resumable; state in ``--out``)::

    python -m spkrecon.train.atsnet --images ../shared/data/images/train --out training/atsnet \
        --minutes 60

``--out`` holds ``last.pt`` (model, EMA, optimiser, step; resumed automatically), ``best.pt``
(the EMA weights with the best validation score, a spkrecon weights file), ``log.jsonl`` and
``config.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue as queues
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from spkrecon.models.atsnet import ATSNet, ATSNetConfig, predict, save_atsnet, window_features
from spkrecon.simulate.core import simulate_batch
from spkrecon.simulate.motion import (
    MotionConfig,
    MotionScene,
    Trajectory,
    planar,
    random_sprites,
)
from spkrecon.simulate.noise import NoiseModel
from spkrecon.simulate.scenes import GainScene, Scene, load_grey
from spkrecon.train.clips import FlowClips, key_shift, split_clips


@dataclass
class ATSTrainConfig:
    """What :func:`train` does; saved as ``config.json`` beside the state."""

    images: list[str] = field(default_factory=list)
    out: str = "training/atsnet"
    patch: int = 64
    batch: int = 8
    lr: float = 5e-4
    lr_min: float = 2e-5
    total_steps: int = 30000
    warmup: int = 200
    ema: float = 0.999
    minutes: float = 60.0
    seed: int = 0
    threads: int = 1
    alpha: float = 0.6
    #: Speeds, px per readout step (log-uniform from ``min_speed``; 0 with ``static_prob``).
    max_speed: float = 5.0
    min_speed: float = 0.02
    static_prob: float = 0.25
    #: Light: mean rate log-uniform in [min_rate, max_rate], or unscaled with ``normal_prob``.
    min_rate: float = 0.01
    max_rate: float = 0.5
    normal_prob: float = 0.35
    noise_prob: float = 0.7
    noise_max: float = 1.2
    scale_min: float = 0.35
    scale_max: float = 1.0
    #: Share of batches whose backgrounds are 2x2 mosaics of crops half the side (so a
    #: 321-pixel photo can shrink to ``scale_min``: dense detail, as the detail suite has).
    mosaic_prob: float = 0.0
    #: Share of training batches whose motions (camera and sprites) change velocity at the
    #: key instant, by up to ``turn_max`` of their speed in a random direction: a video
    #: interpolated between frames (the REDS-simulated recordings) turns at every original
    #: frame, and its ground truth is one of them. Validation never draws turns.
    turn_prob: float = 0.0
    turn_max: float = 0.6
    substeps: int = 2
    #: Share of batches whose input is rendered bicubic (else bilinear: softer, 4x cheaper).
    bicubic_prob: float = 0.3
    #: Steps from the key frame rendered at every instant; beyond, every ``far_every`` steps.
    near: float = 24.0
    far_every: int = 4
    max_side: int = 800
    val_minutes: float = 10.0
    val_per_condition: int = 6
    val_patch: int = 96
    checkpoint_minutes: float = 5.0
    log_every: int = 25
    #: Processes simulating batches beside the training process (0: simulate in-line).
    workers: int = 1
    #: Training steps per simulated batch (each with its own flip / rotation / time reversal).
    reuse: int = 2
    model: dict[str, Any] = field(default_factory=lambda: {"mixture": True})
    #: Start from these weights (a weights file); layers they lack keep their fresh values.
    init: str = ""
    #: Learning-rate multiplier of the mixture selector. Adam moves each parameter by at
    #: most about ``lr`` per step, and the selector's logits must travel several units to
    #: pick one estimate: at the base rate they barely left their start in 2,500 steps.
    select_lr: float = 10.0
    #: ``charbonnier`` (per pixel, on the normalised rate) or ``logmse``: the mean over
    #: patches of log(MSE), i.e. minus their mean PSNR, so that a clean patch's relative
    #: error weighs as much as a hard one's (Charbonnier lets fast, noisy patches dominate).
    loss: str = "charbonnier"
    #: Comma-separated layer-name prefixes that keep their fresh values even when ``init``
    #: has them (e.g. ``select``: restart a mixture that has saturated).
    reinit: str = ""
    #: Folders of frame sequences (``--videos``, e.g. DAVIS clips): real motion, several
    #: motions at once, occlusions. ``video_share`` of the batches come from them, the light
    #: of frame ``k`` at readout step ``k * spf``, ``spf`` log-uniform in
    #: [``video_spf_min``, ``video_spf_max``]. Held-out clips are validation only.
    videos: list[str] = field(default_factory=list)
    video_share: float = 0.0
    video_spf_min: float = 8.0
    video_spf_max: float = 60.0
    #: Share of the video batches whose key instant is an original video frame (the
    #: REDS construction: a sharp original as the truth, flow-interpolated, softer light
    #: around it); the others fall anywhere between frames.
    video_key_original: float = 0.0
    #: The video crops' scale range (0: ``scale_min`` / ``scale_max``). REDS's 720p frames are
    #: shrunk about 0.33x to 250x400; DAVIS's 854x480 frames need about that much to match
    #: its density of detail. Validation keeps the photos' range.
    video_scale_min: float = 0.0
    video_scale_max: float = 0.0
    #: ``fp32`` or ``bf16``: the network's forward pass under bf16 autocast (the features,
    #: the loss and validation stay fp32). On a CPU with AMX the forward and backward pass
    #: of a batch of 8 96x96 patches took 0.54 s against 0.95 s in fp32.
    precision: str = "fp32"


class FastMotionScene(MotionScene):
    """:class:`MotionScene` resampled by ``grid_sample``: many times faster than the
    bit-exact renderer, with last bits that depend on the CPU (irrelevant for training)."""

    def _sample(self, image: torch.Tensor, m: torch.Tensor, padding: str,
                window: tuple[slice, slice] | None = None) -> torch.Tensor:
        xs, ys = (self._xs, self._ys) if window is None else (self._xs[window[1]],
                                                               self._ys[window[0]])
        xs, ys = xs.float()[None, None, None, :], ys.float()[None, None, :, None]
        m = m.float()[..., None, None]  # (B, n, 2, 3, 1, 1)
        gx = m[:, :, 0, 0] * xs + m[:, :, 0, 1] * ys + m[:, :, 0, 2]
        gy = m[:, :, 1, 0] * xs + m[:, :, 1, 1] * ys + m[:, :, 1, 2]
        hs, ws = image.shape[-2:]
        b, n, h, w = gx.shape
        grid = torch.stack([(2 * gx + 1) / ws - 1, (2 * gy + 1) / hs - 1], -1)
        out = F.grid_sample(image.float(), grid.view(b, n * h, w, 2), mode=self.resample,
                            padding_mode=padding, align_corners=False)
        return out.view(b, image.shape[1], n, h, w)


class SparseTimeScene(Scene):
    """Another scene rendered at every instant within ``near`` steps of ``centre`` and, further
    out, at every ``every``-th step with linear blending in between.

    Far frames feed only long-window counts, which matter where the scene is still or slow;
    there the blend is exact (still) or close; fast scenes blur them anyway. About 3x fewer
    renders for a 255-step window.
    """

    def __init__(self, scene: Scene, centre: float, near: float, every: int) -> None:
        self.scene, self.centre, self.near, self.every = scene, centre, near, int(every)
        self.batch, self.height, self.width = scene.batch, scene.height, scene.width
        self.device, self.num_steps = scene.device, scene.num_steps

    def light_at(self, times: torch.Tensor) -> torch.Tensor:
        times = times.double()
        close = (times - self.centre).abs() <= self.near
        if bool(close.all()):
            return self.scene.light_at(times)
        lo = torch.floor(times / self.every) * self.every
        frac = ((times - lo) / self.every).float()
        anchors = torch.unique(torch.cat([lo[~close], lo[~close] + self.every]))
        rendered = self.scene.light_at(anchors)  # (B, m, H, W)
        pos = {float(a): i for i, a in enumerate(anchors.tolist())}
        out = torch.empty((self.batch, times.numel(), self.height, self.width))
        if bool(close.any()):
            out[:, close] = self.scene.light_at(times[close])
        for j in torch.nonzero(~close).view(-1).tolist():
            a, f = pos[float(lo[j])], float(frac[j])
            out[:, j] = torch.lerp(rendered[:, a], rendered[:, a + 1], f)
        return out


def _u(g: torch.Generator, shape: tuple[int, ...] = (), lo: float = 0.0, hi: float = 1.0
       ) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)


def load_images(folders: list[str], max_side: int, holdout: bool) -> list[torch.Tensor]:
    """Grey images ``(H, W)`` as uint8 tensors: the held-out ones or the others."""
    from spkrecon.train.data import _shrink

    out = []
    for p in _image_files(folders, holdout):
        img = _shrink(torch.from_numpy(load_grey(p)), max_side)
        out.append((img.clamp(0, 1) * 255 + 0.5).to(torch.uint8))
    if not out:
        raise ValueError(f"no {'held-out' if holdout else 'training'} images in {folders}")
    return out


def _image_files(folders: list[str], holdout: bool) -> list[Path]:
    """The image files of ``folders`` that the suites hold out, or the others."""
    from spkrecon.suites import holdout_images, is_holdout
    from spkrecon.train.data import image_files

    return [p for folder in folders for p in (holdout_images(folder) if holdout else [
        p for p in image_files(folder) if not is_holdout(p.name)])]


def _crops(images: list[torch.Tensor], n: int, size: int, scale: tuple[float, float],
           g: torch.Generator) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` crops ``(n, size, size)`` at random scales."""
    out = []
    for _ in range(n):
        img = images[int(torch.randint(len(images), (), generator=g))]
        s = float(_u(g, (), *scale))
        h, w = img.shape
        side = min(h, w, max(8, round(size / s)))
        y = int(torch.randint(h - side + 1, (), generator=g))
        x = int(torch.randint(w - side + 1, (), generator=g))
        part = img[y:y + side, x:x + side].float()[None, None] / 255.0
        out.append(F.interpolate(part, size=(size, size), mode="bilinear", antialias=True,
                                 align_corners=False)[0, 0])
    return torch.stack(out).clamp_(0.0, 1.0)


def _mosaics(images: list[torch.Tensor], n: int, tile: int, scale: tuple[float, float],
             g: torch.Generator) -> torch.Tensor:
    """``n`` backgrounds ``(n, 2 tile, 2 tile)``, each 2x2 random crops of ``tile`` pixels
    (see :func:`_crops`) rolled by a random offset, so the seams fall anywhere."""
    t = _crops(images, 4 * n, tile, scale, g).view(n, 2, 2, tile, tile)
    out = t.permute(0, 1, 3, 2, 4).reshape(n, 2 * tile, 2 * tile)
    dy, dx = (int(v) for v in torch.randint(2 * tile, (2,), generator=g))
    return out.roll((dy, dx), (1, 2))


def _speeds(g: torch.Generator, n: int, cfg: ATSTrainConfig) -> torch.Tensor:
    still = _u(g, (n,)) < cfg.static_prob
    v = torch.exp(_u(g, (n,), math.log(cfg.min_speed), math.log(cfg.max_speed)))
    return torch.where(still, torch.zeros_like(v), v)


def _turns(vel: torch.Tensor, share: float, g: torch.Generator) -> torch.Tensor:
    """Velocity changes ``(..., 4)`` for velocities ``vel (..., 4)``: up to ``share`` of each
    speed (uniform), in a random direction, in x and y only."""
    lead = vel.shape[:-1]
    size = vel[..., :2].norm(dim=-1) * _u(g, lead, 0.0, share)
    return planar(size, _u(g, lead, 0, 2 * math.pi), vel)


def make_batch(images: list[torch.Tensor], cfg: ATSTrainConfig, net: ATSNetConfig,
               g: torch.Generator, *, speed: float | None = None, rate: float | None = None,
               clips: FlowClips | None = None, spf: float | None = None,
               key_original: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike windows ``(B, T, P, P)`` uint8 and true rates ``(B, P, P)`` at the middle frame.

    ``speed`` / ``rate`` fix the camera speed and the mean rate (validation; ``rate=0``: the
    image's own light); by default they are drawn from the configured distributions. With
    ``clips``, ``video_share`` of the batches (all of them with ``spf`` given: readout steps
    per video frame) are crops of video clips instead, with the key instant on an original
    video frame for ``video_key_original`` of them (always or never with ``key_original``).
    """
    b, p = cfg.batch, cfg.patch
    r = net.radius
    steps = 2 * r + 1
    key = torch.tensor([float(r)], dtype=torch.float64)
    if clips is not None and (spf is not None or float(_u(g)) < cfg.video_share):
        if spf is None:
            spf = math.exp(float(_u(g, (), math.log(cfg.video_spf_min),
                                    math.log(cfg.video_spf_max))))
        if key_original is None:
            key_original = bool(cfg.video_key_original) and float(_u(g)) < cfg.video_key_original
        shift = key_shift(float(r), spf) if key_original else 0.0
        scale = (cfg.video_scale_min or cfg.scale_min, cfg.video_scale_max or cfg.scale_max)
        scene = clips.scene(b, p, steps, spf, scale, g, shift)
        return _expose(scene, scene.light_at(key)[:, 0], cfg, net, g, rate)
    # Training draws only: the validation sets (speed given) stay those of earlier runs.
    if speed is None and cfg.mosaic_prob and float(_u(g)) < cfg.mosaic_prob:
        bg = _mosaics(images, b, p, (cfg.scale_min, cfg.scale_max), g)
    else:
        bg = _crops(images, b, 2 * p, (cfg.scale_min, cfg.scale_max), g)
    sprite_src = _crops(images, b, p, (cfg.scale_min, cfg.scale_max), g)
    v = _speeds(g, b, cfg) if speed is None else torch.full((b,), float(speed), dtype=torch.float64)
    ang = _u(g, (b,), 0, 2 * math.pi)
    p0 = torch.zeros((b, 4), dtype=torch.float64)
    p0[:, 0] = p0[:, 1] = (2 * p - 1) / 2
    vel = torch.zeros((b, 4), dtype=torch.float64)
    vel[:, 0], vel[:, 1] = v * torch.cos(ang), v * torch.sin(ang)
    moving = (v > 0).double()
    vel[:, 2] = _u(g, (b,), -1e-3, 1e-3) * moving
    vel[:, 3] = _u(g, (b,), -1e-3, 1e-3) * moving
    acc = torch.zeros_like(vel)
    acc[:, :2] = vel[:, :2] * _u(g, (b, 1), -0.004, 0.004)
    camera = Trajectory.linear(p0, vel, acc, origin=float(r))
    mcfg = MotionConfig(max_speed=max(cfg.max_speed * 1.2, 0.1), min_speed=0.05,
                        static_prob=0.2, objects=(0, 2), wobble=0.2)
    sprites = random_sprites(b, (p, p), steps, mcfg, sprite_src, g, key_step=float(r))
    if speed is None and cfg.turn_prob and float(_u(g)) < cfg.turn_prob:
        camera.turn = _turns(vel, cfg.turn_max, g)
        if sprites is not None:
            sprites.path.turn = _turns(sprites.path.v, cfg.turn_max, g)
    resample = "bicubic" if float(_u(g)) < cfg.bicubic_prob else "bilinear"
    scene = FastMotionScene(bg, (p, p), camera, sprites, steps, resample=resample)
    truth_scene = FastMotionScene(bg, (p, p), camera, sprites, steps, resample="bicubic")
    return _expose(scene, truth_scene.light_at(key)[:, 0], cfg, net, g, rate)


def _expose(scene: Scene, plain: torch.Tensor, cfg: ATSTrainConfig, net: ATSNetConfig,
            g: torch.Generator, rate: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes of ``scene`` and the truth from its key-frame light ``plain (B, P, P)``, at a
    drawn (or the given) light level and noise."""
    b, r = plain.shape[0], net.radius
    steps = 2 * r + 1
    mean = plain.mean(dim=(1, 2)).clamp(min=0.02).double()
    if rate == 0:
        gain = torch.ones_like(mean)
    elif rate is None:
        target = torch.exp(_u(g, (b,), math.log(cfg.min_rate), math.log(cfg.max_rate)))
        normal = _u(g, (b,)) < cfg.normal_prob
        gain = torch.where(normal, torch.ones_like(target), target / (cfg.alpha * mean))
    else:
        gain = float(rate) / (cfg.alpha * mean)
    gain = gain.clamp(0.02, 3.0)
    truth = (plain * gain.float()[:, None, None]).clamp_(0.0, 1.0)
    noise = None
    if float(_u(g)) < cfg.noise_prob:
        # Fixed-pattern noise only: shot noise (5e4 photons at full scale) and threshold
        # jitter are tiny next to it, and drawing them per step costs more than rendering.
        noise = NoiseModel(scale=float(_u(g, (), 0.0, cfg.noise_max)), photons=0.0,
                           threshold_jitter_std=0.0)
    sparse = SparseTimeScene(scene, float(r), cfg.near, cfg.far_every)
    res = simulate_batch(GainScene(sparse, gain), steps, alpha=cfg.alpha, noise=noise,
                         generator=g, substeps=cfg.substeps)
    return res.spikes.to(torch.uint8), truth * cfg.alpha


LOSSES = ("charbonnier", "logmse")


def patch_log_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log10`` of each patch's MSE ``(B,)`` for ``(B, P, P)`` (floored at 1e-5)."""
    return torch.log10(((pred - target) ** 2).mean(dim=(-2, -1)) + 1e-5)


def training_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "charbonnier"
                  ) -> torch.Tensor:
    """Loss of normalised rates ``pred`` and ``target`` ``(B, P, P)``."""
    _check_loss(kind)
    if kind == "logmse":
        return patch_log_mse(pred, target).mean()
    return torch.sqrt((pred - target) ** 2 + 1e-6).mean()


def _check_loss(kind: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}: use one of {', '.join(LOSSES)}")


def augment(x: torch.Tensor, y: torch.Tensor, g: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flip / 90-degree rotation of windows ``(B, T, P, P)`` and truth."""
    k = int(torch.randint(4, (), generator=g))
    x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
    if float(_u(g)) < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    if float(_u(g)) < 0.5:  # time reversal: a scene played backwards is a scene too
        x = x.flip(1)
    return x.contiguous(), y.contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a - b) ** 2).mean(dim=(-2, -1)).clamp(min=1e-10)
    return -10 * torch.log10(mse)


#: Validation conditions: (name, camera speed px/step, mean rate; 0: the image's own light).
VAL_CONDITIONS: tuple[tuple[str, float, float], ...] = (
    ("still", 0.0, 0.0), ("v0.15", 0.15, 0.0), ("v0.5", 0.5, 0.0), ("v1", 1.0, 0.0),
    ("v2", 2.0, 0.0), ("v4", 4.0, 0.0), ("rate0.1", 0.1, 0.1), ("rate0.03", 0.05, 0.03),
)


def make_validation(images: list[torch.Tensor], cfg: ATSTrainConfig, net: ATSNetConfig,
                    seed: int = 12345
                    ) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Fixed validation batches ``(name, windows, truth)`` from held-out images."""
    g = torch.Generator().manual_seed(seed)
    vcfg = ATSTrainConfig(**{**asdict(cfg), "batch": cfg.val_per_condition,
                              "patch": cfg.val_patch})
    out = []
    for name, speed, rate in VAL_CONDITIONS:
        x, y = make_batch(images, vcfg, net, g, speed=speed, rate=rate)
        out.append((name, x, y))
    return out


#: Validation on held-out video clips (with ``--videos``; logged, not used to pick best.pt):
#: (name, readout steps per video frame, mean rate (0: the clip's own light), whether the key
#: instant is an original frame, as in the REDS-simulated recordings).
VIDEO_VAL_CONDITIONS: tuple[tuple[str, float, float, bool], ...] = (
    ("clip-spf40", 40.0, 0.0, False), ("clip-spf12", 12.0, 0.0, False),
    ("clip-dark", 40.0, 0.03, False), ("clip-spf32-key", 32.0, 0.0, True),
)


def make_video_validation(clips: FlowClips, cfg: ATSTrainConfig, net: ATSNetConfig,
                          seed: int = 54321
                          ) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Fixed validation batches ``(name, windows, truth)`` from held-out clips."""
    g = torch.Generator().manual_seed(seed)
    vcfg = ATSTrainConfig(**{**asdict(cfg), "batch": cfg.val_per_condition,
                              "patch": cfg.val_patch, "video_scale_min": 0.0,
                              "video_scale_max": 0.0})
    return [(name, *make_batch([], vcfg, net, g, rate=rate, clips=clips, spf=spf,
                               key_original=key))
            for name, spf, rate, key in VIDEO_VAL_CONDITIONS]


def val_cache_path(digest: str) -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("spkrecon")) / f"atsnet-val-{digest}.pt"


#: Options that do not change the validation data (the rest key its cache).
_NOT_DATA = ("out", "minutes", "lr", "lr_min", "total_steps", "warmup", "ema", "threads",
             "val_minutes", "checkpoint_minutes", "log_every", "workers", "reuse", "seed",
             "model", "init", "reinit", "select_lr", "loss", "mosaic_prob",
             "turn_prob", "turn_max", "precision", "video_key_original",
             "video_scale_min", "video_scale_max")
#: ... and of those, the ones that only concern the video clips (or only the photos).
_VIDEO_ONLY = ("videos", "video_share", "video_spf_min", "video_spf_max")


def cached_validation(cfg: ATSTrainConfig, net: ATSNetConfig, *, videos: bool = False
                      ) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """:func:`make_validation` (with ``videos``: :func:`make_video_validation`, empty without
    ``cfg.videos``), kept in the user cache (keyed by everything it depends on)."""
    import hashlib

    from spkrecon.models.weights import atomic_torch_save

    if videos and not cfg.videos:
        return []
    keys = {k: v for k, v in asdict(cfg).items() if k not in _NOT_DATA + _VIDEO_ONLY}
    # 2 / "video" 2: the layout, (name, x, y) (video: 4 conditions since clip-spf32-key);
    # the held-out sources they are drawn from.
    head = ["video", 2] if videos else [2]
    files = [str(p) for p in (split_clips(cfg.videos, holdout=True) if videos
                              else _image_files(cfg.images, holdout=True))]
    text = json.dumps([*head, keys, net.radius, files], sort_keys=True)
    path = val_cache_path(hashlib.sha256(text.encode()).hexdigest()[:16])
    if path.is_file():
        data = torch.load(path, map_location="cpu", weights_only=True)
        return [(n, x, y) for n, x, y in data]
    if videos:
        val = make_video_validation(FlowClips.cached(cfg.videos, holdout=True,
                                                     max_side=cfg.max_side), cfg, net)
    else:
        val = make_validation(load_images(cfg.images, cfg.max_side, holdout=True), cfg, net)
    atomic_torch_save(val, path)
    return val


@torch.inference_mode()
def validate(model: ATSNet, val: list[tuple[str, torch.Tensor, torch.Tensor]],
             alpha: float) -> dict[str, float]:
    """Mean PSNR per condition, exposure-normalised (truth scaled to a mean of 0.5)."""
    model.eval()
    scores: dict[str, float] = {}
    for name, x, y in val:
        pred = predict(model, x)
        # Normalise both by the truth's mean so dark and bright weigh alike.
        norm = (0.5 / y.mean(dim=(1, 2), keepdim=True).clamp(min=1e-4))
        scores[name] = float(psnr((pred * norm).clamp(0, 1), (y * norm).clamp(0, 1)).mean())
    scores["mean"] = sum(scores.values()) / len(scores)
    model.train()
    return scores


def _lr(step: int, cfg: ATSTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.total_steps - cfg.warmup))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


def _check_sources(cfg: ATSTrainConfig) -> None:
    """Fail here, before any worker starts, when there is nothing to train on."""
    if not _image_files(cfg.images, holdout=False):
        raise ValueError(f"no training images in {cfg.images} (the suites' held-out ones "
                         "are never trained on)")
    if cfg.videos and cfg.video_share > 0 and not split_clips(cfg.videos, holdout=False):
        raise ValueError(f"no training clips in {cfg.videos} (held-out clips only validate)")


def training_clips(cfg: ATSTrainConfig) -> FlowClips | None:
    """The training clips of ``cfg.videos`` (None without videos or a video share)."""
    if not cfg.videos or cfg.video_share <= 0:
        return None
    return FlowClips.cached(cfg.videos, holdout=False, max_side=cfg.max_side)


def _producer(queue: Any, cfg: dict[str, Any], seed: int) -> None:
    """Worker process: simulate batches into ``queue`` until the training process is gone
    (a trainer killed by a signal cannot stop its daemon workers; they would simulate on)."""
    import multiprocessing
    import queue as queues

    torch.set_num_threads(1)
    conf = ATSTrainConfig(**cfg)
    net = ATSNetConfig.from_dict(conf.model)
    images = load_images(conf.images, conf.max_side, holdout=False)
    clips = training_clips(conf)
    g = torch.Generator().manual_seed(seed)
    parent = multiprocessing.parent_process()
    while parent is None or parent.is_alive():
        batch = make_batch(images, conf, net, g, clips=clips)
        while parent is None or parent.is_alive():
            try:
                queue.put(batch, timeout=2.0)
                break
            except queues.Full:
                continue


class _Batches:
    """Simulated batches, from worker processes or in-line."""

    def __init__(self, cfg: ATSTrainConfig, net: ATSNetConfig, g: torch.Generator,
                 images: list[torch.Tensor], seed: int) -> None:
        self.cfg, self.net, self.g, self.images = cfg, net, g, images
        self.clips = training_clips(cfg) if cfg.workers == 0 else None
        self.procs: list[Any] = []
        if cfg.workers > 0:
            import torch.multiprocessing as mp

            ctx = mp.get_context("spawn")
            self.queue = ctx.Queue(maxsize=2 * cfg.workers)
            for i in range(cfg.workers):
                proc = ctx.Process(target=_producer, args=(self.queue, asdict(cfg), seed + i),
                                   daemon=True)
                proc.start()
                self.procs.append(proc)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.procs:
            while True:  # a worker that died (bad data, out of memory) must not hang us
                try:
                    x, y = self.queue.get(timeout=5.0)
                    return x.clone(), y.clone()
                except queues.Empty:
                    dead = [p for p in self.procs if not p.is_alive()]
                    if len(dead) == len(self.procs):
                        raise RuntimeError(
                            f"the simulator worker stopped (exit code {dead[0].exitcode}); "
                            "rerun with --workers 0 to see its error here") from None
        return make_batch(self.images, self.cfg, self.net, self.g, clips=self.clips)

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()


def _in_segments(key: str, widths: tuple[int, ...]) -> list[int] | None:
    """The input channels of conv ``key`` of an ATSNet of ``widths`` as the lengths of the
    feature maps concatenated there (None: the network's input, mapped by channel name)."""
    parts = key.split(".")
    if parts[0] == "inc":
        return None if parts[1] == "0" else [widths[0]]
    i, layer = int(parts[1]) if parts[0] in ("down", "up") else 0, parts[-2]
    if parts[0] == "down":
        return [widths[i]] if layer == "0" else [widths[i + 1]]
    if parts[0] == "up":  # the upsampled deeper level, then the skip
        return [widths[i + 1], widths[i]] if layer == "0" else [widths[i]]
    return [widths[0]]  # head, select


def grown_state(start: ATSNet, model: ATSNet) -> dict[str, torch.Tensor]:
    """``start``'s weights fitted to ``model``, which may read more input channels, mix more
    estimates (both by channel name) or be wider (``widths`` at least ``start``'s, as many
    levels), computing the same function as before: the old filters read new input channels
    and new filters of the layer below with zero weights; new filters keep ``model``'s fresh
    weights (so they learn); new estimates get a mixture logit 2 below the mean (a small
    share). Layers that fit none of this are left out (they keep ``model``'s fresh values)."""
    old_sd, new_sd = start.state_dict(), model.state_dict()
    ow, nw = tuple(start.config.widths), tuple(model.config.widths)
    if len(ow) != len(nw) or any(o > n for o, n in zip(ow, nw, strict=True)):
        ow = nw = ()  # another shape of network: only layers of equal shape carry over
    old_in, new_in = start.config.channel_names, model.config.channel_names
    old_est, new_est = start.config.estimate_names, model.config.estimate_names
    if not set(old_in) <= set(new_in):
        old_in = new_in = []
    in_map = [new_in.index(n) for n in old_in]
    out: dict[str, torch.Tensor] = {}
    for k, v in old_sd.items():
        if k not in new_sd or k.startswith("select."):
            continue
        target = new_sd[k]
        if target.shape == v.shape and (not ow or ow == nw) and (k != "inc.0.weight"
                                                                   or old_in == new_in):
            out[k] = v
            continue
        if not ow and not (k == "inc.0.weight" and in_map):
            continue
        w = target.clone()
        if v.dim() == 1:  # bias: the old filters keep theirs
            w[:v.shape[0]] = v
            out[k] = w
            continue
        if k == "inc.0.weight":
            cols = in_map
        else:
            cols = []
            at = 0
            for lo, ln in zip(_in_segments(k, ow) or [], _in_segments(k, nw) or [], strict=True):
                cols += range(at, at + lo)
                at += ln
        if len(cols) != v.shape[1]:
            continue
        w[:v.shape[0]] = 0.0
        w[:v.shape[0], cols] = v
        out[k] = w
    if "select.weight" in old_sd and "select.weight" in new_sd and set(old_est) <= set(new_est):
        sw, sb = old_sd["select.weight"], old_sd["select.bias"]
        if sw.shape[1] <= new_sd["select.weight"].shape[1]:
            w = torch.zeros_like(new_sd["select.weight"])
            bias = torch.full_like(new_sd["select.bias"], float(sb.mean()) - 2)
            for i, name in enumerate(old_est):
                w[new_est.index(name), :sw.shape[1]] = sw[i]
                bias[new_est.index(name)] = sb[i]
            out["select.weight"], out["select.bias"] = w, bias
    return out


def train(cfg: ATSTrainConfig) -> dict[str, Any]:
    """Train (or resume) for ``cfg.minutes``; returns the last validation scores."""
    import copy

    torch.set_num_threads(max(1, cfg.threads))
    _check_loss(cfg.loss)  # before any work, not at the first step
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {cfg.precision!r}: use fp32 or bf16")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    net_cfg = ATSNetConfig.from_dict(cfg.model) if cfg.model else ATSNetConfig()
    saved = out / "config.json"
    if (out / "last.pt").exists() and saved.is_file():
        # A resumed run keeps its network, whatever the flags of this call say about it.
        kept = ATSNetConfig.from_dict(json.loads(saved.read_text()).get("model") or {})
        if kept.to_dict() != net_cfg.to_dict():
            print(f"resuming with the network of {saved} (the options given describe "
                  "another one)", flush=True)
        net_cfg = kept
    cfg.model = net_cfg.to_dict()
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    model = ATSNet(net_cfg)
    if cfg.init and not (out / "last.pt").exists():
        from spkrecon.models.atsnet import load_atsnet

        start, _ = load_atsnet(cfg.init)
        fresh = tuple(p.strip() for p in cfg.reinit.split(",") if p.strip())
        sd = grown_state(start, model)
        sd = {k: v for k, v in sd.items() if not (fresh and k.startswith(fresh))}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if unexpected:
            raise ValueError(f"{cfg.init} has layers this network lacks: {unexpected}")
        print(f"initialised from {cfg.init} (fresh: {', '.join(missing) or 'none'})",
              flush=True)
    ema = copy.deepcopy(model).eval()
    select = [p for n, p in model.named_parameters() if n.startswith("select.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("select.")]
    groups = [{"params": rest, "scale": 1.0}]
    if select:
        groups.append({"params": select, "scale": float(cfg.select_lr)})
    opt = torch.optim.Adam(groups, lr=cfg.lr)
    step, best, elapsed = 0, -math.inf, 0.0
    g = torch.Generator().manual_seed(cfg.seed)
    last = out / "last.pt"
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        if len(state["opt"]["param_groups"]) == len(opt.param_groups):
            opt.load_state_dict(state["opt"])
        else:  # saved before the selector had its own learning rate: fresh moments
            print("optimiser state of another layout: starting its moments afresh", flush=True)
        step, best, elapsed = int(state["step"]), float(state["best"]), float(state["elapsed"])
        g.set_state(state["rng"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min, best {best:.2f})", flush=True)
    _check_sources(cfg)
    images = load_images(cfg.images, cfg.max_side, holdout=False) if cfg.workers == 0 else []
    batches = _Batches(cfg, net_cfg, g, images, seed=cfg.seed * 1000 + step)
    val = cached_validation(cfg, net_cfg)
    vval = cached_validation(cfg, net_cfg, videos=True)

    def scored(net: ATSNet) -> tuple[dict[str, float], dict[str, Any]]:
        """Validation scores, and the log record's fields (``val``, ``val_video``)."""
        sc = validate(net, val, cfg.alpha)
        rec: dict[str, Any] = {"val": {k: round(v, 3) for k, v in sc.items()}}
        if vval:
            rec["val_video"] = {k: round(v, 3) for k, v in validate(net, vval, cfg.alpha).items()}
        return sc, rec
    log = (out / "log.jsonl").open("a")
    t0 = time.time() - elapsed
    budget_end = time.time() + cfg.minutes * 60
    last_ckpt = last_val = time.time()
    samples = 0
    running = 0.0
    if cfg.init and step == 0:
        # The starting point's score, so that the run's gains read from its own log (and
        # best.pt is never worse than the weights it started from).
        scores, rec = scored(ema)
        best = scores["mean"]
        save_atsnet(ema, out / "best.pt", {"step": 0, "samples": 0, "init": cfg.init, **rec,
                                           "minutes": 0.0}, cfg.alpha)
        log.write(json.dumps({"step": 0, "minutes": 0.0, **rec, "best": True,
                              "init": cfg.init}) + "\n")
        log.flush()
        print(f"step 0 val {best:.2f} (the initial weights)", flush=True)
        last_val = time.time()

    def checkpoint() -> None:
        from spkrecon.models.weights import atomic_torch_save

        atomic_torch_save({"model": model.state_dict(), "ema": ema.state_dict(),
                           "opt": opt.state_dict(), "step": step, "best": best,
                           "elapsed": time.time() - t0, "rng": g.get_state()}, last)

    scores: dict[str, float] = {}
    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    while time.time() < budget_end and step < cfg.total_steps:
        if batch is None or step % max(1, cfg.reuse) == 0:
            batch = batches.next()
        x, y = augment(*batch, g)
        feats, s = window_features(x, net_cfg)
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg) * group.get("scale", 1.0)
        with autocast:
            pred = model(feats)[:, 0].float()
        target = y / s[:, 0]
        loss = training_loss(pred, target, cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))  # a young average follows quickly
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        step += 1
        samples += x.shape[0]
        running += float(loss.detach())
        if step % cfg.log_every == 0:
            rec = {"step": step, "minutes": round((time.time() - t0) / 60, 2),
                   "loss": round(running / cfg.log_every, 5), "lr": round(_lr(step, cfg), 7),
                   "samples": step * cfg.batch}
            running = 0.0
            log.write(json.dumps(rec) + "\n")
            log.flush()
        now = time.time()
        last_step = now >= budget_end or step >= cfg.total_steps
        if now - last_val >= cfg.val_minutes * 60 or last_step:  # and once at the end
            scores, rec = scored(ema)
            improved = scores["mean"] > best
            if improved:
                best = scores["mean"]
                save_atsnet(ema, out / "best.pt", {"step": step, "samples": step * cfg.batch,
                                                    **rec, "minutes": round((now - t0) / 60, 1)},
                             cfg.alpha)
            log.write(json.dumps({"step": step, "minutes": round((now - t0) / 60, 2), **rec,
                                  "best": improved}) + "\n")
            log.flush()
            print(f"step {step} val {scores['mean']:.2f} {'*' if improved else ''}", flush=True)
            last_val = time.time()
        if now - last_ckpt >= cfg.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
    checkpoint()
    batches.close()
    log.close()
    return scores


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train ATSNet on the CPU (resumable).")
    ap.add_argument("--images", action="append", required=True)
    ap.add_argument("--out", default="training/atsnet")
    ap.add_argument("--videos", action="append", default=[],
                    help="folder of frame-sequence folders (e.g. DAVIS clips); with --video-share")
    for name, f in ATSTrainConfig.__dataclass_fields__.items():
        if name in ("images", "out", "model", "init", "reinit", "videos"):
            continue
        ap.add_argument("--" + name.replace("_", "-"), type=type(f.default), default=f.default)
    ap.add_argument("--widths", default=None, help="U-Net widths, e.g. 16,32,64,128")
    ap.add_argument("--init", default="", help="start from these weights (grown if smaller)")
    ap.add_argument("--reinit", default="",
                    help="layer-name prefixes that start fresh despite --init, e.g. select")
    ap.add_argument("--motion", action="store_true",
                    help="add counts along the measured motion (spkrecon.models.motion)")
    ap.add_argument("--motion-windows", default=None,
                    help="with --motion: counts along the motion over these frames, "
                         "e.g. 7,15,31,63")
    ap.add_argument("--motion-noise", default=None,
                    help="with --motion: per motion stage, the multiple of the spike-count "
                         "noise that regularises the velocity, e.g. 4,0,0,16")
    ap.add_argument("--motion-isi", default=None,
                    help="with --motion: interval estimates (TFI) along the motion, averaged "
                         "over these frames, e.g. 7,15,31,63")
    ap.add_argument("--motion-stages", default=None,
                    help="with --motion: the velocity estimate's refinement stages as "
                         "level,half-baseline,half-width,iterations,window;... (default: "
                         "spkrecon.models.motion.STAGES; --motion-noise then needs one value "
                         "per stage)")
    ap.add_argument("--motion-sides", default=None,
                    help="with --motion: refinements of the velocity on each side of the key "
                         "frame apart, as level,near,far,half-width,iterations,window;...")
    ap.add_argument("--motion-side-noise", default=None,
                    help="with --motion-sides: one noise multiple per side stage, e.g. 1,1")
    ap.add_argument("--no-mixture", action="store_true",
                    help="the 15-frame count plus a correction, without the estimate mixture")
    args = vars(ap.parse_args(argv))
    widths = args.pop("widths")
    mixture = not args.pop("no_mixture")
    motion = args.pop("motion")
    motion_windows = args.pop("motion_windows")
    motion_noise = args.pop("motion_noise")
    motion_isi = args.pop("motion_isi")
    motion_stages = args.pop("motion_stages")
    motion_sides = args.pop("motion_sides")
    motion_side_noise = args.pop("motion_side_noise")
    cfg = ATSTrainConfig(**args)
    cfg.model = {"mixture": mixture, "motion": motion}
    if widths:
        cfg.model["widths"] = [int(w) for w in widths.split(",")]
    if motion_windows:
        cfg.model["motion_windows"] = [int(w) for w in motion_windows.split(",")]
    if motion_noise:
        cfg.model["motion_noise"] = [float(k) for k in motion_noise.split(",")]
    if motion_isi:
        cfg.model["motion_isi"] = [int(w) for w in motion_isi.split(",")]
    for flag, text, form in (("--motion-stages", motion_stages, "a,b,c,d,e;..."),
                             ("--motion-sides", motion_sides, "a,b,c,d,e,f;...")):
        if text:
            try:
                cfg.model[flag[2:].replace("-", "_")] = [
                    [int(v) for v in st.split(",")] for st in text.split(";") if st.strip()]
            except ValueError:
                ap.error(f"{flag} takes integers as {form}, got {text!r}")
    if motion_side_noise:
        cfg.model["motion_side_noise"] = [float(k) for k in motion_side_noise.split(",")]
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))
    from spkrecon.errors import SpkreconError

    try:
        print(json.dumps(train(cfg)))
    except (SpkreconError, ValueError) as exc:  # bad options or data: one line
        if os.environ.get("SPKRECON_DEBUG"):
            raise
        import sys

        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
