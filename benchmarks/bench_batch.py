"""Batch throughput: ``spkrecon batch video`` on many short recordings, --jobs 1 against 2.

The recordings are 60-frame pieces of the bundled 250x400 sample (which spkrecon's
simulator made), each starting at another frame, so that every one is different. Each
configuration runs the real command line in a fresh output folder (start-up, the method's
loading, H.264 encoding and the manifest included), best of ``--repeat``; the table gives
recordings and frames per second of wall-clock time, the speed-up over --jobs 1, and the
largest peak resident memory of one worker (from the manifest's ``peak_rss_mb``).

TFP runs on 20 recordings; the default learned method (``--method auto``: the lite network
on a CPU, Spk2ImgNet on a GPU with its weights) on 4. The load average before and after each
row is printed, because other work on the machine moves the figures.

Usage: python benchmarks/bench_batch.py [--tfp 20] [--learned 4] [--frames 60]
       [--jobs 1 2] [--learned-jobs 1 2] [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spkrecon.io import sample_path

FRAME_BYTES = 250 * 400 // 8


def make_recordings(folder: Path, count: int, frames: int) -> None:
    """``count`` pieces of ``frames`` frames of the sample, starting at spread-out frames."""
    data = sample_path().read_bytes()
    total = len(data) // FRAME_BYTES
    span = total - frames
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        start = (i * span) // max(1, count - 1) if count > 1 else 0
        piece = data[start * FRAME_BYTES:(start + frames) * FRAME_BYTES]
        (folder / f"rec{i:03d}.dat").write_bytes(piece)


def run(folder: Path, method: str, jobs: int, repeat: int, work: Path) -> dict:
    best: dict | None = None
    for k in range(repeat):
        out = work / f"out-{method}-{jobs}-{k}"
        cmd = [sys.executable, "-m", "spkrecon", "batch", "video", str(folder), "-o",
               str(out), "-m", method, "--jobs", str(jobs), "--json", "-q"]
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True,
                           env={**os.environ, "SPKRECON_PROGRESS": "0"})
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
        report = json.loads(r.stdout)
        rows = report["recordings"]
        row = {"method": report["method"], "requested": method, "jobs": jobs,
               "threads": report["threads"], "recordings": len(rows),
               "frames": report["frames"], "wall_s": round(wall, 2),
               "recordings_per_s": round(len(rows) / wall, 3),
               "frames_per_s": round(report["frames"] / wall, 2),
               "peak_rss_mb": max(x.get("peak_rss_mb") or 0 for x in rows),
               "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}
        if best is None or row["wall_s"] < best["wall_s"]:
            best = row
    assert best is not None
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tfp", type=int, default=20, help="TFP recordings (0: skip)")
    ap.add_argument("--learned", type=int, default=4, help="auto-method recordings (0: skip)")
    ap.add_argument("--frames", type=int, default=60, help="frames per recording")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="TFP --jobs values")
    ap.add_argument("--learned-jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plan = [("tfp", args.tfp, args.jobs), ("auto", args.learned, args.learned_jobs)]
        for method, count, jobs_list in plan:
            if count <= 0:
                continue
            folder = work / f"in-{method}"
            make_recordings(folder, count, args.frames)
            base = None
            for jobs in jobs_list:
                row = run(folder, method, jobs, args.repeat, work)
                base = base or row["wall_s"]
                row["speedup"] = round(base / row["wall_s"], 2)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "rows": rows}, indent=2))
        return
    print(f"machine: {os.cpu_count()} cores; {args.frames}-frame 250x400 recordings, "
          "wall clock of the whole command")
    print("| method | recordings | --jobs x threads | wall | recordings/s | frames/s | "
          "vs --jobs 1 | peak memory / worker | load avg before, after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = r["method"] + (" (auto)" if r["requested"] == "auto" else "")
        print(f"| {name} | {r['recordings']} | {r['jobs']} x {r['threads'] or 'all'} | "
              f"{r['wall_s']:.1f} s | {r['recordings_per_s']:.2f} | {r['frames_per_s']:.1f} | "
              f"{r['speedup']:.2f}x | {r['peak_rss_mb']:.0f} MB | "
              f"{r['load_before']:.1f}, {r['load_after']:.1f} |")


if __name__ == "__main__":
    main()
