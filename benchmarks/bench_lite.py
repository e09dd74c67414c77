"""Speed of the CPU networks (``spk2imgnet-lite``; ``--methods`` adds others, e.g.
``atsnet``) on the bundled 250x400 sample, in the same run.

1. Seconds per output frame in steady state (stride 1, the default of ``video``/``frames``),
   for each ``--threads`` count: ``--frames`` frames after ``--warmup`` frames, reconstructed
   through ``spkrecon.pipeline.reconstruct`` with the shipped weights (a method that works in
   chunks and shares work within one, such as ``atsnet``, reconstructs the ``--frames``
   frames as one chunk after a warm-up chunk: give it 16 or more; ``video`` reads chunks of
   64); the best of
   ``--rounds`` rounds is kept (the development machine is shared). Beside the wall time,
   the process's CPU time per frame: on one thread it is what the wall time would be on an
   idle machine, and it moves far less with other work on the machine.
2. With ``--main-job``: the wall time of the README's quick-start job,
   ``spkrecon video sample -o sample.mp4`` (all 240 frames, ``--method auto``), run as a
   subprocess with torch's default threads.

The load average before and after each part is printed beside the figures: on a shared
machine they move with it.

    python benchmarks/bench_lite.py [--threads 1 2] [--frames 6] [--methods M ...] [--main-job]
                                    [--json]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on every platform
        return float("nan")


def per_frame(threads: int, frames: int, warmup: int, rounds: int,
              method: str = "spk2imgnet-lite", params: dict[str, str] | None = None
              ) -> tuple[float, float]:
    import torch

    from spkrecon.io import open_recording
    from spkrecon.methods import Reconstructor, create
    from spkrecon.pipeline import reconstruct
    from spkrecon.tonemap import ToneMapper

    torch.set_num_threads(threads)
    src = open_recording("sample")
    best, cpu = float("inf"), float("inf")
    for _ in range(rounds):
        rec = create(method, **(params or {}))
        if type(rec).stream is Reconstructor.stream:
            # The base stream reconstructs up to batch_frames frames per chunk and shares
            # work within it (atsnet: its ChunkFeatures), so the timed frames are one chunk
            # after a warm-up chunk, as `video` reads them (in chunks of batch_frames).
            rec.batch_frames = frames
            for _ in reconstruct(src, rec, range(60, 60 + warmup), ToneMapper("auto")):
                pass
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in reconstruct(src, rec, range(60 + warmup, 60 + warmup + frames),
                                 ToneMapper("auto")):
                pass
        else:
            stream = reconstruct(src, rec, range(60, 60 + warmup + frames), ToneMapper("auto"))
            for _ in range(warmup):
                next(stream)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(frames):
                next(stream)
        best = min(best, (time.perf_counter() - t0) / frames)
        cpu = min(cpu, (time.process_time() - c0) / frames)
    return best, cpu


def main_job() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spkrecon", "video", "sample", "-o",
                        str(Path(tmp) / "sample.mp4"), "-q"], check=True, cwd=ROOT)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=["spk2imgnet-lite"],
                        help="methods timed in the same run, NAME or NAME:weights=PATH "
                             "(e.g. spk2imgnet-lite atsnet:weights=training/atsnet/best.pt)")
    parser.add_argument("--main-job", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import torch

    from spkrecon.train.checkpoint import machine

    out: dict[str, object] = {"machine": machine(), "torch": torch.__version__,
                              "frames": args.frames, "per_frame_s": {}}
    for spec in args.methods:
        name, *pairs = spec.split(":")
        params = dict(p.split("=", 1) for p in pairs)
        for n in args.threads:
            before = load()
            s, cpu = per_frame(n, args.frames, args.warmup, args.rounds, name, params)
            key = str(n) if spec == "spk2imgnet-lite" else f"{spec} {n}"
            out["per_frame_s"][key] = {"seconds": round(s, 3), "cpu_seconds": round(cpu, 3),
                                       "load": [before, load()]}
            if not args.json:
                print(f"{spec}, 250x400, stride 1, {n} thread(s): {s:.2f} s/frame, CPU "
                      f"{cpu:.2f} s/frame (load {before} -> {load()})", flush=True)
    if args.main_job:
        before = load()
        s = main_job()
        out["main_job_s"] = {"seconds": round(s, 1), "load": [before, load()]}
        if not args.json:
            print(f"spkrecon video sample -o sample.mp4: {s:.0f} s (load {before} -> {load()})")
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"machine: {out['machine']}; torch {out['torch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
