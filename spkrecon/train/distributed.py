"""Several processes through ``torchrun``: DistributedDataParallel set up from its env vars.

``torchrun --nproc-per-node N -m spkrecon train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; each process uses
GPU ``LOCAL_RANK`` (backend NCCL) or the CPU (backend gloo). Without those variables
training runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from spkrecon.errors import DeviceError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank and world size from torchrun's environment (one process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world,
                    int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> DistInfo:
    """Join the process group when torchrun started several processes."""
    info = env_info()
    if not info.enabled:
        return info
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_available():
        raise DeviceError("this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world)
    info.backend = backend
    return info


def device_for(spec: str, info: DistInfo) -> torch.device:
    """The training device: ``auto`` picks GPU ``LOCAL_RANK`` under torchrun, else cuda/cpu."""
    from spkrecon.methods.spk2imgnet import resolve_device

    dev = resolve_device(spec)
    if dev.type == "cuda" and info.enabled and dev.index is None:
        n = torch.cuda.device_count()
        if info.local_rank >= n:
            raise DeviceError(f"local rank {info.local_rank} but only {n} GPU(s) visible",
                              "start at most one process per GPU")
        dev = torch.device("cuda", info.local_rank)
    return dev


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Whether ``flag`` holds in some process (so every process stops at the same step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean(value: float, info: DistInfo, device: torch.device) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world


def replicas_in_sync(model: torch.nn.Module, info: DistInfo, device: torch.device) -> bool:
    """Whether every process holds the same parameters (DDP keeps them bit-identical)."""
    if not info.enabled:
        return True
    with torch.no_grad():
        s = sum(float(p.double().sum()) for p in model.parameters())
    t = torch.tensor([s, -s], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t[0] + t[1]) == 0.0


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
