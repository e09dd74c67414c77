"""Training data: spike windows ``(B, 41, P, P)`` and ground truth ``(B, 5, P, P)``.

Three kinds of source, mixed per batch:

- :class:`ImageSource`: still photos moved by random camera paths with sprites on top, and
  simulated on the fly on the training device (:mod:`spkrecon.simulate`);
- :class:`VideoSource`: folders of frame sequences, a random crop interpolated between frames
  at a random number of readout steps per frame, simulated on the fly;
- :class:`DatasetSource`: folders in the Spk2ImgNet authors' layout, ``input/X.dat`` (41
  frames) with ``gt/X_7.png`` .. ``gt/X_35.png`` (the five block centres, 1-based).

Simulated batches vary the light level (random dimming), the sensor noise (SCSim model at a
random scale) and the motion (static, slow and fast patches). All randomness comes from one
``torch.Generator`` per process, so a seed reproduces the data. The paper's augmentation
(rotations by 90 degrees, flips) is :func:`augment`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spkrecon.errors import InputError
from spkrecon.simulate.core import simulate_batch
from spkrecon.simulate.motion import MotionConfig, MotionScene, random_motion_scene
from spkrecon.simulate.noise import NoiseModel
from spkrecon.simulate.scenes import IMAGE_EXTS, FrameScene, Scene, list_frames, load_grey
from spkrecon.train.config import TrainConfig

#: 0-based block centres of a 41-step window (the authors' 7, 14, 21, 28, 35).
BLOCK_CENTRES = (6, 13, 20, 27, 34)
WINDOW = 41


@dataclass
class Batch:
    """Spikes ``(B, 41, P, P)`` float 0/1 and ground truth ``(B, 5, P, P)`` light in [0, 1]."""

    spikes: torch.Tensor
    gt: torch.Tensor

    def __len__(self) -> int:
        return int(self.spikes.shape[0])


def _u(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, device=g.device))


def _randint(g: torch.Generator, n: int) -> int:
    return int(torch.randint(0, n, (), generator=g, device=g.device))


def _shrink(img: torch.Tensor, max_side: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    if max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    x = F.interpolate(img[None, None].float(), size=(max(1, round(h * s)), max(1, round(w * s))),
                      mode="bilinear", antialias=True, align_corners=False)
    return x[0, 0]


def _to_u8(img: torch.Tensor) -> torch.Tensor:
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted."""
    root = Path(folder)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise InputError(f"{root} holds no images ({', '.join(IMAGE_EXTS)})")
    return files


def clip_folders(folder: str | Path) -> list[Path]:
    """Frame-sequence folders: ``folder`` itself when it holds frames, else its sub-folders."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"video folder {root} does not exist")
    direct = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()]
    if direct:
        return [root]
    clips = sorted(d for d in root.iterdir() if d.is_dir() and any(
        p.suffix.lower() in IMAGE_EXTS for p in d.iterdir()))
    if not clips:
        raise InputError(f"{root} holds no frame sequences (folders of numbered images)")
    return clips


def crop_region(img: torch.Tensor, size: int, scale: float, g: torch.Generator) -> tuple[
        int, int, int]:
    """A random square region ``(y, x, side)`` covering ``size / scale`` source pixels."""
    h, w = img.shape[-2:]
    side = min(h, w, max(1, round(size / scale)))
    return _randint(g, h - side + 1), _randint(g, w - side + 1), side


def cut(img: torch.Tensor, y: int, x: int, side: int, size: int) -> torch.Tensor:
    """Region ``(..., side, side)`` at ``(y, x)`` of a uint8 image, resized to ``size`` floats."""
    part = img[..., y:y + side, x:x + side].float() / 255.0
    if side != size:
        lead = part.shape[:-2]
        part = F.interpolate(part.reshape(-1, 1, side, side), size=(size, size), mode="bilinear",
                             antialias=True, align_corners=False).reshape(*lead, size, size)
    return part.clamp(0.0, 1.0)


class _Simulated:
    """Shared parts of the on-the-fly sources: motion, noise and light-level draws."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.motion = MotionConfig(max_speed=cfg.max_speed, camera_max_speed=cfg.camera_max_speed,
                                   static_prob=cfg.static_prob, objects=(0, cfg.objects),
                                   resample=cfg.resample)

    def noise(self, g: torch.Generator) -> NoiseModel | None:
        if self.cfg.noise_max > 0 and _u(g) < self.cfg.noise_prob:
            return NoiseModel(scale=_u(g, 0.0, self.cfg.noise_max))
        return None

    def simulate(self, scene: Scene, g: torch.Generator) -> Batch:
        """Spikes of a 41-step window of ``scene`` and its light at the block centres (plus
        ``gt_offset`` steps)."""
        cfg = self.cfg
        off = cfg.gt_offset
        truth = scene
        if isinstance(scene, MotionScene) and cfg.gt_resample not in (None, scene.resample):
            truth = replace(scene, resample=cfg.gt_resample)
        own = off == 0 and truth is scene
        res = simulate_batch(scene, WINDOW, alpha=cfg.alpha, noise=self.noise(g), generator=g,
                             gt_steps=BLOCK_CENTRES if own else ())
        if not own:
            t = torch.tensor(BLOCK_CENTRES, dtype=torch.float64) + off
            return Batch(res.spikes.float(), truth.light_at(t))
        assert res.gt is not None
        return Batch(res.spikes.float(), res.gt)

    def gains(self, n: int, g: torch.Generator) -> torch.Tensor:
        """Light gains ``(n, 1, 1)``: 1, or log-uniform in [dim_min, 1] with ``dim_prob``."""
        u = torch.rand((n, 2), generator=g, device=g.device)
        lo = math.log(self.cfg.dim_min)
        gain = torch.where(u[:, 0] < self.cfg.dim_prob, torch.exp(lo * u[:, 1]),
                           torch.ones_like(u[:, 0]))
        return gain.to(self.device).view(n, 1, 1)


