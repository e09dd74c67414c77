"""Build simulated spike datasets from folders of images and frame sequences.

Two layouts:

- ``test`` (the Spike40 set of Zhao et al. CVPR 2021 and the REDS samples of Spike-Zoo):
  ``OUT/X.dat`` of 301 readout steps and ``OUT/X.png``, the ground truth at key frame 151
  (1-based; step 150), named ``<source>_part<k>_key_id151``.
- ``train`` (the Spk2ImgNet authors' training layout): ``OUT/input/X.dat`` of 41 steps and
  ``OUT/gt/X_<c>.png`` at the five block centres c = 7, 14, 21, 28, 35 (1-based; steps
  6, 13, 20, 27, 34), named ``<source>_part<k>``.

Both write ``OUT/dataset.json`` with every parameter, each sample's source and seed. Still
images are moved by random camera paths with sprites cut from other images; frame sequences
are interpolated between frames. Sample ``i`` depends only on the seed and ``i``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spkrecon.errors import InputError, ParameterError

KINDS = ("test", "train")
TEST_STEPS = 301
TEST_KEY = 150  # 0-based; "key_id151" in the names
TRAIN_STEPS = 41
TRAIN_GT = (6, 13, 20, 27, 34)  # 0-based block centres; files say 7, 14, 21, 28, 35
MANIFEST = "dataset.json"


def _default_motion() -> dict[str, Any]:
    from spkrecon.simulate.motion import MotionConfig

    return MotionConfig(objects=(0, 3)).to_dict()


@dataclass
class DatasetConfig:
    """Parameters of ``spkrecon dataset make`` (stored in ``dataset.json``)."""

    kind: str = "test"
    count: int = 40
    height: int = 250
    width: int = 400
    seed: int = 0
    alpha: float = 0.6
    noise: dict[str, Any] | None = None
    motion: dict[str, Any] = field(default_factory=_default_motion)
    steps_per_frame: float = 10.0
    interp: str = "flow"
    #: Share of samples taken from frame sequences when both kinds of source are given.
    video_share: float = 0.5
    margin: float = 0.25
    chunk: int = 16

    @property
    def steps(self) -> int:
        return TEST_STEPS if self.kind == "test" else TRAIN_STEPS

    @property
    def gt_steps(self) -> tuple[int, ...]:
        return (TEST_KEY,) if self.kind == "test" else TRAIN_GT

    def validate(self) -> None:
        from spkrecon.io import frame_bytes
        from spkrecon.simulate.motion import MotionConfig
        from spkrecon.simulate.noise import NoiseModel
        from spkrecon.simulate.runner import check_scene_options

        if self.kind not in KINDS:
            raise ParameterError(f"unknown dataset kind '{self.kind}'", "use test or train")
        if self.count < 1:
            raise ParameterError(f"count must be at least 1, got {self.count}")
        frame_bytes(self.height, self.width)
        if not 0 <= self.video_share <= 1:
            raise ParameterError(f"video share must be in [0, 1], got {self.video_share}")
        check_scene_options(self.steps_per_frame, self.interp, self.alpha)
        if self.noise is not None:
            NoiseModel.from_dict(self.noise)
        MotionConfig.from_dict(self.motion)


@dataclass
class Sources:
    """Still images and frame sequences (a folder of frames or a video file each)."""

    images: list[Path]
    clips: list[Path]


def _image_files(root: Path) -> list[Path]:
    from spkrecon.simulate.scenes import IMAGE_EXTS

    if root.is_file():
        return [root] if root.suffix.lower() in IMAGE_EXTS else []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _clips(root: Path) -> list[Path]:
    from spkrecon.simulate.scenes import IMAGE_EXTS, VIDEO_EXTS

    if root.is_file():
        return [root] if root.suffix.lower() in VIDEO_EXTS else []
    found: list[Path] = []
    if any(p.suffix.lower() in IMAGE_EXTS for p in root.iterdir() if p.is_file()):
        found.append(root)
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
            found.append(p)
        elif p.is_dir() and any(q.suffix.lower() in IMAGE_EXTS for q in p.iterdir()
                                if q.is_file()):
            found.append(p)
    return found


def collect_sources(images: Sequence[str | Path] = (), videos: Sequence[str | Path] = ()
                    ) -> Sources:
    """Find still images (recursively) and clips (frame folders, video files)."""
    imgs: list[Path] = []
    clips: list[Path] = []
    for item in images:
        p = Path(item)
        if not p.exists():
            raise InputError(f"{p} does not exist")
        imgs += _image_files(p)
    for item in videos:
        p = Path(item)
        if not p.exists():
            raise InputError(f"{p} does not exist")
        clips += _clips(p)
    if not imgs and not clips:
        raise InputError("no images or frame sequences found",
                         "pass --images and/or --videos folders")
    return Sources(imgs, clips)


@dataclass
class SampleSpec:
    name: str
    kind: str  # "image" or "clip"
    source: Path
    seed: int


def _clean(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "sample"


def plan(cfg: DatasetConfig, sources: Sources) -> list[SampleSpec]:
    """Which source and seed each sample uses: deterministic in ``cfg.seed``."""
    from spkrecon.simulate.runner import derive_seeds

    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x5A17]))
    share = cfg.video_share if sources.images and sources.clips else (
        1.0 if sources.clips else 0.0)
    n_clip = round(cfg.count * share)
    kinds = ["clip"] * n_clip + ["image"] * (cfg.count - n_clip)
    kinds = [kinds[i] for i in rng.permutation(cfg.count)]
    orders = {"image": list(rng.permutation(len(sources.images))) if sources.images else [],
              "clip": list(rng.permutation(len(sources.clips))) if sources.clips else []}
    used: dict[str, int] = {}
    counters = {"image": 0, "clip": 0}
    seeds = derive_seeds(cfg.seed, cfg.count)
    specs = []
    for i, kind in enumerate(kinds):
        pool = sources.images if kind == "image" else sources.clips
        order = orders[kind]
        src = pool[order[counters[kind] % len(order)]]
        counters[kind] += 1
        stem = _clean(src.stem if kind == "image" or src.is_file() else src.name)
        used[stem] = used.get(stem, 0) + 1
        name = f"{stem}_part{used[stem]}"
        if cfg.kind == "test":
            name += f"_key_id{TEST_KEY + 1}"
        specs.append(SampleSpec(name, kind, src, seeds[i]))
    return specs


def _sprite_pool(sources: Sources, rng: np.random.Generator, exclude: Path, n: int = 3
                 ) -> Any:
    import torch

    from spkrecon.simulate.scenes import load_grey, resize_cover

    others = [p for p in sources.images if p != exclude]
    if not others:
        return None
    pick = rng.choice(len(others), size=min(n, len(others)), replace=False)
    imgs = [resize_cover(torch.from_numpy(load_grey(others[i])), 384, 384) for i in pick]
    return torch.stack(imgs)


def build_sample_scene(spec: SampleSpec, cfg: DatasetConfig, sources: Sources) -> Any:
    """The scene of one sample (``B = 1``) and a description for the manifest."""
    import torch

    from spkrecon.simulate.core import make_generator
    from spkrecon.simulate.motion import MotionConfig, prepare_background, random_motion_scene
    from spkrecon.simulate.runner import derive_seeds
    from spkrecon.simulate.scenes import (
        VideoScene,
        count_video_frames,
        iter_frame_files,
        iter_video_frames,
        list_frames,
        load_grey,
    )

    scene_seed, _ = derive_seeds(spec.seed)
    size = (cfg.height, cfg.width)
    steps = cfg.steps
    rng = np.random.default_rng(scene_seed)
    info: dict[str, Any] = {"source": str(spec.source), "kind": spec.kind}
    if spec.kind == "image":
        motion = MotionConfig.from_dict(cfg.motion)
        img = torch.from_numpy(load_grey(spec.source))
        bg = prepare_background(img, size, cfg.margin)
        pool = _sprite_pool(sources, rng, spec.source) if motion.objects[1] else None
        key = cfg.gt_steps[len(cfg.gt_steps) // 2]
        gen = make_generator(scene_seed)
        scene = random_motion_scene(bg[None], size, steps, motion, gen, sprite_sources=pool,
                                    key_step=key)
        return scene, info
    if spec.source.is_file():
        n = count_video_frames(spec.source)
    else:
        frames = list_frames(spec.source)
        n = len(frames)
    # Readout steps per frame: as asked, or slower when the clip is too short to fill.
    spf = cfg.steps_per_frame
    if n > 1 and (n - 1) * spf < steps - 1:
        spf = (steps - 1) / (n - 1)
    need = 1 if n == 1 else min(n, math.ceil((steps - 1) / spf - 1e-9) + 1)
    start = int(rng.integers(0, n - need + 1))
    info.update({"frames": n, "start_frame": start, "steps_per_frame": spf})
    if spec.source.is_file():
        it = iter_video_frames(spec.source)
        for _ in range(start):
            next(it)
        scene = VideoScene(it, n - start, size, spf, cfg.interp)
    else:
        scene = VideoScene(iter_frame_files(frames[start:start + need]), need, size, spf,
                           cfg.interp)
    return scene, info


def dataset_foreign(folder: Path) -> list[str]:
    """What ``folder`` holds besides a spkrecon dataset (its manifest, ``X.dat`` + ``X.png``
    or ``input/X.dat`` + ``gt/X_N.png``); everything, when it has no spkrecon manifest.
    ``--force`` replaces a dataset folder only when this is empty."""
    from spkrecon.export.atomic import foreign_entries

    try:
        ours = json.loads((folder / MANIFEST).read_text()).get("format", "").startswith(
            "spkrecon-dataset")
    except (OSError, ValueError, AttributeError):
        ours = False

    def own(rel: Any, is_dir: bool) -> bool:
        if not ours:
            return False
        if is_dir:
            return len(rel.parts) == 1 and rel.name in ("input", "gt")
        if len(rel.parts) == 1:
            return rel.name == MANIFEST or rel.suffix in (".dat", ".png")
        return (rel.parts[0], rel.suffix) in (("input", ".dat"), ("gt", ".png"))

    return foreign_entries(folder, own)


def make_dataset(out_dir: str | Path, cfg: DatasetConfig, sources: Sources, *,
                 force: bool = False, on_sample: Callable[[str], None] | None = None
                 ) -> dict[str, Any]:
    """Write the dataset into ``out_dir`` (a temporary folder renamed at the end)."""
    from spkrecon.export.atomic import atomic_dir
    from spkrecon.simulate.core import make_generator
    from spkrecon.simulate.noise import NoiseModel
    from spkrecon.simulate.runner import _versions, derive_seeds, stream_to_dat, write_png

    cfg.validate()
    specs = plan(cfg, sources)
    noise = NoiseModel.from_dict(cfg.noise) if cfg.noise is not None else None
    records = []
    with atomic_dir(out_dir, force, foreign=dataset_foreign) as tmp:
        if cfg.kind == "train":
            (tmp / "input").mkdir()
            (tmp / "gt").mkdir()
        for spec in specs:
            scene, info = build_sample_scene(spec, cfg, sources)
            _, sensor_seed = derive_seeds(spec.seed)
            dat = tmp / (f"{spec.name}.dat" if cfg.kind == "test" else f"input/{spec.name}.dat")
            stats = stream_to_dat(scene, cfg.steps, dat, alpha=cfg.alpha, noise=noise,
                                  generator=make_generator(sensor_seed, scene.device),
                                  gt_steps=cfg.gt_steps, chunk=cfg.chunk)
            if cfg.kind == "test":
                write_png(tmp / f"{spec.name}.png", stats.gt[TEST_KEY])
            else:
                for s in TRAIN_GT:
                    write_png(tmp / "gt" / f"{spec.name}_{s + 1}.png", stats.gt[s])
            records.append({"name": spec.name, "seed": spec.seed,
                            "mean_rate": round(stats.mean_rate, 6), **info,
                            "scene": scene.describe()})
            if on_sample is not None:
                on_sample(spec.name)
        manifest = {
            "format": "spkrecon-dataset/1",
            "layout": cfg.kind,
            "config": asdict(cfg),
            "steps": cfg.steps,
            "gt_steps_0based": list(cfg.gt_steps),
            "sources": {"images": len(sources.images), "clips": len(sources.clips)},
            "samples": records,
            "versions": _versions(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest
