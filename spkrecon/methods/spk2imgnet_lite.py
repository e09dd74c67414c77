"""Spk2ImgNet lite: the CPU model spkrecon trains and ships (``weights/spk2imgnet-lite.pt``).

Zhao, Xiong, Liu, Zhang, Huang. "Spk2ImgNet: Learning to Reconstruct Dynamic Scene from
Continuous Spike Stream", CVPR 2021. The lite network keeps SALI and the fusion head of the
paper's Net_b ablation (no deformable alignment, no reliability masks) at a narrow width and
shallow depth, plus four spkrecon additions: the blocks' spike frames reach the feature CNN
(``raw_skip``), the fusion head gets the window's velocity from parameter-free block
matching (``motion_input``), each block position has its own feature extractor
(``separate_encoders``), and a small learned flow per neighbour block warps its features
onto the key block (``flow_align``). It is trained with ``spkrecon train --model lite`` (see
docs/training.md); the shipped weights score 35.12 dB on the shared REDS samples, an in-sample
figure (those five recordings picked its checkpoint and steered its training).
Everything else is :class:`spkrecon.methods.spk2imgnet.Spk2ImgNet`.
"""

from __future__ import annotations

from spkrecon.methods.spk2imgnet import Spk2ImgNet
from spkrecon.models.weights import LITE_NAME


class Spk2ImgNetLite(Spk2ImgNet):
    """:class:`Spk2ImgNet` with the ``spk2imgnet-lite`` weights by default."""

    name = "spk2imgnet-lite"
    summary = "Spk2ImgNet lite: narrow network with learned flow alignment, for CPUs (ours)"

    def __init__(self, weights: str | None = LITE_NAME, device: str = "auto",
                 precision: str = "fp32", channels_last: bool = False, compile: bool = False,
                 batch_size: int | None = None, reuse: bool = True, alpha: float = 0.6) -> None:
        super().__init__(weights=weights or LITE_NAME, device=device, precision=precision,
                         channels_last=channels_last, compile=compile, batch_size=batch_size,
                         reuse=reuse, alpha=alpha)
