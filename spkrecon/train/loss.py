"""The hierarchical loss of Spk2ImgNet (Zhao et al. CVPR 2021, eq. 11).

``L = L1(out, a * gt_key) + lambda * sum_k sum_j L1(est_k[:, j], a * gt_k)``: the image is
compared with the key block's ground truth, and each of the four SALI estimates of each of
the five blocks with its block centre's ground truth; targets are ``alpha * light`` (the
network estimates firing rates; alpha = 0.6 in the authors' data), lambda = 0.02.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LAMBDA = 0.02


def hierarchical_loss(out: Tensor, estimates: list[Tensor], gt: Tensor, *, alpha: float = 0.6,
                      lam: float = LAMBDA, key: int | None = None) -> tuple[Tensor, Tensor]:
    """``(total, image_term)`` for ``out (B, 1, H, W)``, ``estimates`` K x ``(B, E, H, W)``
    and ground truth ``gt (B, K, H, W)`` light in [0, 1]; ``key`` defaults to ``K // 2``."""
    k = gt.shape[1]
    if len(estimates) != k:
        raise ValueError(f"{len(estimates)} estimate stacks for {k} ground-truth frames")
    target = gt.float() * alpha
    key = k // 2 if key is None else key
    image = F.l1_loss(out.float(), target[:, key:key + 1])
    if lam == 0:
        return image, image.detach()
    aux = out.new_zeros((), dtype=torch.float32)
    for i, est in enumerate(estimates):
        e = est.float()
        aux = aux + F.l1_loss(e, target[:, i:i + 1].expand_as(e)) * e.shape[1]
    return image + lam * aux, image.detach()
