"""The project's evaluation suites: seeded speed and light curves with ground truth.

Two suites of recordings are simulated with spkrecon's own sensor model from **held-out**
images (:func:`holdout_images`: the files whose ``zlib.crc32(name) % 8 == 0``; training
excludes them), written as files, and every registered method is scored on them:

- ``speed``: camera pans and moving sprites at exactly 0, 0.15, 0.5, 1, 2 and 4 px per
  readout step, in normal light (``alpha = 0.6``, the image's grey as is); 257 frames, key
  frame index 128 (so a 255-frame window fits around it).
- ``light``: mean firing rates of 0.3, 0.1 and 0.03 spikes per pixel per frame (the image
  scaled by a gain ``k`` per recording), motion drawn uniformly in 0-0.2 px per step; 401
  frames, key frame index 200.
- ``turn``: as the speed suite at 0.15, 0.5 and 1 px per step, but every motion (camera and
  sprites) changes its velocity at the key frame by ``TURN_SHARE`` of the speed, in a seeded
  direction: a video interpolated between frames (the REDS-simulated recordings) changes
  its velocity at every original frame, and its ground truth is one of them.
- ``video``: real motion (several bodies, non-rigid, occlusions) from **held-out video
  clips** (:func:`holdout_clips`, the same rule on the clip folder's name), the light of
  video frame ``n`` at readout step ``n * spf`` for ``spf`` 40, 32, 16 and 10 readout steps
  per video frame (at 32 and 16 the key frame is an original frame), flow-interpolated in
  between (:mod:`spkrecon.simulate.flow`), normal light; 257 frames, key frame index 128;
  the views are crops of the frames scaled to cover 3x the view (0.8x for 854x480 clips).
  Each recording notes its measured speed (the mean flow at the key frame, and its 95th
  percentile, px per step).
- ``redslike``: the video suite in the REDS-simulated recordings' construction at their
  density of detail: the same held-out clips shrunk to cover 1.1x the view (about 0.29x for
  854x480 clips, as REDS's 720p frames are to 250x400), 16 and 8 readout steps per video
  frame, so the key frame is always an original frame (a sharp truth, softer interpolated
  light around it) and the motion is REDS's speed (0.13-0.16 px/step).

Even-numbered recordings of a condition are camera pans over a still photo (constant
velocity in a random direction, no zoom, rotation or wobble), odd ones a still camera with
two sprites (textured blobs cut from other held-out images) moving at the condition's speed
in random directions, inside the view at the key frame. Every recording has its own seeds,
derived from ``(seed, suite, condition, index)``: adding recordings or conditions leaves the
others unchanged.

Scores compare exposure-normalised images: ``clip(rate / alpha, 0, 1) / k`` against
``light / k`` at the key frame (``k = 1`` in the speed suite: the published tables'
``alpha`` tone mapping), PSNR (data range 1) and SSIM from :mod:`spkrecon.metrics`.

Torch and the simulator are imported inside the functions. The command is
``benchmarks/eval_suites.py``; the rule, the conditions and the results are in
``docs/results.md`` ("The project's suites").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spkrecon.errors import InputError, OutputError, ParameterError

SUITE_FORMAT = "spkrecon-suite/1"
#: Part of every suite's hash: bump it when the recordings' layout changes.
GENERATOR_VERSION = 2
#: Image files considered by :func:`holdout_images` (lower-case suffixes).
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
#: An image is held out when ``zlib.crc32(name.encode()) % HOLDOUT_MODULUS == 0``.
HOLDOUT_MODULUS = 8
SPEEDS = (0.0, 0.15, 0.5, 1.0, 2.0, 4.0)
LIGHT_RATES = (0.3, 0.1, 0.03)
LIGHT_MAX_SPEED = 0.2
#: Readout steps per video frame of the video suite's conditions (slow and fast motion). 32
#: and 16 divide the key frame's index (128), so there the truth is an original video frame
#: and the motion turns at it, as in the REDS-simulated recordings; 40 and 10 do not.
VIDEO_SPFS = (40.0, 32.0, 16.0, 10.0)
#: Readout steps per video frame of the redslike suite (both divide the key frame's index).
REDSLIKE_SPFS = (16.0, 8.0)
#: Speeds (px/step) of the detail suite: the scenes of REDS-like recordings move slowly.
DETAIL_SPEEDS = (0.0, 0.15, 0.5, 1.0)
#: The detail suite's images are shrunk by this factor (so that this many by this many of
#: them make one background).
DETAIL_SHRINK = 2
#: Speeds (px/step before the key frame) of the turn suite.
TURN_SPEEDS = (0.15, 0.5, 1.0)
#: The turn suite's velocity change at the key frame, as a share of the speed (the
#: REDS-simulated samples measure 0.2-0.5 at about 0.13 px/step).
TURN_SHARE = 0.5
SUITE_NAMES = ("speed", "light", "video", "detail", "turn", "redslike")
_SUITE_CODES = {"speed": 1, "light": 2, "video": 3, "detail": 4, "turn": 5, "redslike": 6}
#: The suites built from video clips (the others from images).
VIDEO_SUITES = ("video", "redslike")
NOISE_CHOICES = ("off", "realistic")


# -- held-out images -------------------------------------------------------------------
def is_holdout(name: str) -> bool:
    """Whether an image file ``name`` (without folder) is held out from training."""
    return zlib.crc32(name.encode()) % HOLDOUT_MODULUS == 0


def holdout_images(folder: str | Path) -> list[Path]:
    """The held-out image files of ``folder`` (jpg/jpeg/png/bmp/tif), sorted by name."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d} is not a folder of images")
    return sorted((p for p in d.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTS and is_holdout(p.name)),
                  key=lambda p: p.name)


