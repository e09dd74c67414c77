"""Validation on recordings with ground truth: PSNR/SSIM of the key frame.

A validation folder holds ``X.dat`` recordings with ``X.png`` ground truth beside them (the
REDS samples of Spike-Zoo and ``spkrecon dataset make --kind test``). The key frame is the
one the name states (``..._key_id151`` is 1-based frame 151, index 150), else the middle
frame. The network reads the 41 frames around it (130..170 for 150); the height/width are
padded to multiples of 4 by symmetric padding at the bottom/right and cropped back, as the
authors do; the score is that of ``clip(out / alpha, 0, 1)`` against the PNG (in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkrecon.errors import InputError


@dataclass
class ValSample:
    name: str
    spikes: np.ndarray  # (41, H, W) uint8
    gt: np.ndarray  # (H, W) float32 in [0, 1]


def load_validation(folder: str | Path, window: int = 41, limit: int | None = None
                    ) -> list[ValSample]:
    """The ``(name, spikes window, ground truth)`` of each ``X.dat`` + ``X.png`` in ``folder``."""
    from spkrecon.io import open_recording
    from spkrecon.scoring import load_image, parse_key_frame

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"validation folder {root} does not exist")
    pairs = [(d, d.with_suffix(".png")) for d in sorted(root.glob("*.dat"))
             if d.with_suffix(".png").is_file()]
    if not pairs:
        raise InputError(f"{root} holds no X.dat recordings with X.png ground truth")
    out = []
    half = window // 2
    for dat, png in pairs[:limit]:
        gt = load_image(png)
        h, w = gt.shape
        rec = open_recording(dat, height=h, width=w)
        key1 = parse_key_frame(dat)
        key = key1 - 1 if key1 is not None else rec.num_frames // 2
        if key - half < 0 or key + half >= rec.num_frames:
            raise InputError(f"{dat.name}: key frame {key} has no {half} frames on each side")
        out.append(ValSample(dat.stem, rec.read(key - half, key + half + 1), gt))
    return out


def pad4(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Pad ``(B, C, H, W)`` at the bottom/right to multiples of 4 (symmetric); return H, W."""
    h, w = x.shape[-2:]
    ph, pw = -h % 4, -w % 4
    if ph or pw:
        # 'reflect' without repeating would differ from numpy's symmetric: build it by hand.
        if ph:
            x = torch.cat([x, x[..., h - ph:h, :].flip(-2)], dim=-2)
        if pw:
            x = torch.cat([x, x[..., :, w - pw:w].flip(-1)], dim=-1)
    return x, h, w


@torch.no_grad()
def predict(model: torch.nn.Module, spikes: np.ndarray, device: torch.device,
            autocast: torch.dtype | None = None) -> np.ndarray:
    """Rate estimate ``(H, W)`` of a 41-frame window ``(41, H, W)`` (model in eval mode)."""
    x = torch.from_numpy(np.ascontiguousarray(spikes)).to(device).float()[None]
    x, h, w = pad4(x)
    if autocast is not None:
        with torch.autocast(device.type, dtype=autocast):
            out = model(x)[0]
    else:
        out = model(x)[0]
    return out[0, 0, :h, :w].float().cpu().numpy()


def evaluate(model: torch.nn.Module, samples: list[ValSample], device: torch.device,
             alpha: float = 0.6, autocast: torch.dtype | None = None) -> dict[str, Any]:
    """Mean and per-sample PSNR/SSIM of ``clip(out / alpha, 0, 1)`` against the ground truth."""
    from spkrecon.metrics.psnr import psnr
    from spkrecon.metrics.ssim import ssim

    was_training = model.training
    model.eval()
    try:
        per = {}
        for s in samples:
            img = np.clip(predict(model, s.spikes, device, autocast) / alpha, 0.0, 1.0)
            per[s.name] = {"psnr": float(psnr(img, s.gt, data_range=1.0)),
                           "ssim": float(ssim(img, s.gt, data_range=1.0))}
    finally:
        model.train(was_training)
    return {"psnr": float(np.mean([v["psnr"] for v in per.values()])),
            "ssim": float(np.mean([v["ssim"] for v in per.values()])), "samples": per}

