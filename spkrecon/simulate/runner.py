"""Simulate to files: a ``.dat``, ground-truth PNGs (and optionally every step as ``.npy``)
and a JSON sidecar holding every parameter and the seed, so a run repeats bit for bit.

Spikes are generated and written ``chunk`` readout steps at a time: memory stays bounded
whatever the length. Outputs are written under temporary names and renamed at the end.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkrecon.errors import InputError, OutputError, ParameterError
from spkrecon.io import encode, frame_bytes
from spkrecon.simulate.core import SpikeCamera, iter_simulation, make_generator
from spkrecon.simulate.motion import MotionConfig, prepare_background, random_motion_scene
from spkrecon.simulate.noise import NoiseModel
from spkrecon.simulate.scenes import (
    IMAGE_EXTS,
    INTERPOLATIONS,
    Scene,
    StaticScene,
    VideoScene,
    count_video_frames,
    input_kind,
    iter_frame_files,
    iter_video_frames,
    list_frames,
    load_grey,
    resize_cover,
)

SIDECAR_FORMAT = "spkrecon-simulation/1"
#: Default length of a simulation of a still image (the Spike40 / REDS test length).
DEFAULT_STILL_STEPS = 301


def check_scene_options(steps_per_frame: float, interp: str, alpha: float) -> None:
    """Validate the options shared by ``simulate`` and ``dataset make``."""
    if not steps_per_frame > 0:
        raise ParameterError(f"steps per frame must be positive, got {steps_per_frame}")
    if interp not in INTERPOLATIONS:
        raise ParameterError(f"unknown interpolation '{interp}'",
                             f"use one of {', '.join(INTERPOLATIONS)}")
    if not 0 < alpha <= 1:
        raise ParameterError(f"alpha must be in (0, 1], got {alpha}")


@dataclass
class SimulateConfig:
    """Everything that determines a simulation from an input file (the sidecar's ``config``)."""

    height: int = 250
    width: int = 400
    #: Readout steps; ``None``: 301 for an image, the whole clip for frames/video.
    steps: int | None = None
    steps_per_frame: float = 8.0
    interp: str = "flow"
    alpha: float = 0.6
    theta: float = 1.0
    #: ``NoiseModel.to_dict()``; ``None``: noise-free.
    noise: dict[str, Any] | None = None
    #: ``MotionConfig.to_dict()`` for a still image; ``None``: the image does not move.
    motion: dict[str, Any] | None = field(default_factory=lambda: MotionConfig(
        objects=(0, 0)).to_dict())
    #: Extra room around the view for the camera to travel (fraction of the view).
    margin: float = 0.25
    #: Images to cut sprites from (a folder or file); ``None``: the input image itself.
    sprites: str | None = None
    substeps: int = 1
    seed: int = 0
    #: Ground-truth steps (0-based); ``None``: the middle step.
    gt_steps: list[int] | None = None
    gt_every: int | None = None
    gt_all: bool = False
    chunk: int = 16
    device: str = "cpu"

    def validate(self) -> None:
        frame_bytes(self.height, self.width)
        if self.steps is not None and self.steps < 1:
            raise ParameterError(f"steps must be at least 1, got {self.steps}")
        check_scene_options(self.steps_per_frame, self.interp, self.alpha)
        if not self.theta > 0:
            raise ParameterError(f"theta must be positive, got {self.theta}")
        if self.margin < 0:
            raise ParameterError(f"margin must be >= 0, got {self.margin}")
        if self.substeps < 1 or self.chunk < 1:
            raise ParameterError("substeps and chunk must be at least 1")
        if self.gt_every is not None and self.gt_every < 1:
            raise ParameterError(f"--gt-every must be at least 1, got {self.gt_every}")
        if not 0 <= self.seed < 2**63:
            raise ParameterError(f"seed must be in [0, 2^63), got {self.seed}")
        if self.noise is not None:
            NoiseModel.from_dict(self.noise)
        if self.motion is not None:
            MotionConfig.from_dict(self.motion)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimulateConfig:
        bad = [k for k in d if k not in cls.__dataclass_fields__]
        if bad:
            raise ParameterError(f"unknown simulation parameters: {', '.join(bad)}")
        return cls(**d)


def derive_seeds(seed: int, n: int = 2) -> list[int]:
    """Independent 63-bit seeds from one seed (scene, sensor, ...)."""
    state = np.random.SeedSequence(int(seed)).generate_state(n, dtype=np.uint64)
    return [int(s) & (2**63 - 1) for s in state]


def resolve_gt_steps(steps: int, gt_steps: Sequence[int] | None, gt_every: int | None
                     ) -> list[int]:
    """Sorted ground-truth steps: the given ones, every ``gt_every``-th, else the middle."""
    out = set(int(s) for s in gt_steps or [])
    if gt_every:
        out.update(range(0, steps, gt_every))
    if not out:
        out = {steps // 2}
    neg = sorted(s for s in out if s < 0)
    out = {s + steps if s < 0 else s for s in out}
    bad = sorted(s for s in out if not 0 <= s < steps)
    if bad or any(s + steps < 0 for s in neg):
        raise ParameterError(f"ground-truth steps {bad or neg} are outside 0..{steps - 1}")
    return sorted(out)


def file_digest(paths: Sequence[Path]) -> str:
    """SHA-256 over the bytes of ``paths`` in order (the input's fingerprint)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _sprite_sources(spec: str | None, fallback: torch.Tensor, device: torch.device
                    ) -> torch.Tensor:
    if spec is None:
        return fallback.flip(-1)[None]
    p = Path(spec)
    paths = list_frames(p) if p.is_dir() else [p]
    paths = [q for q in paths if q.suffix.lower() in IMAGE_EXTS][:32]
    if not paths:
        raise InputError(f"no sprite images in {p}")
    side = 384
    imgs = [resize_cover(torch.from_numpy(load_grey(q)), side, side) for q in paths]
    return torch.stack(imgs).to(device)


def build_scene(input_path: str | Path, cfg: SimulateConfig, generator: torch.Generator,
                gt_steps: Sequence[int] | None = None) -> tuple[Scene, int, dict[str, Any]]:
    """The scene for an input file, its length in steps and a description for the sidecar."""
    cfg.validate()
    p = Path(input_path)
    kind = input_kind(p)
    device = torch.device(cfg.device)
    size = (cfg.height, cfg.width)
    desc: dict[str, Any] = {"path": str(p.resolve()), "kind": kind}
    if kind == "image":
        img = torch.from_numpy(load_grey(p)).to(device)
        desc["digest"] = file_digest([p])
        desc["source_size"] = list(img.shape)
        steps = cfg.steps or DEFAULT_STILL_STEPS
        motion = MotionConfig.from_dict(cfg.motion) if cfg.motion is not None else None
        if motion is None or motion == MotionConfig.still():
            scene: Scene = StaticScene(resize_cover(img, *size))
        else:
            bg = prepare_background(img, size, cfg.margin)
            sources = _sprite_sources(cfg.sprites, bg, device) if motion.objects[1] else None
            key = gt_steps[0] if gt_steps else (steps - 1) / 2
            scene = random_motion_scene(bg[None], size, steps, motion, generator,
                                        sprite_sources=sources, key_step=key)
        return scene, steps, desc
    if kind == "frames":
        paths = list_frames(p)
        desc["frames"] = len(paths)
        desc["digest"] = file_digest(paths)
        scene = VideoScene(iter_frame_files(paths), len(paths), size, cfg.steps_per_frame,
                           cfg.interp, device)
    else:
        n = count_video_frames(p)
        desc["frames"] = n
        desc["digest"] = file_digest([p])
        scene = VideoScene(iter_video_frames(p), n, size, cfg.steps_per_frame, cfg.interp,
                           device)
    assert scene.num_steps is not None
    steps = cfg.steps or scene.num_steps
    return scene, steps, desc


def to_png8(light: np.ndarray) -> np.ndarray:
    """Light in [0, 1] -> uint8 (rounded), the ground-truth PNG convention."""
    return (np.clip(light, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_png(path: Path, light: np.ndarray) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, to_png8(light), extension=".png")


@dataclass
class RunStats:
    steps: int
    spikes: int
    pixels: int
    seconds: float
    gt: dict[int, np.ndarray]

    @property
    def mean_rate(self) -> float:
        return self.spikes / max(1, self.steps * self.pixels)


def stream_to_dat(scene: Scene, steps: int, dat_path: Path, *, alpha: float = 0.6,
                  theta: float = 1.0, noise: NoiseModel | None = None,
                  generator: torch.Generator | None = None, gt_steps: Sequence[int] = (),
                  chunk: int = 16, substeps: int = 1, light_npy: Path | None = None,
                  on_chunk: Callable[[int], None] | None = None) -> RunStats:
    """Simulate ``scene`` (``B = 1``) into ``dat_path`` chunk by chunk; return the ground truth
    at ``gt_steps`` and statistics. ``light_npy`` gets every step's light as float16
    ``(T, H, W)`` (written through a memory map)."""
    if scene.batch != 1:
        raise ParameterError(f"file simulation takes one scene, got a batch of {scene.batch}")
    frame_bytes(scene.height, scene.width)
    cam = SpikeCamera(1, scene.height, scene.width, alpha, theta, noise, generator, scene.device)
    gts: dict[int, np.ndarray] = {}
    total = 0
    mm = None
    if light_npy is not None:
        mm = np.lib.format.open_memmap(light_npy, mode="w+", dtype=np.float16,
                                       shape=(steps, scene.height, scene.width))
    t0 = time.perf_counter()
    with open(dat_path, "wb") as f:
        for part in iter_simulation(scene, steps, cam, chunk=chunk, substeps=substeps,
                                    gt_steps=gt_steps, keep_light=mm is not None):
            sp = part.spikes[0].cpu().numpy()
            f.write(encode(sp))
            total += int(sp.sum(dtype=np.int64))
            for s, img in part.gt.items():
                gts[s] = img[0].float().cpu().numpy()
            if mm is not None and part.light is not None:
                mm[part.start:part.start + sp.shape[0]] = part.light[0].cpu().numpy()
            if on_chunk is not None:
                on_chunk(sp.shape[0])
    if mm is not None:
        mm.flush()
        del mm
    return RunStats(steps, total, scene.height * scene.width, time.perf_counter() - t0, gts)


def output_paths(out_dat: Path) -> dict[str, Path]:
    """Where a simulation's outputs go: ``X.dat``, ``X.json`` and the ``X_gt/`` folder."""
    return {"dat": out_dat, "sidecar": out_dat.with_suffix(".json"),
            "gt_dir": out_dat.with_name(out_dat.stem + "_gt")}


def check_outputs(out_dat: str | Path, force: bool = False) -> dict[str, Path]:
    """Validate the outputs of a simulation before any work: raise :class:`OutputError`
    when one exists (without ``force``) or cannot be written."""
    from spkrecon.export.atomic import check_output

    if Path(out_dat).name in ("", ".", "..") or Path(out_dat).is_dir():
        raise OutputError(f"{out_dat} is a folder, not a recording's name",
                          f"give a file name, e.g. {Path(out_dat) / 'recording.dat'}")
    paths = output_paths(Path(out_dat))
    if paths["dat"].suffix.lower() != ".dat":
        raise OutputError(f"{paths['dat']} must end in .dat",
                          f"use {paths['dat'].with_suffix('.dat')}")
    for key in ("dat", "sidecar"):
        check_output(paths[key], force)
    check_output(paths["gt_dir"], force, kind="dir", foreign=gt_foreign)
    return paths


def gt_foreign(folder: Path) -> list[str]:
    """What a ground-truth folder holds besides the ``NNNNNN.png`` and ``light.npy`` a
    simulation writes there (``--force`` replaces it only when this is empty)."""
    from spkrecon.export.atomic import foreign_entries

    return foreign_entries(folder, lambda rel, is_dir: not is_dir and len(rel.parts) == 1 and (
        rel.name == "light.npy" or (rel.suffix == ".png" and rel.stem.isdigit())))


def _versions() -> dict[str, str]:
    from spkrecon import __version__

    return {"spkrecon": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def simulate_scene_to_files(scene: Scene, steps: int, out_dat: str | Path, *,
                            alpha: float = 0.6, theta: float = 1.0,
                            noise: NoiseModel | None = None, sensor_seed: int = 0,
                            gt_steps: Sequence[int] = (), gt_all: bool = False,
                            chunk: int = 16, substeps: int = 1, force: bool = False,
                            sidecar: dict[str, Any] | None = None,
                            on_chunk: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Simulate a scene into ``out_dat`` plus ``X_gt/NNNNNN.png`` (and ``X_gt/light.npy``
    with ``gt_all``) and the sidecar ``X.json``; returns the sidecar dict."""
    from spkrecon.export.atomic import PendingFile, atomic_dir

    paths = check_outputs(out_dat, force)
    gt_dir = paths["gt_dir"]
    dat = PendingFile(paths["dat"], force)
    side = PendingFile(paths["sidecar"], force)
    try:
        with atomic_dir(gt_dir, force, foreign=gt_foreign) as tmp_dir:
            gen = make_generator(sensor_seed, scene.device)
            stats = stream_to_dat(scene, steps, dat.tmp, alpha=alpha, theta=theta, noise=noise,
                                  generator=gen, gt_steps=gt_steps, chunk=chunk,
                                  substeps=substeps,
                                  light_npy=tmp_dir / "light.npy" if gt_all else None,
                                  on_chunk=on_chunk)
            for s, img in stats.gt.items():
                write_png(tmp_dir / f"{s:06d}.png", img)
            record = dict(sidecar or {})
            record.update({
                "format": SIDECAR_FORMAT,
                "outputs": {"dat": paths["dat"].name, "gt_dir": gt_dir.name,
                            "gt_png": [f"{s:06d}.png" for s in sorted(stats.gt)],
                            "light_npy": "light.npy" if gt_all else None},
                "recording": {"frames": steps, "height": scene.height, "width": scene.width,
                              "bytes": steps * frame_bytes(scene.height, scene.width),
                              "mean_rate": round(stats.mean_rate, 6)},
                "sensor": {"alpha": alpha, "theta": theta, "seed": sensor_seed,
                           "noise": noise.to_dict() if noise is not None else None,
                           "substeps": substeps, "chunk": chunk},
                "scene": scene.describe(),
                "gt_steps": sorted(stats.gt),
                "versions": _versions(),
                "seconds": round(stats.seconds, 3),
                "steps_per_second": round(steps / max(stats.seconds, 1e-9), 1),
            })
            side.tmp.write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
            side.commit()
            dat.commit()
    except BaseException:
        dat.discard()
        side.discard()
        raise
    return record


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def simulate_file(input_path: str | Path, out_dat: str | Path, cfg: SimulateConfig | None = None,
                  *, force: bool = False, on_chunk: Callable[[int], None] | None = None,
                  on_start: Callable[[int], None] | None = None) -> dict[str, Any]:
    """``spkrecon simulate``: an image, a frame folder or a video -> ``.dat`` + GT + sidecar.

    ``on_start(steps)`` is called once the length is known, ``on_chunk(n)`` after each chunk.
    """
    cfg = cfg or SimulateConfig()
    cfg.validate()
    kind = input_kind(input_path)
    check_outputs(out_dat, force)
    scene_seed, sensor_seed = derive_seeds(cfg.seed)
    device = torch.device(cfg.device)
    gen = make_generator(scene_seed, device)
    # The GT steps pick where sprites are placed; for images the length is known up front.
    pre_steps = cfg.steps or (DEFAULT_STILL_STEPS if kind == "image" else None)
    gts = resolve_gt_steps(pre_steps, cfg.gt_steps, cfg.gt_every) if pre_steps else None
    scene, steps, desc = build_scene(input_path, cfg, gen, gts)
    gts = resolve_gt_steps(steps, cfg.gt_steps, cfg.gt_every)
    noise = NoiseModel.from_dict(cfg.noise) if cfg.noise is not None else None
    if on_start is not None:
        on_start(steps)
    sidecar = {"input": desc, "config": cfg.to_dict(), "seed": cfg.seed,
               "derived_seeds": {"scene": scene_seed, "sensor": sensor_seed}}
    return simulate_scene_to_files(scene, steps, out_dat, alpha=cfg.alpha, theta=cfg.theta,
                                   noise=noise, sensor_seed=sensor_seed, gt_steps=gts,
                                   gt_all=cfg.gt_all, chunk=cfg.chunk, substeps=cfg.substeps,
                                   force=force, sidecar=sidecar, on_chunk=on_chunk)


def load_sidecar_config(path: str | Path) -> tuple[SimulateConfig, dict[str, Any]]:
    """The :class:`SimulateConfig` stored in a sidecar (to repeat a run), and the sidecar."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{p} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{p} is not a readable JSON sidecar: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or "config" not in data:
        raise InputError(f"{p} is not a spkrecon simulation sidecar")
    return SimulateConfig.from_dict(data["config"]), data
