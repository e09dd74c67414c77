"""Which share of a batch this process takes: torchrun, SLURM, ``--shard K/N`` or all of it.

Every process lists the same recordings in the same (sorted) order and takes those at
positions ``rank, rank + world, rank + 2 * world, ...``: a share that depends only on the
list and on ``(rank, world)``, never on timing or on what is already done.

Where the rank comes from, first match wins:

1. ``--shard K/N`` (:func:`parse_shard`);
2. torchrun: ``RANK`` and ``WORLD_SIZE`` (``LOCAL_RANK`` picks the GPU);
3. SLURM: the array task (``SLURM_ARRAY_TASK_ID`` less ``SLURM_ARRAY_TASK_MIN``, of
   ``SLURM_ARRAY_TASK_COUNT``) combined with the task of a step (``SLURM_PROCID`` of
   ``SLURM_NTASKS``, ``SLURM_LOCALID`` picks the GPU): ``rank = array_rank * ntasks + procid``;
4. else one process takes everything.

No torch import: this runs in the CLI's parent process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from spkrecon.errors import ParameterError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """This process's place: ``rank`` of ``world``, GPU ``local_rank``, found through ``source``."""

    rank: int = 0
    world: int = 1
    local_rank: int | None = None
    #: "single", "option", "torchrun", "slurm-array", "slurm" or "slurm-array+slurm".
    source: str = "single"

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ParameterError(f"shard {self.rank}/{self.world} is out of range",
                                 "the rank must be in 0 .. world size - 1")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def label(self) -> str:
        return f"{self.rank}/{self.world}" if self.enabled else "all"

    def take(self, items: Sequence[T]) -> list[T]:
        """This process's share of ``items`` (which every process lists in the same order)."""
        return list(items[self.rank::self.world])


def parse_shard(text: str) -> Shard:
    """``"K/N"`` (0-based K) -> :class:`Shard`; ParameterError when malformed."""
    rank, sep, world = text.strip().partition("/")
    if not sep or not rank.strip().isdigit() or not world.strip().isdigit():
        raise ParameterError(f"--shard {text!r} is not K/N", "e.g. --shard 0/4 .. --shard 3/4")
    return Shard(int(rank), int(world), None, "option")


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ParameterError(f"environment variable {name}={raw!r} is not a whole number") \
            from None


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard:
    """The share given by torchrun's or SLURM's environment (see the module docstring)."""
    env = os.environ if env is None else env
    world = _int(env, "WORLD_SIZE")
    if world is not None and world > 1:
        return Shard(_int(env, "RANK") or 0, world, _int(env, "LOCAL_RANK") or 0, "torchrun")
    rank, world, parts = 0, 1, []
    task = _int(env, "SLURM_ARRAY_TASK_ID")
    if task is not None:
        lo = _int(env, "SLURM_ARRAY_TASK_MIN") or 0
        step = _int(env, "SLURM_ARRAY_TASK_STEP") or 1
        count = _int(env, "SLURM_ARRAY_TASK_COUNT")
        if count is None:
            hi = _int(env, "SLURM_ARRAY_TASK_MAX")
            count = (hi - lo) // step + 1 if hi is not None else 1
        rank, world = (task - lo) // step, count
        parts.append("slurm-array")
    ntasks = _int(env, "SLURM_NTASKS")
    local = None
    if ntasks is not None and ntasks > 1:
        rank, world = rank * ntasks + (_int(env, "SLURM_PROCID") or 0), world * ntasks
        local = _int(env, "SLURM_LOCALID")
        parts.append("slurm")
    if world <= 1:
        return Shard()
    return Shard(rank, world, local, "+".join(parts))
