"""On-the-fly training batches: random crops -> random motion -> spikes and ground truth.

Spk2ImgNet (Zhao et al. CVPR 2021) trains on 41-frame windows with ground truth at the five
block centres 7, 14, 21, 28, 35 (1-based; :data:`BLOCK_CENTRES` is 0-based) and 40x40 patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from spkrecon.errors import ParameterError
from spkrecon.simulate.core import SimResult, simulate_batch
from spkrecon.simulate.exact import resize
from spkrecon.simulate.motion import MotionConfig, random_motion_scene
from spkrecon.simulate.noise import NoiseModel

#: 0-based readout steps of the five block centres of a 41-step window.
BLOCK_CENTRES: tuple[int, ...] = (6, 13, 20, 27, 34)


def random_crops(images: Sequence[torch.Tensor] | torch.Tensor, count: int,
                 size: tuple[int, int], generator: torch.Generator | None = None,
                 device: str | torch.device | None = None) -> torch.Tensor:
    """``count`` random crops ``(count, h, w)`` from grey images ``(H, W)`` (any sizes).

    Images smaller than ``size`` are scaled up to cover it first. Crops are returned on
    ``device`` (default: the generator's device, else the images').
    """
    imgs = list(images) if not isinstance(images, torch.Tensor) else list(images.unbind(0))
    if not imgs:
        raise ParameterError("random_crops needs at least one image")
    h, w = size
    gdev = generator.device if generator is not None else torch.device("cpu")
    dev = torch.device(device) if device is not None else (
        gdev if generator is not None else imgs[0].device)
    pick = torch.randint(0, len(imgs), (count,), generator=generator, device=gdev).tolist()
    pos = torch.rand((count, 2), generator=generator, device=gdev, dtype=torch.float64).tolist()
    out = []
    for i, (py, px) in zip(pick, pos, strict=False):
        img = imgs[i]
        if img.ndim != 2:
            raise ParameterError(f"images must be grey (H, W), got {tuple(img.shape)}")
        ih, iw = img.shape
        if ih < h or iw < w:
            s = max(h / ih, w / iw)
            img = resize(img.float(), max(h, round(ih * s + 0.5)),
                         max(w, round(iw * s + 0.5))).float()
            ih, iw = img.shape
        y, x = int(py * (ih - h + 1)), int(px * (iw - w + 1))
        out.append(img[y:y + h, x:x + w].float())
    return torch.stack(out).to(dev).clamp(0.0, 1.0)


def training_batch(images: Sequence[torch.Tensor] | torch.Tensor, batch: int, *,
                   patch: int | tuple[int, int] = 40, steps: int = 41,
                   gt_steps: Sequence[int] = BLOCK_CENTRES, motion: MotionConfig | None = None,
                   noise: NoiseModel | None = None, alpha: float = 0.6,
                   generator: torch.Generator | None = None, crop: int | None = None,
                   device: str | torch.device | None = None) -> SimResult:
    """A random batch: spikes ``(B, steps, h, w)`` bool and ground truth ``(B, K, h, w)``.

    Crops of ``crop`` pixels (default ``max(2 * patch, patch + 64)``) leave the camera room to
    move; sprites come from the other crops of the batch. Everything after the crops runs on
    the generator's device.
    """
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    c = crop or max(2 * max(ph, pw), max(ph, pw) + 64)
    crops = random_crops(images, batch, (c, c), generator, device)
    scene = random_motion_scene(crops, (ph, pw), steps, motion, generator,
                                key_step=(steps - 1) / 2)
    return simulate_batch(scene, steps, alpha=alpha, noise=noise, generator=generator,
                          gt_steps=gt_steps)