class ImageSource(_Simulated):
    """Still images under random motion, simulated on the fly."""

    kind = "images"

    def __init__(self, folders: list[str], cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.folders = list(folders)
        self.files = [f for d in folders for f in image_files(d)]
        self.images = [_to_u8(_shrink(torch.from_numpy(load_grey(f)), cfg.max_side)).to(device)
                       for f in self.files]
        # Camera travel needs room around the patch (the simulator keeps the view inside).
        self.crop = max(2 * cfg.patch, cfg.patch + 64)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "images": len(self.images), "folders": self.folders}

    def sample(self, n: int, g: torch.Generator) -> Batch:
        cfg = self.cfg
        crops = []
        for _ in range(n):
            img = self.images[_randint(g, len(self.images))]
            scale = _u(g, cfg.scale_min, cfg.scale_max)
            y, x, side = crop_region(img, self.crop, scale, g)
            crops.append(cut(img, y, x, side, self.crop))
        light = torch.stack(crops) * self.gains(n, g)
        # with --sharp-key the view is a pixel crop at the key truth's time
        key = (WINDOW - 1) / 2 + (cfg.gt_offset if cfg.sharp_key else 0.0)
        scene = random_motion_scene(light, (cfg.patch, cfg.patch), WINDOW, self.motion, g,
                                    key_step=key, align_key=cfg.sharp_key)
        return self.simulate(scene, g)


class VideoSource(_Simulated):
    """Frame sequences: a random crop of consecutive frames, interpolated and simulated."""

    kind = "videos"

    def __init__(self, folders: list[str], cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.folders = list(folders)
        self.clips: list[torch.Tensor] = []
        self.names: list[str] = []
        for d in folders:
            for clip in clip_folders(d):
                frames = [_shrink(torch.from_numpy(load_grey(f)), cfg.max_side)
                          for f in list_frames(clip)]
                shapes = {tuple(f.shape) for f in frames}
                if len(frames) < 2 or len(shapes) != 1:
                    raise InputError(f"{clip} needs at least 2 frames of one size "
                                     f"(found {len(frames)}, sizes {sorted(shapes)[:3]})")
                self.clips.append(_to_u8(torch.stack(frames)).to(device))
                self.names.append(clip.name)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "clips": len(self.clips),
                "frames": int(sum(c.shape[0] for c in self.clips)), "folders": self.folders}

    def sample(self, n: int, g: torch.Generator) -> Batch:
        cfg = self.cfg
        lo, hi = cfg.video_steps_per_frame
        # One rate per batch (one FrameScene); it varies from batch to batch.
        spf = math.exp(_u(g, math.log(lo), math.log(hi)))
        span = (WINDOW - 1) / spf  # frames covered by the window
        crops = []
        for _ in range(n):
            clip = self.clips[_randint(g, len(self.clips))]
            count = clip.shape[0]
            need = min(count, int(math.ceil(span)) + 1)
            start = _randint(g, count - need + 1)
            frames = clip[start:start + need]
            if _u(g) < 0.5:  # play backwards too
                frames = frames.flip(0)
            scale = _u(g, cfg.scale_min, cfg.scale_max)
            y, x, side = crop_region(frames, cfg.patch, scale, g)
            part = cut(frames, y, x, side, cfg.patch)
            if part.shape[0] < int(math.ceil(span)) + 1:  # short clip: hold the last frame
                extra = int(math.ceil(span)) + 1 - part.shape[0]
                part = torch.cat([part, part[-1:].expand(extra, -1, -1)])
            crops.append(part)
        light = torch.stack(crops) * self.gains(n, g)[:, None]
        scene = FrameScene(light, spf, interp=cfg.video_interp)
        return self.simulate(scene, g)


