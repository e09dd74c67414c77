"""The project's evaluation suites: build the speed, light and video suites, score every method.

Builds (or reuses, when ``--out`` already holds the same suite) seeded suites of recordings
with ground truth from the held-out images of ``--images`` and the held-out clips of
``--videos`` (``spkrecon.suites``: ``zlib.crc32(name) % 8 == 0``), simulated by spkrecon's
own sensor model:

- speed: camera pans and moving sprites at 0, 0.15, 0.5, 1, 2 and 4 px per readout step,
  normal light, 257 frames, key frame index 128;
- light: 0.3, 0.1 and 0.03 spikes per pixel per frame, 0-0.2 px per step, 401 frames, key
  frame index 200;
- video: real motion from video clips at 40, 32, 16 and 10 readout steps per video frame
  (flow-interpolated), normal light, 257 frames, key frame index 128;
- detail and turn: the speed suite's slow half over denser detail, and motion that turns at
  the key frame;
- redslike: the video suite's clips shrunk to REDS's density, the key frame an original
  frame (16 and 8 steps per video frame).

Every method (``--methods all``: every registered one; a method that cannot run, such as
``spk2imgnet`` without weights, is skipped with its reason; ``tfp:window=201`` adds a
variant) is scored at the key frame: PSNR and SSIM of ``clip(rate / alpha, 0, 1) / k``
against ``light / k``. Writes markdown tables (``--markdown``), the two plots (``--plots``:
``suite_speed.png``, ``suite_light.png``) and every per-recording score (``--json``).
See docs/results.md, "The project's suites".

Usage: python benchmarks/eval_suites.py [--images DIR] [--videos DIR] [--out DIR]
       [--methods all|a,b] [--per-condition 6] [--size 128x160] [--seed 0]
       [--suites speed,light,video,detail,turn,redslike]
       [--noise off|realistic] [--markdown FILE] [--plots DIR] [--json FILE] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 128x160, got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared/data/images/train",
                    help="folder of images; only its held-out ones are used")
    ap.add_argument("--videos", type=Path, default=ROOT.parent / "shared/data/videos",
                    help="folder of clip folders (numbered frames); only held-out clips are "
                         "used (the video suite)")
    ap.add_argument("--out", type=Path, default=ROOT / "scratch/suites",
                    help="where the suites' recordings go (reused when identical)")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--per-condition", type=int, default=6)
    ap.add_argument("--size", type=parse_size, default=(128, 160), help="H x W")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--suites", default="speed,light,video,detail,turn,redslike")
    ap.add_argument("--noise", default="off", choices=("off", "realistic"),
                    help="sensor noise (default off, as 'spkrecon simulate')")
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--plots", type=Path, default=None, help="folder for the two PNG plots")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from spkrecon import suites as S
    from spkrecon.errors import SpkreconError

    torch.set_num_threads(max(1, args.threads))
    console = Console(stderr=True, highlight=False)
    t_start = time.perf_counter()
    try:
        names = [s.strip() for s in args.suites.split(",") if s.strip()]
        bad = [s for s in names if s not in S.SUITE_NAMES]
        if bad or not names:
            raise SpkreconError(f"unknown suite(s) {', '.join(bad) or '(none)'}",
                                f"use {', '.join(S.SUITE_NAMES)}")
        methods = S.parse_methods(args.methods)
        images = S.holdout_images(args.images)
        if len(images) < 3:
            raise SpkreconError(f"{args.images} holds {len(images)} held-out image(s); the "
                                "suites need at least 3")
        clips: list[Path] = []
        if any(n in S.VIDEO_SUITES for n in names):
            clips = S.holdout_clips(args.videos) if args.videos.is_dir() else []
            if not clips:
                raise SpkreconError(f"{args.videos} holds no held-out video clips",
                                    "pass --videos DIR, or --suites speed,light,detail,turn")
        makers = {"speed": S.speed_suite, "light": S.light_suite, "video": S.video_suite,
                  "redslike": S.redslike_suite,
                  "detail": S.detail_suite, "turn": S.turn_suite}
        specs = [makers[n](args.per_condition, args.size, args.seed, args.noise) for n in names]
        built = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn())
        build_seconds = {}
        with Progress(*columns, console=console) as progress:
            for spec in specs:
                task = progress.add_task(f"building {spec.name}", total=None)

                def start(n: int, reused: bool, task: int = task, name: str = spec.name) -> None:
                    progress.update(task, total=n,
                                    description=f"{'reusing' if reused else 'building'} {name}")

                t0 = time.perf_counter()
                built.append(S.build_suite(spec, clips if spec.name in S.VIDEO_SUITES else images,
                                           args.out,
                                           advance=lambda k, task=task: progress.advance(task, k),
                                           on_start=start))
                build_seconds[spec.name] = round(time.perf_counter() - t0, 1)
            total = sum(len(meta["recordings"]) for _, meta in built) * len(methods)
            task = progress.add_task("scoring", total=total)
            result = S.score_suites(
                built, methods, advance=lambda k: progress.advance(task, k),
                on_method=lambda m: progress.update(task, description=f"scoring {m}"))
    except SpkreconError as exc:
        console.print(f"error: {exc}", soft_wrap=True)
        return 2
    result["build_seconds"] = build_seconds
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["suites"] = {meta["spec"]["name"]: {"folder": str(folder), "hash": meta["hash"],
                                                "spec": meta["spec"], "noise": meta["noise"],
                                                "recordings": meta["recordings"]}
                        for folder, meta in built}
    result["machine"] = {"threads": args.threads, "python": platform.python_version(),
                         "torch": torch.__version__}
    text = S.markdown_tables(result, [m["spec"]["name"] for _, m in built])
    for label, info in result["methods"].items():
        if "skipped" in info:
            console.print(f"skipped {label}: {info['skipped']}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if args.plots is not None:
        for p in S.plot_curves(result, args.plots):
            console.print(f"wrote {p}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    console.print(f"total {result['seconds']:.0f} s (building {build_seconds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
