"""Two processes on the gloo backend through torchrun (DistributedDataParallel on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "spkrecon", "train", "--images", str(tiny_data["images"]), "--model",
           "lite", "--features", "8", "--blocks", "1", "--patch", "16", "-b", "2", "--steps",
           "4", "--threads", "1", "--device", "cpu", "--val-dir", "none", "--val-every", "0",
           "--log-every", "1", "-o", str(out), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPKRECON_PROGRESS": "0"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout[r.stdout.index("{"):])  # only rank 0 prints
    assert result["step"] == 4 and result["samples"] == 4 * 2 * 2
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["samples_seen"] for x in lines if x["kind"] == "train"] == [4, 8, 12, 16]
    assert lines[-1]["kind"] == "end" and lines[-1]["world"] == 2
    assert lines[-1]["replicas_in_sync"] is True
    w = torch.load(out / "weights.pt", weights_only=True)
    assert w["meta"]["world_size"] == 2 and w["meta"]["samples_seen"] == 16
