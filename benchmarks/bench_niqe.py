"""NIQE throughput on 250x400 frames: batched vs one frame at a time, on CPU (and CUDA).

The baseline, measured in the same run, is scoring the same frames one by one (batch size 1);
each batch size is reported as frames/s and as a ratio to it, the sizes interleaved and the
best of several rounds kept (the development machine is shared). With a CUDA device the GPU
is measured too and its scores are compared with the CPU's.

Frames are TFP reconstructions of the bundled-style simulation of a textured scene (made
here, so the benchmark needs no shared data), tone-mapped to [0, 1].

Usage: python benchmarks/bench_niqe.py [--frames 32] [--batches 1,4,16] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

H, W = 250, 400


def make_frames(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 250, 400)`` float32 TFP reconstructions (41-frame window) of a moving texture."""
    from spkrecon.methods import create

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = 0.5 + 0.3 * np.sin(xx / 11.0) * np.cos(yy / 17.0) + 0.1 * rng.random((H, W))
    steps = n + 40
    acc = rng.random((H, W))
    spikes = np.zeros((steps, H, W), np.uint8)
    for t in range(steps):
        scene = np.clip(np.roll(base, t // 4, axis=1), 0, 1)
        acc += 0.6 * scene
        fired = acc >= 1
        acc[fired] -= 1
        spikes[t] = fired
    rates = create("tfp", window=41)(spikes, range(20, 20 + n))
    return np.clip(rates / 0.6, 0, 1).astype(np.float32)


def measure(metric, frames: np.ndarray, batches: list[int], rounds: int = 3
            ) -> tuple[dict[int, float], dict[int, np.ndarray]]:
    """Best-of-``rounds`` frames/s per batch size, the sizes interleaved in each round so that
    load from other processes hits them alike; and the scores per batch size."""
    best = {b: 0.0 for b in batches}
    scores: dict[int, np.ndarray] = {}
    for _ in range(rounds):
        for b in batches:
            t0 = time.perf_counter()
            scores[b] = metric.score(frames, batch_size=b)
            if metric.device_name.startswith("cuda"):
                import torch

                torch.cuda.synchronize()
            best[b] = max(best[b], len(frames) / (time.perf_counter() - t0))
    return best, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batches", default="1,4,16", help="batch sizes; the first is the "
                        "baseline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import os

    import torch

    from spkrecon.metrics.niqe import create_niqe

    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    frames = make_frames(args.frames)
    report: dict[str, object] = {
        "frame_size": f"{H}x{W}", "frames": args.frames, "cpu_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ref_scores = None
    for dev in devices:
        metric = create_niqe(dev)
        metric.score(frames[:2], batch_size=2)  # warm-up
        fps, scores = measure(metric, frames, batches, args.rounds)
        base = batches[0]
        for b in batches:
            report[f"{dev}_batch{b}_fps"] = round(fps[b], 2)
            if b != base:
                report[f"{dev}_batch{b}_vs_batch{base}"] = round(fps[b] / fps[base], 2)
        report[f"{dev}_max_abs_diff_between_batch_sizes"] = float(max(
            np.max(np.abs(scores[b] - scores[base])) for b in batches))
        if ref_scores is None:
            ref_scores = scores[base]
            report["mean_niqe"] = round(float(np.mean(ref_scores)), 4)
        else:
            report[f"{dev}_max_abs_diff_vs_cpu"] = float(np.max(np.abs(scores[base]
                                                                        - ref_scores)))
            report[f"{dev}_best_vs_cpu_best"] = round(
                max(fps.values()) / max(report[f"cpu_batch{b}_fps"] for b in batches), 2)
            report["gpu"] = torch.cuda.get_device_name(0)
    report["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for k, v in report.items():
        print(f"{k:36s} {v}")


if __name__ == "__main__":
    main()
