"""TVS and TFSTP throughput: output frames per second at 250x400, beside TFP in the same run.

Every method reconstructs every frame of the same recording (stride 1), from the file to float
rate frames, one after the other in one process, best of ``--repeat`` runs; the table gives
frames per second from wall-clock time and from the process's CPU time (steadier when other
jobs share the machine), each with its ratio to TFP (window 41), the baseline. TVS's time
includes its background-statistics passes (up to 500 frames, done once per run). The min-cut
rows add how many frames needed a max-flow.

The default recording is synthetic (written to a temporary ``.dat``): a still texture with a
bright disc crossing it, integrate-and-fire at alpha = 0.6 with sub-frame motion, so the
motion layer has work to do. ``--recording car.dat`` measures a real file instead.

Usage: python benchmarks/bench_tvs_tfstp.py [--frames 300] [--recording PATH] [--repeat 3]
       [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from spkrecon.io import encode, open_recording
from spkrecon.methods import create

H, W = 250, 400


def make_recording(path: Path, frames: int, seed: int = 0) -> None:
    """Still texture in [0.1, 0.6] plus a bright disc (radius 30) moving 0.5 px per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    texture = 0.1 + 0.5 * rng.random((H // 10 + 1, W // 10 + 1))
    texture = np.kron(texture, np.ones((10, 10)))[:H, :W]
    acc = rng.random((H, W))
    out = np.empty((frames, H, W), np.uint8)
    for t in range(frames):
        cx, cy = 60 + 0.5 * t, 125
        inside = np.clip(30.5 - np.hypot(xx - cx, yy - cy), 0, 1)  # anti-aliased edge
        acc += 0.6 * (texture * (1 - inside) + 0.95 * inside)
        fired = acc >= 1.0
        acc[fired] -= 1.0
        out[t] = fired
    path.write_bytes(encode(out))


def measure(path: Path, name: str, params: dict, frames: int, repeat: int) -> dict:
    """Best of ``repeat`` runs: wall-clock and CPU-time frames per second."""
    best_wall = best_cpu = float("inf")
    count = 0
    method = create(name, **params)
    for _ in range(repeat):
        src = open_recording(path)
        method = create(name, **params)
        n = min(frames, src.num_frames)
        w0, c0 = time.perf_counter(), time.process_time()
        count = sum(1 for _ in method.stream(src, range(n)))
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        src.close()
    row = {"method": name, "params": params, "frames": count,
           "seconds": round(best_wall, 3), "fps": round(count / best_wall, 1),
           "cpu_fps": round(count / best_cpu, 1)}
    stats = getattr(method, "cut_stats", None)
    if stats is not None and params.get("mode", "paper") == "paper":
        row["max_flows"] = stats["solved"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--recording", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="runs per method; the best counts")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs = [
        ("tfp", {"window": 41}),
        ("tfstp", {}),
        ("tvs", {"mode": "camera_moving"}),
        ("tvs", {}),
        ("tvs", {"cut_every": 2}),
        ("tvs", {"cut_every": 4}),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.recording
        if path is None:
            path = Path(tmp) / "bench.dat"
            make_recording(path, args.frames)
        rows = [measure(path, name, params, args.frames, args.repeat) for name, params in runs]
    base, base_cpu = rows[0]["fps"], rows[0]["cpu_fps"]
    for row in rows:
        row["vs_tfp"] = round(row["fps"] / base, 3)
        row["cpu_vs_tfp"] = round(row["cpu_fps"] / base_cpu, 3)
    if args.json:
        print(json.dumps({"recording": str(args.recording or "synthetic"), "rows": rows},
                         indent=2))
        return
    print(f"recording: {args.recording or 'synthetic 250x400 (moving disc)'}, "
          f"{rows[0]['frames']} output frames each")
    print(f"best of {args.repeat}; fps from wall-clock time, cpu fps from this process's CPU time")
    print(f"{'method':<32}{'fps':>8}{'x TFP':>8}{'cpu fps':>9}{'x TFP':>8}{'max-flows':>11}")
    for row in rows:
        label = row["method"] + "".join(f" {k}={v}" for k, v in row["params"].items())
        print(f"{label:<32}{row['fps']:>8.1f}{row['vs_tfp']:>8.3f}{row['cpu_fps']:>9.1f}"
              f"{row['cpu_vs_tfp']:>8.3f}{row.get('max_flows', ''):>11}")


if __name__ == "__main__":
    main()
