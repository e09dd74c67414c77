"""Spk2ImgNet inference speed: block reuse against the plain per-frame forward pass.

Both run in the same process on the same synthetic recording (random weights in spkrecon's
format; speed does not depend on the weights' values):

1. components at full size (250x400 by default): seconds to encode one 13-frame block (SALI,
   feature extractor, pyramid) and to fuse one output frame (alignment, reliability,
   fusion). Per output frame in steady state, the plain forward pass costs
   ``5 * block + fuse`` and block reuse ``block + fuse``, at stride 1 and at stride 7
   (each block serves five output frames in both cases);
2. end to end through the reconstructor, on a smaller frame (64x100 by default) so that
   enough output frames fit in a few minutes: seconds per frame, speed-up, blocks encoded,
   and the largest difference between the two outputs (must be below 1e-5);
3. end to end at full size for a few frames at stride 7 (``--full-frames7``, default 3) and
   optionally at stride 1 (``--full-frames1``; at stride 1 reuse pays off only beyond 7
   consecutive output frames: the first seven need five blocks of their own each).

About 4 minutes on a busy 2-core machine with the defaults::

    python benchmarks/bench_spk2imgnet.py [--json] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_spikes(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Integrate-and-fire spikes of a texture drifting 0.5 px per frame (alpha 0.6)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    acc = rng.random((height, width), dtype=np.float32)
    out = np.empty((frames, height, width), np.uint8)
    for t in range(frames):
        xs = x - 0.5 * t
        inten = 0.5 + 0.25 * np.sin(xs / 7.0) * np.cos(y / 11.0) + 0.2 * np.sin(xs / 2.3)
        acc += 0.6 * np.clip(inten, 0, 1)
        fired = acc >= 1.0
        acc[fired] -= 1.0
        out[t] = fired
    return out


def make_weights(folder: Path) -> Path:
    import torch

    from spkrecon.models import weights as W
    from spkrecon.models.spk2imgnet import ModulatedDeformConv, Spk2ImgNet, Spk2ImgNetConfig

    torch.manual_seed(0)
    cfg = Spk2ImgNetConfig()
    net = Spk2ImgNet(cfg)
    for mod in net.modules():
        if isinstance(mod, ModulatedDeformConv):
            torch.nn.init.normal_(mod.conv_offset_mask.weight, std=0.01)
    ckpt = W.Checkpoint(net.state_dict(), cfg.to_dict(), 0.6,
                        W.make_meta(training_data="random weights (benchmark)"))
    return W.save_checkpoint(ckpt, folder / "bench.pt")


def components(method, height: int, width: int, repeat: int) -> dict[str, float]:
    """Median seconds of one block encode and one output fuse at ``height x width``."""
    import torch

    hp, wp = -(-height // 4) * 4, -(-width // 4) * 4
    spikes = torch.from_numpy(synthetic_spikes(13, hp, wp)).float()[None].to(method._dev)
    enc, fuse = [], []
    with torch.inference_mode(), method._autocast():
        for _ in range(repeat):
            t0 = time.perf_counter()
            feats = method._encode(method._prep(spikes))
            enc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            method._fuse([feats] * 5)
            fuse.append(time.perf_counter() - t0)
    b, f = statistics.median(enc), statistics.median(fuse)
    return {"block_s": b, "fuse_s": f, "naive_s_per_frame": 5 * b + f,
            "reuse_s_per_frame": b + f, "speedup": (5 * b + f) / (b + f)}


def end_to_end(weights: Path, spikes: np.ndarray, stride: int, frames: int,
               opts: dict) -> dict[str, float]:
    from spkrecon.io import ArraySource
    from spkrecon.methods.spk2imgnet import Spk2ImgNet

    start = 20
    idx = list(range(start, start + stride * frames, stride))
    src = ArraySource(spikes)
    res: dict[str, float] = {"stride": stride, "frames": len(idx)}
    outs = {}
    for label, reuse in (("naive", False), ("reuse", True)):
        m = Spk2ImgNet(weights=str(weights), reuse=reuse, **opts)
        t0 = time.perf_counter()
        outs[label] = np.stack([r for _, r in m.stream(src, idx)])
        dt = time.perf_counter() - t0
        res[f"{label}_s_per_frame"] = dt / len(idx)
        res[f"{label}_blocks"] = m.counts["blocks"]
    res["speedup"] = res["naive_s_per_frame"] / res["reuse_s_per_frame"]
    res["max_abs_diff"] = float(np.abs(outs["naive"] - outs["reuse"]).max())
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=250)
    ap.add_argument("--width", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=2, help="component timings (median)")
    ap.add_argument("--small-height", type=int, default=64)
    ap.add_argument("--small-width", type=int, default=100)
    ap.add_argument("--frames1", type=int, default=42, help="end-to-end output frames, stride 1")
    ap.add_argument("--frames7", type=int, default=8, help="end-to-end output frames, stride 7")
    ap.add_argument("--full-frames1", type=int, default=0)
    ap.add_argument("--full-frames7", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a busy 2-core machine 2 threads "
                    "were several times slower; 0 = torch's default)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    ap.add_argument("--json", action="store_true", help="print JSON on stdout")
    args = ap.parse_args(argv)
    if args.quick:
        args.height, args.width, args.repeat = 48, 64, 1
        args.small_height, args.small_width, args.frames1, args.frames7 = 24, 32, 14, 3
        args.full_frames1 = args.full_frames7 = 0

    import torch

    from spkrecon.methods.spk2imgnet import Spk2ImgNet

    if args.threads:
        torch.set_num_threads(args.threads)
    opts = {"device": args.device, "precision": args.precision,
            "channels_last": args.channels_last, "compile": args.compile, "batch_size": 1}
    report: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()[0],
                    **{k: v for k, v in opts.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        weights = make_weights(Path(tmp))
        m = Spk2ImgNet(weights=str(weights), **opts)
        report["device"] = m.device
        report["components"] = {"height": args.height, "width": args.width,
                                **components(m, args.height, args.width, args.repeat)}
        runs = []
        for h, w, sizes in ((args.small_height, args.small_width,
                             ((1, args.frames1), (7, args.frames7))),
                            (args.height, args.width,
                             ((1, args.full_frames1), (7, args.full_frames7)))):
            sizes = [(s, n) for s, n in sizes if n > 0]
            if not sizes:
                continue
            total = max(s * n for s, n in sizes) + 41
            spikes = synthetic_spikes(total, h, w, seed=1)
            for stride, n in sizes:
                runs.append({"height": h, "width": w,
                             **end_to_end(weights, spikes, stride, n, opts)})
        report["end_to_end"] = runs
    report["load_avg_end"] = os.getloadavg()[0]

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        c = report["components"]
        print(f"Spk2ImgNet on {report['device']} ({report['threads']} threads, "
              f"{args.precision}, load {report['load_avg']:.1f} -> {report['load_avg_end']:.1f})")
        print(f"components at {c['height']}x{c['width']}: block {c['block_s']:.2f} s, "
              f"fuse {c['fuse_s']:.2f} s")
        print(f"  steady state s/frame (stride 1 and 7): naive {c['naive_s_per_frame']:.2f}, "
              f"reuse {c['reuse_s_per_frame']:.2f}, speed-up x{c['speedup']:.2f}")
        print(f"{'size':>9} {'stride':>6} {'frames':>6} {'naive s/fr':>10} {'reuse s/fr':>10} "
              f"{'speed-up':>8} {'blocks n/r':>11} {'max diff':>9}")
        for r in runs:
            print(f"{r['height']:>4}x{r['width']:<4} {r['stride']:>6} {r['frames']:>6} "
                  f"{r['naive_s_per_frame']:>10.3f} {r['reuse_s_per_frame']:>10.3f} "
                  f"{r['speedup']:>7.2f}x {r['naive_blocks']:>5}/{r['reuse_blocks']:<5} "
                  f"{r['max_abs_diff']:>9.1e}")
    bad = [r for r in report["end_to_end"] if r["max_abs_diff"] > 1e-5]
    if bad:
        print("FAIL: block reuse changed the output by more than 1e-5", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