def holdout_clips(folder: str | Path) -> list[Path]:
    """The held-out clips of ``folder`` (sub-folders of numbered frames whose name
    :func:`is_holdout` picks), sorted by name."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d} is not a folder of video clips")
    return sorted((c for c in d.iterdir() if c.is_dir() and is_holdout(c.name) and any(
        p.suffix.lower() in IMAGE_EXTS for p in c.iterdir())), key=lambda c: c.name)


# -- specification ---------------------------------------------------------------------
@dataclass(frozen=True)
class SuiteSpec:
    """Everything that determines a suite's recordings (with the images and the simulator)."""

    name: str
    conditions: tuple[float, ...]
    per_condition: int = 6
    height: int = 128
    width: int = 160
    seed: int = 0
    steps: int = 201
    key: int = 100
    alpha: float = 0.6
    substeps: int = 4
    resample: str = "bicubic"
    noise: str = "off"
    #: Room around the view (fraction of it) the photo is scaled to cover.
    margin: float = 1.5
    sprites: int = 2
    #: Light suite: speeds are drawn uniformly in [0, max_speed] px/step.
    max_speed: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in SUITE_NAMES:
            raise ParameterError(f"unknown suite '{self.name}'",
                                 f"use one of {', '.join(SUITE_NAMES)}")
        if self.per_condition < 1:
            raise ParameterError(f"per-condition must be at least 1, got {self.per_condition}")
        if not 0 <= self.key < self.steps:
            raise ParameterError(f"key frame {self.key} is outside 0..{self.steps - 1}")
        if self.noise not in NOISE_CHOICES:
            raise ParameterError(f"unknown noise '{self.noise}'",
                                 f"use one of {', '.join(NOISE_CHOICES)}")
        if (self.height * self.width) % 8:
            raise ParameterError(f"{self.height}x{self.width} is not a whole number of bytes "
                                 "per frame (pixels must be a multiple of 8)")

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["conditions"] = list(self.conditions)
        return d

    def condition_label(self, value: float) -> str:
        return f"{value:g}"


def speed_suite(per_condition: int = 6, size: tuple[int, int] = (128, 160), seed: int = 0,
                noise: str = "off", speeds: Sequence[float] = SPEEDS) -> SuiteSpec:
    """The speed curve: pans and sprites at each of ``speeds`` px/step, normal light."""
    return SuiteSpec("speed", tuple(float(s) for s in speeds), per_condition, size[0], size[1],
                     seed, steps=257, key=128, noise=noise)


def light_suite(per_condition: int = 6, size: tuple[int, int] = (128, 160), seed: int = 0,
                noise: str = "off", rates: Sequence[float] = LIGHT_RATES) -> SuiteSpec:
    """The light curve: mean rates ``rates`` spikes/frame, speeds uniform in 0-0.2 px/step."""
    return SuiteSpec("light", tuple(float(r) for r in rates), per_condition, size[0], size[1],
                     seed, steps=401, key=200, noise=noise, max_speed=LIGHT_MAX_SPEED)


def video_suite(per_condition: int = 6, size: tuple[int, int] = (128, 160), seed: int = 0,
                noise: str = "off", spfs: Sequence[float] = VIDEO_SPFS) -> SuiteSpec:
    """Real motion: held-out clips at ``spfs`` readout steps per video frame, normal light."""
    # margin 3: 128x160 views of 854x480 clips scaled by 0.8 (so motion is the clips' own,
    # nearly), at a seeded place in a 384x480 cover.
    return SuiteSpec("video", tuple(float(v) for v in spfs), per_condition, size[0], size[1],
                     seed, steps=257, key=128, noise=noise, margin=3.0, sprites=0)


def detail_suite(per_condition: int = 6, size: tuple[int, int] = (128, 160), seed: int = 0,
                 noise: str = "off", speeds: Sequence[float] = DETAIL_SPEEDS) -> SuiteSpec:
    """Dense detail: as the speed suite, but every background is a mosaic of held-out
    images shrunk ``DETAIL_SHRINK`` times (2x2 of them; sprites cut from shrunk images), so a
    view holds about twice the fine detail per pixel (REDS-simulated frames, 720p scaled to
    250x400, hold 1.5-2x the speed suite's)."""
    return SuiteSpec("detail", tuple(float(v) for v in speeds), per_condition, size[0],
                     size[1], seed, steps=257, key=128, noise=noise)


