"""Training Spk2ImgNet (Zhao et al. CVPR 2021): data simulated on the fly, the hierarchical
loss, checkpoints, validation, several GPUs through torchrun. See ``docs/training.md``.

``TrainConfig`` does not import torch; :func:`run` (in :mod:`spkrecon.train.loop`) does.
"""

from __future__ import annotations

from typing import Any

from spkrecon.train.config import MODEL_PRESETS, TrainConfig

__all__ = ["MODEL_PRESETS", "TrainConfig", "run"]


def run(cfg: TrainConfig, **kwargs: Any) -> Any:
    """:func:`spkrecon.train.loop.run` (imports torch on first use)."""
    from spkrecon.train.loop import run as _run

    return _run(cfg, **kwargs)