def _dataset_items(folder: str | Path) -> list[tuple[Path, list[Path]]]:
    root = Path(folder)
    inp, gtd = root / "input", root / "gt"
    if not inp.is_dir() or not gtd.is_dir():
        raise InputError(f"{root} is not a dataset in the authors' layout",
                         "expected input/X.dat (41 frames) and gt/X_7.png .. gt/X_35.png")
    items = []
    for dat in sorted(inp.glob("*.dat")):
        gts = [gtd / f"{dat.stem}_{c + 1}.png" for c in BLOCK_CENTRES]
        missing = [p.name for p in gts if not p.is_file()]
        if missing:
            raise InputError(f"{dat.name} has no ground truth {', '.join(missing)} in {gtd}")
        items.append((dat, gts))
    if not items:
        raise InputError(f"{inp} holds no .dat recordings")
    return items


class DatasetSource:
    """Dataset folders in the authors' layout; random ``P x P`` crops of random samples."""

    kind = "dataset"

    def __init__(self, folders: list[str], cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.folders = list(folders)
        self.items = [it for d in folders for it in _dataset_items(d)]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "samples": len(self.items), "folders": self.folders}

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        from spkrecon.io import open_recording
        from spkrecon.scoring import load_image

        dat, gts = self.items[i]
        gt = np.stack([load_image(p) for p in gts])
        h, w = gt.shape[-2:]
        rec = open_recording(dat, height=h, width=w)
        if rec.num_frames < WINDOW:
            raise InputError(f"{dat} has {rec.num_frames} frames; training needs {WINDOW}")
        start = (rec.num_frames - WINDOW) // 2
        return rec.read(start, start + WINDOW), gt

    def sample(self, n: int, g: torch.Generator) -> Batch:
        p = self.cfg.patch
        spikes, gts = [], []
        for _ in range(n):
            s, gt = self._load(_randint(g, len(self.items)))
            h, w = gt.shape[-2:]
            if h < p or w < p:
                raise InputError(f"dataset frames of {h}x{w} are smaller than the {p} patch")
            y, x = _randint(g, h - p + 1), _randint(g, w - p + 1)
            spikes.append(torch.from_numpy(np.ascontiguousarray(s[:, y:y + p, x:x + p])))
            gts.append(torch.from_numpy(np.ascontiguousarray(gt[:, y:y + p, x:x + p])))
        return Batch(torch.stack(spikes).to(self.device).float(),
                     torch.stack(gts).to(self.device).float())


def augment(batch: Batch, g: torch.Generator) -> Batch:
    """Random rotation by a multiple of 90 degrees and horizontal flip, per sample."""
    ks = torch.randint(0, 8, (len(batch),), generator=g, device=g.device).tolist()
    sp, gt = [], []
    for i, k in enumerate(ks):
        s, t = batch.spikes[i], batch.gt[i]
        if k >= 4:
            s, t = s.flip(-1), t.flip(-1)
        if k % 4:
            s, t = torch.rot90(s, k % 4, (-2, -1)), torch.rot90(t, k % 4, (-2, -1))
        sp.append(s)
        gt.append(t)
    return Batch(torch.stack(sp), torch.stack(gt))


class Mixture:
    """Every configured source, sharing each batch by ``video_share`` / ``dataset_share``."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        sim: list[Any] = []
        if cfg.images:
            sim.append(ImageSource(cfg.images, cfg, device))
        if cfg.videos:
            sim.append(VideoSource(cfg.videos, cfg, device))
        self.dataset = DatasetSource(cfg.dataset, cfg, device) if cfg.dataset else None
        self.sim = sim
        if not sim and self.dataset is None:
            raise InputError("no training data given",
                             "pass --images FOLDER, --videos FOLDER or --dataset FOLDER")

    def describe(self) -> dict[str, Any]:
        parts = [s.describe() for s in self.sim]
        if self.dataset is not None:
            parts.append(self.dataset.describe())
        return {"sources": parts, "patch": self.cfg.patch, "alpha": self.cfg.alpha,
                "augment": self.cfg.augment}

    def split(self, n: int) -> list[tuple[Any, int]]:
        """How many samples of a batch of ``n`` each source provides (fixed shares)."""
        cfg = self.cfg
        parts: list[tuple[Any, int]] = []
        n_data = 0
        if self.dataset is not None:
            n_data = n if not self.sim else int(round(n * cfg.dataset_share))
        n_sim = n - n_data
        if self.sim:
            if len(self.sim) == 2:
                n_vid = int(round(n_sim * cfg.video_share))
                parts += [(self.sim[0], n_sim - n_vid), (self.sim[1], n_vid)]
            else:
                parts.append((self.sim[0], n_sim))
        if self.dataset is not None:
            parts.append((self.dataset, n_data))
        return [(s, k) for s, k in parts if k > 0]

    def sample(self, n: int, g: torch.Generator) -> Batch:
        batches = [src.sample(k, g) for src, k in self.split(n)]
        out = Batch(torch.cat([b.spikes for b in batches]), torch.cat([b.gt for b in batches]))
        return augment(out, g) if self.cfg.augment else out