def redslike_suite(per_condition: int = 6, size: tuple[int, int] = (128, 160), seed: int = 0,
                   noise: str = "off", spfs: Sequence[float] = REDSLIKE_SPFS) -> SuiteSpec:
    """The REDS construction on held-out clips: the video suite's clips shrunk to cover 1.1x
    the view (REDS's density of detail), the key frame an original frame at ``spfs``."""
    return SuiteSpec("redslike", tuple(float(v) for v in spfs), per_condition, size[0],
                     size[1], seed, steps=257, key=128, noise=noise, margin=1.1, sprites=0)


def turn_suite(per_condition: int = 6, size: tuple[int, int] = (128, 160), seed: int = 0,
               noise: str = "off", speeds: Sequence[float] = TURN_SPEEDS) -> SuiteSpec:
    """Motion that turns at the key frame: as the speed suite at ``speeds``, each velocity
    changing there by ``TURN_SHARE`` of the speed in a seeded direction."""
    return SuiteSpec("turn", tuple(float(v) for v in speeds), per_condition, size[0], size[1],
                     seed, steps=257, key=128, noise=noise)


def _turn(v: Any, speed: float, g: Any) -> Any:
    """Velocity changes ``(..., 4)`` for velocities ``v (..., 4)``: ``TURN_SHARE * speed`` in
    a seeded direction each (x and y only)."""
    import torch

    from spkrecon.simulate.motion import planar

    ang = torch.rand(v.shape[:-1], generator=g, dtype=torch.float64) * 2 * math.pi
    return planar(TURN_SHARE * speed, ang, v)


