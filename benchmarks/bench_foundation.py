"""Foundation benchmarks: decoding, TFP/TFI throughput and `spkrecon video` peak memory.

Every figure is printed beside a baseline measured in the same run:

- decoding: spkrecon's streaming reader vs (a) a per-frame Python reader in the style of the
  Spk2ImgNet authors' loader (gather bytes, shift and mask per frame) and (b) one bulk
  ``np.unpackbits`` over the same bytes;
- TFP / TFI: output frames per second at stride 1, from the file to float frames, vs the
  decode-only rate;
- memory: peak resident set of ``spkrecon video`` on a large recording vs the peak of a Python
  process that only imports spkrecon and numpy.

Usage: python benchmarks/bench_foundation.py [--frames 4000] [--big-gb 2] [--json]
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

import numpy as np

from spkrecon.io import DatRecording, encode
from spkrecon.methods import create

H, W = 250, 400
FB = H * W // 8


def authors_style_decode(path: Path, n: int) -> np.ndarray:
    """Per-frame reader as in the Spk2ImgNet authors' ``RawToSpike`` (int64 comparator)."""
    seq = np.array(np.fromfile(path, dtype=np.uint8, count=n * FB)).astype(np.uint8)
    out = np.zeros((n, H, W), np.uint8)
    pix = np.arange(H * W).reshape(H, W)
    comparator = np.left_shift(1, np.mod(pix, 8))
    byte_id = pix // 8
    for i in range(n):
        cur = seq[i * FB:(i + 1) * FB]
        data = cur[byte_id]
        out[i] = np.flipud(np.bitwise_and(data, comparator) == comparator)
    return out


def bitshift_decode(path: Path, n: int) -> np.ndarray:
    """Per-frame reader that shifts each bit plane out of the bytes (SpikeCV's
    ``load_vidar_dat`` style)."""
    array = np.fromfile(path, dtype=np.uint8, count=n * FB)
    out = np.zeros((n, H, W), np.uint8)
    for i in range(n):
        compr = array[i * FB:(i + 1) * FB]
        planes = [np.right_shift(np.bitwise_and(compr, np.left_shift(1, b)), b) for b in range(8)]
        frame = np.stack(planes).transpose().reshape((H, W), order="C")
        out[i] = np.flipud(frame)
    return out


def make_recording(path: Path, frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    light = rng.random((H, W)) * 0.6
    acc = rng.random((H, W))
    with open(path, "wb") as f:
        block = 500
        for s in range(0, frames, block):
            n = min(block, frames - s)
            spikes = np.empty((n, H, W), np.uint8)
            for t in range(n):
                acc += light
                fired = acc >= 1
                acc[fired] -= 1
                spikes[t] = fired
            f.write(encode(spikes))


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_decode(path: Path, frames: int) -> dict:
    raw = np.fromfile(path, dtype=np.uint8)
    bulk = best_of(lambda: np.unpackbits(raw, bitorder="little"))
    rec = DatRecording(path)

    def stream() -> None:
        for _ in rec.iter_chunks(chunk=256):
            pass

    ours = best_of(stream)
    n_base = min(frames, 1000)
    base = best_of(lambda: authors_style_decode(path, n_base), repeat=1) * frames / n_base
    shift = best_of(lambda: bitshift_decode(path, n_base), repeat=1) * frames / n_base
    # Sanity: all agree on the bits.
    assert np.array_equal(rec.read(0, 5), authors_style_decode(path, 5))
    assert np.array_equal(rec.read(0, 5), bitshift_decode(path, 5))
    return {"frames": frames, "bulk_unpackbits_s": bulk, "spkrecon_stream_s": ours,
            "authors_style_s": base, "speedup_vs_authors": base / ours,
            "bitshift_style_s": shift, "speedup_vs_bitshift": shift / ours,
            "ratio_to_bulk": ours / bulk, "spkrecon_fps": frames / ours}


def bench_methods(path: Path, frames: int) -> dict:
    out = {}
    rec = DatRecording(path)
    for name in ("tfp", "tfi"):
        method = create(name, window=41)

        def run(method=method) -> None:
            for _ in method.stream(rec, range(frames)):
                pass

        dt = best_of(run, repeat=2)
        out[name] = {"seconds": dt, "fps": frames / dt}
    return out


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` in a fresh process; return (peak RSS in MB, wall seconds)."""
    code = ("import resource, subprocess, sys, time; t0 = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:]); dt = time.perf_counter() - t0; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, dt, r.returncode)")
    res = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True,
                         check=True)
    kb, dt, rc = res.stdout.split()
    if rc != "0":
        raise RuntimeError(f"{cmd} failed with {rc}")
    return int(kb) / 1024, float(dt)


def bench_memory(tmp: Path, gb: float, stride: int) -> dict:
    frames = int(gb * 1e9 // FB)
    big = tmp / "big.dat"
    make_recording(big, frames, seed=1) if frames <= 20000 else _tile(big, tmp, frames)
    exe = [sys.executable, "-m", "spkrecon"]
    base, _ = peak_rss_mb([sys.executable, "-c", "import numpy, spkrecon.cli, spkrecon.io"])
    video, dt = peak_rss_mb([*exe, "video", str(big), "-o", str(tmp / "big.mp4"), "-m", "tfp",
                             "--stride", str(stride), "-q", "--force"])
    return {"recording_gb": big.stat().st_size / 1e9, "frames": frames, "stride": stride,
            "video_peak_rss_mb": video, "baseline_import_rss_mb": base, "video_seconds": dt}


def _tile(big: Path, tmp: Path, frames: int) -> None:
    unit = tmp / "unit.dat"
    make_recording(unit, 2000, seed=2)
    data = unit.read_bytes()
    with open(big, "wb") as f:
        for s in range(0, frames, 2000):
            f.write(data[: min(2000, frames - s) * FB])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=4000)
    ap.add_argument("--big-gb", type=float, default=2.0, help="0 skips the memory benchmark")
    ap.add_argument("--stride", type=int, default=50, help="video stride on the big file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        path = tmp / "bench.dat"
        make_recording(path, args.frames)
        results["decode"] = bench_decode(path, args.frames)
        results["methods"] = bench_methods(path, args.frames)
        if args.big_gb > 0:
            results["memory"] = bench_memory(tmp, args.big_gb, args.stride)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    d = results["decode"]
    print(f"decode {d['frames']} frames of {H}x{W}:")
    print(f"  authors-style per-frame reader  {d['authors_style_s']:8.3f} s")
    print(f"  bit-shifting per-frame reader    {d['bitshift_style_s']:8.3f} s")
    print(f"  bulk np.unpackbits               {d['bulk_unpackbits_s']:8.3f} s")
    print(f"  spkrecon streaming reader        {d['spkrecon_stream_s']:8.3f} s "
          f"({d['spkrecon_fps']:.0f} frames/s; {d['speedup_vs_authors']:.1f}x authors-style, "
          f"{d['speedup_vs_bitshift']:.1f}x bit-shifting, "
          f"{d['ratio_to_bulk']:.2f}x bulk)")
    for name, m in results["methods"].items():
        print(f"{name.upper()} stride 1, file -> float frames: {m['fps']:.0f} frames/s "
              f"(decode alone: {d['spkrecon_fps']:.0f})")
    if "memory" in results:
        m = results["memory"]
        print(f"spkrecon video on {m['recording_gb']:.2f} GB ({m['frames']} frames, stride "
              f"{m['stride']}): peak RSS {m['video_peak_rss_mb']:.0f} MB in "
              f"{m['video_seconds']:.0f} s (baseline import-only process: "
              f"{m['baseline_import_rss_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
