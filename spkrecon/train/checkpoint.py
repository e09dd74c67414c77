"""Training checkpoints (to resume) and exported weights (to use).

A run folder holds:

- ``last.pt``: the training state: model and optimizer state, step, samples seen, elapsed
  time, the data generator's and torch's RNG states, the config, the validation history and,
  with ``--ema``, the averaged weights (a plain dict, loadable with ``weights_only=True``);
- ``weights.pt`` (latest) and ``best.pt`` (best validation PSNR): spkrecon weights files
  (:mod:`spkrecon.models.weights`) with the run's metadata;
- ``config.json`` and ``log.jsonl`` (one JSON line per log interval and validation).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from spkrecon.errors import WeightsError

STATE_FORMAT = "spkrecon-train-state"
STATE_VERSION = 1
LAST = "last.pt"
WEIGHTS = "weights.pt"
BEST = "best.pt"


def save_state(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               step: int, samples: int, elapsed: float, progress: float,
               generator: torch.Generator, config: dict[str, Any],
               history: list[dict[str, Any]], best: float | None,
               ema: torch.nn.Module | None = None) -> None:
    """Write the training state atomically."""
    state = {
        "format": STATE_FORMAT, "format_version": STATE_VERSION,
        "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(), "step": step, "samples": samples,
        "elapsed": elapsed, "progress": progress, "generator": generator.get_state().cpu(),
        "torch_rng": torch.get_rng_state(), "config": config, "history": history,
        "best": best,
    }
    if ema is not None:
        state["ema"] = {k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}
    from spkrecon.models.weights import atomic_torch_save

    atomic_torch_save(state, path)


def load_state(path: Path) -> dict[str, Any]:
    """Read a training state written by :func:`save_state`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise WeightsError(f"cannot read training checkpoint {path}: "
                           f"{str(exc).splitlines()[0][:160] if str(exc) else exc}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise WeightsError(f"{path} is not a spkrecon training checkpoint",
                           "resume needs the last.pt of a 'spkrecon train' run")
    return state


def machine() -> str:
    """A short description of the hardware the run uses."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = ""
    if torch.cuda.is_available():
        gpus = f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"{cpu} ({os.cpu_count()} CPUs){gpus}"


def export_weights(path: Path, model: torch.nn.Module, alpha: float, meta: dict[str, Any]
                   ) -> Path:
    """Write the model as a spkrecon weights file with ``meta`` (version/created added)."""
    from spkrecon.models.weights import Checkpoint, make_meta, save_checkpoint

    cfg = model.config  # type: ignore[attr-defined]
    ckpt = Checkpoint(state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
                      config=cfg.to_dict(), alpha=alpha, meta=make_meta(**meta))
    return save_checkpoint(ckpt, path, force=True)