def _mosaic(paths: Sequence[Path], height: int, width: int, k: int, g: Any) -> Any:
    """``(height, width)`` background of ``k`` x ``k`` tiles, each image scaled to cover one
    (antialiased), rolled by a seeded offset so the seams cross somewhere in the view."""
    import torch

    from spkrecon.simulate.scenes import resize_cover

    th, tw = height // k, width // k
    tiles = [resize_cover(_load_image(paths[i % len(paths)]), th, tw) for i in range(k * k)]
    out = torch.cat([torch.cat(tiles[i:i + k], 1) for i in range(0, k * k, k)], 0)
    dy = int(torch.randint(th, (), generator=g))
    dx = int(torch.randint(tw, (), generator=g))
    return out.roll((dy - th // 2, dx - tw // 2), (0, 1))


def recording_seeds(spec: SuiteSpec, condition: float, index: int) -> tuple[int, int]:
    """``(scene_seed, sensor_seed)`` of recording ``index`` of a condition: independent of
    every other recording, so adding recordings or conditions changes none of the others."""
    entropy = [int(spec.seed), _SUITE_CODES[spec.name], int(round(condition * 1e6)), int(index)]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint64)
    return int(state[0]) & (2**63 - 1), int(state[1]) & (2**63 - 1)


# -- scenes ----------------------------------------------------------------------------
@dataclass
class RecordingPlan:
    """One recording's scene and what describes it (before simulation)."""

    name: str
    condition: float
    index: int
    kind: str  # "pan" or "sprites"
    speed: float
    scene: Any  # a spkrecon.simulate Scene
    gain: float
    info: dict[str, Any] = field(default_factory=dict)


def _gain_scene(scene: Any, k: float) -> Any:
    """``clip(k * light, 0, 1)`` of ``scene``."""
    from spkrecon.simulate.scenes import GainScene

    return GainScene(scene, k)


def light_gain(image: np.ndarray, target: float, alpha: float) -> float:
    """The gain ``k`` with ``alpha * mean(clip(k * image, 0, 1)) == target`` (bisection)."""
    x = np.asarray(image, np.float64)
    mean = float(x.mean())
    if mean <= 0:
        raise InputError("a black image cannot be lit to a firing rate")
    if target >= alpha * float((x > 0).mean()):
        raise ParameterError(f"a mean rate of {target} is out of reach of this image")
    lo, hi = 0.0, target / (alpha * mean)
    while alpha * np.clip(hi * x, 0, 1).mean() < target:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if alpha * np.clip(mid * x, 0, 1).mean() < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _load_image(path: Path) -> Any:
    import torch

    from spkrecon.simulate.scenes import load_grey

    return torch.from_numpy(load_grey(path))


def plan_recording(spec: SuiteSpec, condition: float, index: int, images: Sequence[Path]
                   ) -> tuple[RecordingPlan, int]:
    """The scene of recording ``index`` of ``condition``, and its sensor seed."""
    import torch

    from spkrecon.simulate.core import make_generator
    from spkrecon.simulate.motion import (
        MotionConfig,
        MotionScene,
        Trajectory,
        prepare_background,
        random_sprites,
    )
    from spkrecon.simulate.scenes import StaticScene, resize_cover

    if spec.name in VIDEO_SUITES:
        return _plan_clip(spec, condition, index, images)
    if not images:
        raise InputError("no held-out images to build the suites from")
    scene_seed, sensor_seed = recording_seeds(spec, condition, index)
    g = make_generator(scene_seed)
    order = torch.randperm(len(images), generator=g).tolist()
    bg_path = images[order[0]]
    kind = "pan" if index % 2 == 0 else "sprites"
    if spec.name in ("speed", "detail", "turn"):
        speed = float(condition)
    else:
        speed = float(torch.rand((), generator=g, dtype=torch.float64)) * spec.max_speed
    h, w = spec.size
    key = float(spec.key)
    shrink = DETAIL_SHRINK if spec.name == "detail" else 1
    if spec.name == "detail":
        tiles = [images[i] for i in order[:shrink * shrink]]
        ch, cw = (math.ceil(n * (1 + spec.margin) / shrink) * shrink for n in spec.size)
        bg = _mosaic(tiles, ch, cw, shrink, g)
    else:
        bg = prepare_background(_load_image(bg_path), spec.size, spec.margin)
    bh, bw = bg.shape[-2:]
    # The view at the key step is the centred whole-pixel crop (unresampled ground truth).
    x0, y0 = (bw - w) // 2, (bh - h) // 2
    cx, cy = x0 + (w - 1) / 2, y0 + (h - 1) / 2
    info: dict[str, Any] = {"image": bg_path.name, "background": [int(bh), int(bw)]}
    if spec.name == "detail":
        info["mosaic"] = [p.name for p in tiles]
    p0 = torch.tensor([[cx, cy, 0.0, 0.0]], dtype=torch.float64)
    v = torch.zeros_like(p0)
    sprites = None
    if kind == "pan":
        ang = float(torch.rand((), generator=g, dtype=torch.float64)) * 2 * math.pi
        v[0, 0], v[0, 1] = speed * math.cos(ang), speed * math.sin(ang)
        info["direction_deg"] = round(math.degrees(ang), 3)
    else:
        first = shrink * shrink if spec.name == "detail" else 1
        src_paths = [images[i] for i in order[first:first + spec.sprites]] or [bg_path]
        side = 384 // shrink
        sources = torch.stack([resize_cover(_load_image(p), side, side) for p in src_paths])
        cfg = MotionConfig(objects=(spec.sprites, spec.sprites), wobble=0.0,
                           object_max_rotation_rate=0.0, object_max_zoom_rate=0.0,
                           resample=spec.resample)
        drawn = random_sprites(1, spec.size, spec.steps, cfg, sources, g, key_step=key)
        assert drawn is not None
        angs = torch.rand((1, spec.sprites), generator=g, dtype=torch.float64) * 2 * math.pi
        sv = torch.zeros_like(drawn.path.p0)
        sv[..., 0], sv[..., 1] = speed * torch.cos(angs), speed * torch.sin(angs)
        sp0 = drawn.path.p0.clone()
        sp0[..., 2] = 0.0  # no zoom; the drawn angle is a still orientation
        drawn.path = Trajectory.linear(sp0, sv, origin=key)
        if spec.name == "turn":
            drawn.path.turn = _turn(sv, speed, g)
            info["turn"] = [[round(float(x), 4), round(float(y), 4)]
                            for x, y in drawn.path.turn[0, :, :2]]
        sprites = drawn
        info["sprite_images"] = [p.name for p in src_paths]
        info["direction_deg"] = [round(math.degrees(float(a)), 3) for a in angs[0]]
        info["sprite_centres_at_key"] = [[round(float(x), 3), round(float(y), 3)]
                                         for x, y in sp0[0, :, :2]]
    camera = Trajectory.linear(p0, v, origin=key)
    if spec.name == "turn" and kind == "pan":
        camera.turn = _turn(v, speed, g)
        info["turn"] = [round(float(x), 4) for x in camera.turn[0, :2]]
    scene: Any = MotionScene(bg[None], spec.size, camera, sprites, spec.steps,
                             padding="reflection", resample=spec.resample)
    if speed == 0:
        # Nothing moves: every step's light is the key view (rendered once, not 4 x steps).
        scene = StaticScene(scene.light_at(torch.tensor([key], dtype=torch.float64))[:, 0])
        scene.num_steps = spec.steps
    gain = 1.0
    if spec.name == "light":
        # The gain is fitted to the light at 9 instants across the recording (the view
        # drifts), so that the whole recording's mean rate hits the target.
        times = torch.linspace(0, spec.steps - 1, 9, dtype=torch.float64)
        seen = scene.light_at(times)[0].numpy()
        gain = light_gain(seen, float(condition), spec.alpha)
        scene = _gain_scene(scene, gain)
    stem = Path(bg_path.name).stem
    name = f"{index:02d}_{kind}_{stem}"
    return RecordingPlan(name, float(condition), index, kind, speed, scene, gain, info), \
        sensor_seed


def _plan_clip(spec: SuiteSpec, condition: float, index: int, clips: Sequence[Path]
               ) -> tuple[RecordingPlan, int]:
    """Recording ``index`` of the video suite: clip ``index`` (cycling through ``clips``
    from a seeded offset), a seeded start frame, direction of play and crop."""
    import torch

    from spkrecon.simulate.core import make_generator
    from spkrecon.simulate.scenes import FrameScene, list_frames, resize_cover

    if not clips:
        raise InputError("no held-out video clips to build the video suite from")
    scene_seed, sensor_seed = recording_seeds(spec, condition, index)
    g = make_generator(scene_seed)
    offset = int(torch.randint(len(clips), (), generator=g))
    clip = clips[(index + offset) % len(clips)]
    files = list_frames(clip)
    spf = float(condition)
    need = int(math.ceil((spec.steps - 1) / spf - 1e-9)) + 1
    if len(files) < need:
        raise InputError(f"clip {clip.name} has {len(files)} frames; {spf:g} steps per frame "
                         f"over {spec.steps} steps needs {need}")
    start = int(torch.randint(len(files) - need + 1, (), generator=g))
    backwards = bool(torch.rand((), generator=g) < 0.5)
    h, w = spec.size
    ch, cw = math.ceil(h * spec.margin), math.ceil(w * spec.margin)
    y = int(torch.randint(ch - h + 1, (), generator=g))
    x = int(torch.randint(cw - w + 1, (), generator=g))
    chosen = files[start:start + need]
    if backwards:
        chosen = chosen[::-1]
    frames = torch.stack([resize_cover(_load_image(f), ch, cw)[y:y + h, x:x + w]
                          for f in chosen])
    scene = FrameScene(frames[None], spf, interp="flow")
    # The measured speed: the mean flow of the frame pair around the key frame, per step.
    pair = scene._pair(min(int(spec.key // spf), need - 2))
    flow = pair.flow01.norm(dim=1) / spf
    speed = float(flow.mean())
    info: dict[str, Any] = {"clip": clip.name, "frames": [chosen[0].name, chosen[-1].name],
                            "speed_p95": round(float(flow.flatten().quantile(0.95)), 4),
                            "backwards": backwards, "crop": [y, x], "cover": [ch, cw]}
    name = f"{index:02d}_clip_{clip.name}"
    return RecordingPlan(name, spf, index, "clip", speed, scene, 1.0, info), sensor_seed


def source_files(spec: SuiteSpec, sources: Sequence[Path]) -> list[Path]:
    """The files a suite is built from: the images, or (video suites) every clip's frames."""
    if spec.name not in VIDEO_SUITES:
        return list(sources)
    from spkrecon.simulate.scenes import list_frames

    return [f for clip in sources for f in list_frames(clip)]


# -- building --------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    from spkrecon.simulate.runner import file_digest

    return file_digest([path])


def simulator_fingerprint(images: Sequence[Path]) -> str:
    """SHA-256 of three tiny recordings built the suites' way (a pan at 4 px/step past the
    photo's edge, sprites, a dark still): it changes when the simulator's output does, and
    not when only its text does (a comment, a docstring)."""
    import tempfile

    import torch

    canary = [(SuiteSpec("speed", (4.0,), 1, 16, 24, steps=24, key=12, margin=0.1), 4.0, 0),
              (SuiteSpec("speed", (1.0,), 2, 16, 24, steps=24, key=12), 1.0, 1),
              (SuiteSpec("light", (0.03,), 1, 16, 24, steps=24, key=12, max_speed=0.0),
               0.03, 0)]
    h = hashlib.sha256(f"generator {GENERATOR_VERSION}".encode())
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for spec, cond, j in canary:
            plan, sensor_seed = plan_recording(spec, cond, j, images[:3])
            r = simulate_recording(spec, plan, sensor_seed, Path(tmp))
            for key in ("dat", "gt"):
                h.update((Path(tmp) / r[key]).read_bytes())
    return h.hexdigest()


def clip_fingerprint(clips: Sequence[Path]) -> str:
    """SHA-256 of a tiny recording built the video suite's way (flow interpolation between
    frames): it changes when that part of the simulator's output does."""
    import tempfile

    import torch

    spec = SuiteSpec("video", (8.0,), 1, 16, 24, steps=24, key=12)
    h = hashlib.sha256(f"generator {GENERATOR_VERSION}".encode())
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        plan, sensor_seed = plan_recording(spec, 8.0, 0, clips[:1])
        r = simulate_recording(spec, plan, sensor_seed, Path(tmp))
        for key in ("dat", "gt"):
            h.update((Path(tmp) / r[key]).read_bytes())
    return h.hexdigest()


def suite_hash(spec: SuiteSpec, images: Sequence[Path]) -> tuple[str, dict[str, Any]]:
    """The hash that decides reuse, and what it is computed over (``images``: the clips,
    for the video suite)."""
    import torch

    files = source_files(spec, images)
    what: dict[str, Any] = {
        "format": SUITE_FORMAT, "spec": spec.to_dict(),
        "images": [[f"{p.parent.name}/{p.name}" if spec.name in VIDEO_SUITES else p.name,
                    _sha256(p)] for p in files],
        "simulator": simulator_fingerprint(files), "torch": torch.__version__}
    if spec.name in VIDEO_SUITES:
        what["video_simulator"] = clip_fingerprint(images)
    text = json.dumps(what, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest(), what


def _noise(spec: SuiteSpec) -> Any:
    from spkrecon.simulate.noise import noise_from_name

    return noise_from_name(spec.noise)


def write_png16(path: Path, light: np.ndarray) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, (np.clip(light, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16),
                extension=".png")


def simulate_recording(spec: SuiteSpec, plan: RecordingPlan, sensor_seed: int, folder: Path
                       ) -> dict[str, Any]:
    """Simulate ``plan`` into ``folder/<condition>/<name>.dat`` + ``_gt.npy`` + ``_gt.png``."""
    from spkrecon.simulate.core import make_generator
    from spkrecon.simulate.runner import stream_to_dat

    cond = spec.condition_label(plan.condition)
    sub = folder / cond
    sub.mkdir(parents=True, exist_ok=True)
    dat = sub / f"{plan.name}.dat"
    stats = stream_to_dat(plan.scene, spec.steps, dat, alpha=spec.alpha, noise=_noise(spec),
                          generator=make_generator(sensor_seed), gt_steps=[spec.key],
                          chunk=16, substeps=spec.substeps)
    gt = stats.gt[spec.key].astype(np.float32)
    np.save(sub / f"{plan.name}_gt.npy", gt)
    write_png16(sub / f"{plan.name}_gt.png", gt)
    rel = f"{cond}/{plan.name}"
    return {"name": plan.name, "condition": plan.condition, "label": cond, "index": plan.index,
            "kind": plan.kind, "speed": round(plan.speed, 6), "gain": plan.gain,
            "mean_rate": round(stats.mean_rate, 6), "sensor_seed": sensor_seed,
            "dat": f"{rel}.dat", "gt": f"{rel}_gt.npy", "gt_png": f"{rel}_gt.png",
            **plan.info}


def _valid_existing(folder: Path, digest: str) -> dict[str, Any] | None:
    meta_path = folder / "suite.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("hash") != digest:
        return None
    files = meta.get("files", {})
    for rel, sha in files.items():
        p = folder / rel
        if not p.is_file() or _sha256(p) != sha:
            return None
    return meta


def build_suite(spec: SuiteSpec, images: Sequence[Path], out: str | Path,
                advance: Callable[[int], None] | None = None,
                on_start: Callable[[int, bool], None] | None = None) -> tuple[Path, dict]:
    """Build suite ``spec`` from held-out ``images`` (the video suite: held-out clips) into
    ``out/<name>/``, or reuse it.

    The folder is reused when its ``suite.json`` has the same hash (spec, images' bytes,
    :func:`simulator_fingerprint`, torch version) and every file still has its recorded
    SHA-256; otherwise it is rebuilt in a temporary folder that replaces it at the end. A
    folder without ``suite.json`` that is not empty is never touched. Returns
    ``(folder, suite.json dict)``. ``on_start(recordings, reused)`` is called first,
    ``advance(1)`` after each recording.
    """
    folder = Path(out) / spec.name
    digest, what = suite_hash(spec, images)
    n = len(spec.conditions) * spec.per_condition
    meta = _valid_existing(folder, digest) if folder.is_dir() else None
    if meta is not None:
        if on_start is not None:
            on_start(n, True)
        if advance is not None:
            advance(n)
        return folder, meta
    if folder.exists() and (not folder.is_dir() or (
            any(folder.iterdir()) and not (folder / "suite.json").is_file())):
        raise OutputError(f"{folder} exists and is not a suite folder",
                          "choose another --out folder")
    if on_start is not None:
        on_start(n, False)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _fill(spec, images, tmp, digest, what, advance)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():  # a suite folder (checked above): replaced whole
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    return folder, json.loads((folder / "suite.json").read_text())


def _fill(spec: SuiteSpec, images: Sequence[Path], tmp: Path, digest: str,
          what: dict[str, Any], advance: Callable[[int], None] | None) -> None:
    import torch

    t0 = time.perf_counter()
    recordings: list[dict[str, Any]] = []
    with torch.inference_mode():
        for cond in spec.conditions:
            for j in range(spec.per_condition):
                plan, sensor_seed = plan_recording(spec, cond, j, images)
                recordings.append(simulate_recording(spec, plan, sensor_seed, tmp))
                if advance is not None:
                    advance(1)
        files = {}
        for r in recordings:
            for key in ("dat", "gt", "gt_png"):
                files[r[key]] = _sha256(tmp / r[key])
        meta = {"format": SUITE_FORMAT, "hash": digest, "spec": spec.to_dict(),
                "noise": _noise(spec).to_dict() if _noise(spec) is not None else None,
                "images": [n for n, _ in what["images"]], "simulator": what["simulator"],
                "torch": what["torch"], "seconds": round(time.perf_counter() - t0, 2),
                "recordings": recordings, "files": files}
        (tmp / "suite.json").write_text(json.dumps(meta, indent=1) + "\n")


# -- scoring ---------------------------------------------------------------------------
@dataclass
class MethodSpec:
    """A method to score: a registered name and parameters (``tfp:window=201``)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        return self.name + "".join(f":{k}={v}" for k, v in self.params.items())


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_methods(text: str) -> list[MethodSpec]:
    """``all`` (every registered method), or ``a,b:key=value:key2=value``; ``all`` may be
    combined with more entries (``all,tfp:window=201``)."""
    from spkrecon.methods import available, get_class

    out: list[MethodSpec] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item.lower() == "all":
            out.extend(MethodSpec(m) for m in available())
            continue
        name, *pairs = item.split(":")
        params: dict[str, Any] = {}
        for pair in pairs:
            if "=" not in pair:
                raise ParameterError(f"'{pair}' in '{item}' is not KEY=VALUE")
            k, v = pair.split("=", 1)
            params[k.strip()] = _value(v.strip())
        get_class(name)  # unknown names fail here, before any work
        out.append(MethodSpec(name.lower(), params))
    if not out:
        raise ParameterError("no methods given")
    seen: list[MethodSpec] = []
    for m in out:
        if m.label not in [s.label for s in seen]:
            seen.append(m)
    return seen


def normalised(rate: np.ndarray, alpha: float, gain: float) -> np.ndarray:
    """The exposure-normalised image of a rate estimate: ``clip(rate / alpha, 0, 1) / k``."""
    return (np.clip(np.asarray(rate, np.float64) / alpha, 0.0, 1.0) / gain).astype(np.float64)


def score_suites(suites: Sequence[tuple[Path, dict[str, Any]]], methods: Sequence[MethodSpec],
                 advance: Callable[[int], None] | None = None,
                 on_method: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score ``methods`` on every recording of ``suites`` (``(folder, suite.json)`` pairs).

    Returns ``{"scores": [...], "methods": {label: {"seconds", "skipped"?}}}``: one score
    per recording and method that ran. A method that cannot run (missing weights, device or
    dependency: ``spkrecon.compare.SKIPPABLE``) is skipped with its reason.
    """
    import torch

    from spkrecon.compare import SKIPPABLE
    from spkrecon.io import open_recording
    from spkrecon.methods import create
    from spkrecon.metrics import DATA_RANGE, psnr, ssim

    total = sum(len(meta["recordings"]) for _, meta in suites)
    scores: list[dict[str, Any]] = []
    info: dict[str, dict[str, Any]] = {}
    truths: dict[str, np.ndarray] = {}
    for m in methods:
        if on_method is not None:
            on_method(m.label)
        seconds = 0.0
        mine: list[dict[str, Any]] = []
        try:
            rec = create(m.name, **m.params)
            alpha = float(getattr(rec, "alpha", 0.6))
            not_run: dict[str, str] = {}
            for folder, meta in suites:
                spec = meta["spec"]
                key = int(spec["key"])
                if rec.past > key or rec.future > spec["steps"] - 1 - key:
                    not_run[spec["name"]] = (f"its window ({rec.past} + 1 + {rec.future} "
                                             f"frames) does not fit around the key frame")
                    if advance is not None:
                        advance(len(meta["recordings"]))
                    continue
                for r in meta["recordings"]:
                    src = open_recording(folder / r["dat"], spec["height"], spec["width"])
                    try:
                        t0 = time.perf_counter()
                        with torch.inference_mode():
                            out = list(rec.stream(src, [key]))
                        dt = time.perf_counter() - t0
                    finally:
                        src.close()
                    seconds += dt
                    gt_key = str(folder / r["gt"])
                    if gt_key not in truths:
                        truths[gt_key] = np.load(folder / r["gt"]).astype(np.float64)
                    gain = float(r["gain"])
                    truth = truths[gt_key] / gain
                    image = normalised(out[0][1], alpha, gain)
                    mine.append({"suite": spec["name"], "condition": r["condition"],
                                 "label": r["label"], "recording": r["name"], "kind": r["kind"],
                                 "speed": r["speed"], "gain": gain, "mean_rate": r["mean_rate"],
                                 "method": m.label,
                                 "psnr": float(psnr(image, truth, data_range=DATA_RANGE)),
                                 "ssim": float(ssim(image, truth, data_range=DATA_RANGE)),
                                 "seconds": round(dt, 4)})
                    if advance is not None:
                        advance(1)
        except SKIPPABLE as exc:
            info[m.label] = {"skipped": str(exc) or type(exc).__name__}
            if advance is not None:
                advance(total - len(mine))
            continue
        scores.extend(mine)
        info[m.label] = {"seconds": round(seconds, 2), "params": m.params,
                         "seconds_per_recording": round(seconds / max(len(mine), 1), 4)}
        if not_run:
            info[m.label]["not_run"] = not_run
    return {"scores": scores, "methods": info}


# -- summaries -------------------------------------------------------------------------
def summarise(scores: Iterable[dict[str, Any]]) -> dict[tuple[str, float], dict[str, dict]]:
    """``{(suite, condition): {method: {"psnr", "ssim", "n", "mean_rate", "speed"}}}``
    (means over the condition's recordings; PSNR averaged in dB)."""
    groups: dict[tuple[str, float], dict[str, list[dict[str, Any]]]] = {}
    for s in scores:
        groups.setdefault((s["suite"], s["condition"]), {}).setdefault(s["method"], []).append(s)
    out: dict[tuple[str, float], dict[str, dict]] = {}
    for k, per in groups.items():
        out[k] = {m: {"psnr": float(np.mean([x["psnr"] for x in xs])),
                      "ssim": float(np.mean([x["ssim"] for x in xs])),
                      "n": len(xs),
                      "mean_rate": float(np.mean([x["mean_rate"] for x in xs])),
                      "speed": float(np.mean([x["speed"] for x in xs]))}
                  for m, xs in per.items()}
    return out


_CONDITION_HEADER = {"speed": "speed (px/step)", "light": "light (spikes/frame)",
                     "video": "steps per video frame", "detail": "speed (px/step)",
                     "turn": "speed before the key frame (px/step)",
                     "redslike": "steps per video frame"}


def markdown_tables(result: dict[str, Any], suites: Sequence[str] = SUITE_NAMES) -> str:
    """Per suite and metric, a table: one row per condition (with its recording count),
    one column per method, the best of each row in bold; then the methods' times."""
    summary = summarise(result["scores"])
    ran = [m for m, i in result["methods"].items() if "skipped" not in i]
    parts: list[str] = []
    for suite in suites:
        keys = sorted(k for k in summary if k[0] == suite)
        if suite == "light":
            keys = keys[::-1]
        if not keys:
            continue
        for metric, label, fmt in (("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.4f}")):
            header = [_CONDITION_HEADER[suite], "n", *ran]
            lines = [f"**{suite} suite, {label}**", "",
                     "| " + " | ".join(header) + " |",
                     "|---|---:|" + "---:|" * len(ran)]
            for k in keys:
                per = summary[k]
                vals = [per[m][metric] if m in per else math.nan for m in ran]
                finite = [v for v in vals if math.isfinite(v)]
                best = max(finite) if finite else None
                cells = [("**" + fmt.format(v) + "**") if best is not None and v == best
                         else ("-" if math.isnan(v) else fmt.format(v)) for v in vals]
                n = max((per[m]["n"] for m in ran if m in per), default=0)
                cond = f"{k[1]:g}"
                if suite == "light":
                    rates = [per[m]["mean_rate"] for m in ran if m in per]
                    cond += f" (measured {np.mean(rates):.3f})" if rates else ""
                elif suite in VIDEO_SUITES:
                    speeds = [per[m]["speed"] for m in ran if m in per]
                    cond += f" ({np.mean(speeds):.2f} px/step)" if speeds else ""
                lines.append(f"| {cond} | {n} | " + " | ".join(cells) + " |")
            parts.append("\n".join(lines))
    timing = ["| method | seconds per recording | total seconds |", "|---|---:|---:|"]
    for m, i in result["methods"].items():
        if "skipped" in i:
            why = i["skipped"].split(" (")[0].split("; ")[0]
            timing.append(f"| {m} | skipped: {why} | |")
        else:
            timing.append(f"| {m} | {i['seconds_per_recording']:.3f} | {i['seconds']:.1f} |")
    parts.append("\n".join(timing))
    return "\n\n".join(parts) + "\n"


def plot_curves(result: dict[str, Any], folder: str | Path) -> list[Path]:
    """``suite_speed.png`` (PSNR against speed, symlog axis) and ``suite_light.png`` (PSNR
    against the measured mean firing rate, log axis) in ``folder``; one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(result["scores"])
    ran = [m for m, i in result["methods"].items() if "skipped" not in i]
    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    markers = "osD^v<>ph*X"
    for suite, fname in (("speed", "suite_speed.png"), ("light", "suite_light.png")):
        keys = sorted(k for k in summary if k[0] == suite)
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        for i, m in enumerate(ran):
            pts = [(k[1] if suite == "speed" else summary[k][m]["mean_rate"], summary[k][m]["psnr"])
                   for k in keys if m in summary[k]]
            if not pts:
                continue
            xs, ys = zip(*sorted(pts), strict=True)
            variant = ":" in m
            ax.plot(xs, ys, marker=markers[i % len(markers)], label=m,
                    linewidth=1.0 if variant else 1.8, linestyle="--" if variant else "-",
                    markersize=4 if variant else 5)
        if suite == "speed":
            ax.set_xscale("symlog", linthresh=0.15, linscale=0.6)
            ticks = [k[1] for k in keys]
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.set_xlabel("speed (pixels per readout step)")
            ax.set_title("PSNR against speed (normal light)")
        else:
            ax.set_xscale("log")
            ticks = sorted({k[1] for k in keys})
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("mean firing rate (spikes per pixel per frame)")
            ax.set_title("PSNR against light (0-0.2 px/step)")
        ax.set_ylabel("mean PSNR (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
