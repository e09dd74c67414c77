"""Training throughput: samples per second of the full and the lite Spk2ImgNet.

One training step is what ``spkrecon train`` does: simulate a batch on the fly (still images
under random motion), augment it, forward, hierarchical loss, backward, Adam. Each model is
timed for at least ``--seconds`` after one warm-up step; the lite model and bf16 autocast are
reported as ratios against the full model in fp32 measured in the same run. The data
simulation alone is timed too (it bounds any model's throughput).

Usage: python benchmarks/bench_train.py [--device cpu|cuda] [--threads N] [--seconds 8]
       [--images DIR] [--json]
(On a GPU: python benchmarks/bench_train.py --device cuda --batch-full 16 --seconds 20.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch

from spkrecon.train.config import TrainConfig
from spkrecon.train.data import Mixture
from spkrecon.train.loss import hierarchical_loss

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "train"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(cfg: TrainConfig, device: torch.device, seconds: float,
               amp: torch.dtype | None, data: Mixture) -> dict[str, float]:
    from spkrecon.models.spk2imgnet import Spk2ImgNet, count_parameters

    torch.manual_seed(0)
    model = Spk2ImgNet(cfg.model_config()).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator(device=device)

    def step(i: int) -> None:
        g.manual_seed(i)
        b = data.sample(cfg.batch_size, g)
        x = b.spikes.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()
        with ctx:
            img, ests = model(x)
        loss, _ = hierarchical_loss(img, ests, b.gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        step(n + 1)
        n += 1
        _sync(device)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            break
    return {"parameters": count_parameters(model), "batch": cfg.batch_size, "steps": n,
            "samples_per_s": n * cfg.batch_size / dt}


def time_data(cfg: TrainConfig, device: torch.device, seconds: float, data: Mixture
              ) -> float:
    g = torch.Generator(device=device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        g.manual_seed(n)
        data.sample(cfg.batch_size, g)
        n += 1
    _sync(device)
    return n * cfg.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--images", default=str(SHARED_IMAGES))
    ap.add_argument("--batch-full", type=int, default=4, help="full model batch (CPU: small)")
    ap.add_argument("--batch-lite", type=int, default=16)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if not Path(args.images).is_dir():
        raise SystemExit(f"no images at {args.images}; pass --images DIR")

    base = TrainConfig(images=[args.images], patch=40, max_side=512)
    data = Mixture(base, device)
    rows: dict[str, dict[str, float]] = {}
    precisions: list[tuple[str, torch.dtype | None]] = [("fp32", None)]
    if not args.no_bf16:
        precisions.append(("bf16", torch.bfloat16))
    for model, batch in (("full", args.batch_full), ("lite", args.batch_lite)):
        cfg = TrainConfig(**{**base.to_dict(), "model": model, "batch_size": batch,
                             "video_steps_per_frame": (8.0, 40.0)})
        for pname, amp in precisions:
            rows[f"{model} {pname}"] = time_steps(cfg, device, args.seconds, amp, data)
    sim = time_data(TrainConfig(**{**base.to_dict(), "batch_size": 16}), device,
                    min(args.seconds, 4.0), data)
    ref = rows["full fp32"]["samples_per_s"]
    from spkrecon.train.checkpoint import machine

    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else machine())
    report = {"device": str(device), "device_name": device_name,
              "threads": torch.get_num_threads(), "patch": 40, "torch": torch.__version__,
              "models": {k: {**v, "vs_full_fp32": v["samples_per_s"] / ref}
                         for k, v in rows.items()},
              "simulation_samples_per_s": sim}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"training throughput on {device} ({device_name}, {report['threads']} threads), "
          f"40x40 patches, data simulated on the fly")
    for k, v in report["models"].items():
        print(f"  {k:10s} {v['parameters']:>9,} params  batch {v['batch']:>3}  "
              f"{v['samples_per_s']:8.2f} samples/s  x{v['vs_full_fp32']:.1f} vs full fp32")
    print(f"  simulation alone: {sim:.0f} samples/s")


if __name__ == "__main__":
    main()
