"""Spike camera simulator throughput at 250x400, in readout steps per second.

Every figure is printed beside a baseline measured in the same run: a plain numpy
integrate-and-fire loop over the same still image (the loop the tests' ``rate_spikes`` uses,
no motion, no noise). Measured:

- core: ``SpikeCamera.integrate`` on precomputed light, noise off and realistic;
- render: ``MotionScene.light_at`` for a still under a random camera path, and for the
  bundled sample's scene (camera + a car and a ball);
- end to end: ``stream_to_dat`` of the sample scene into a ``.dat`` (render + sensor + encode +
  write), noise off and realistic;
- training batch: ``training_batch`` of 16 x 41 steps of 40x40 patches, in samples per second.

The best of ``--rounds`` rounds is kept (the development machine is shared).

Usage: python benchmarks/bench_simulate.py [--steps 128] [--rounds 3] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

H, W = 250, 400


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_loop(intensity: np.ndarray, steps: int, alpha: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(0)
    acc = rng.random(intensity.shape)
    out = np.zeros((steps, *intensity.shape), np.uint8)
    for t in range(steps):
        acc += alpha * intensity
        fired = acc >= 1.0
        acc[fired] -= 1.0
        out[t] = fired
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from spkrecon.simulate import (
        MotionConfig,
        NoiseModel,
        SpikeCamera,
        make_generator,
        prepare_background,
        random_motion_scene,
        training_batch,
    )
    from spkrecon.simulate.runner import stream_to_dat
    from spkrecon.simulate.synthetic import sample_scene, street_scene

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    n = args.steps
    img = street_scene(H, W, 1)
    results: dict[str, float] = {}

    base = best(lambda: numpy_loop(img.numpy().astype(np.float64), n), args.rounds)
    results["numpy_loop_baseline"] = n / base

    light = img.to(dev)[None, None].expand(1, n, H, W).contiguous()
    for name, noise in (("core_noise_off", None), ("core_noise_realistic", NoiseModel())):
        cam = SpikeCamera(1, H, W, noise=noise, generator=make_generator(0, dev), device=dev)
        cam.integrate(light[:, :8])  # warm-up
        results[name] = n / best(lambda c=cam: c.integrate(light), args.rounds)

    t = torch.arange(n, dtype=torch.float64)
    bg = prepare_background(street_scene(300, 480, 2).to(dev), (H, W))
    still = random_motion_scene(bg[None], (H, W), 10 * n, MotionConfig(objects=(0, 0)),
                                make_generator(0, dev))
    sample = sample_scene(0, (H, W), 10 * n).to(dev)
    for name, scene in (("render_camera_path", still), ("render_sample_scene", sample)):
        scene.light_at(t[:8])
        results[name] = n / best(
            lambda s=scene: [s.light_at(t[i:i + 16]) for i in range(0, n, 16)], args.rounds)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "b.dat"
        scene = sample_scene(0, (H, W), n).to(dev)
        for name, noise in (("end_to_end_sample", None),
                            ("end_to_end_sample_realistic", NoiseModel())):
            results[name] = n / best(lambda nz=noise: stream_to_dat(
                scene, n, out, noise=nz, generator=make_generator(1, dev), chunk=16),
                args.rounds)

    imgs = [street_scene(160, 200, s) for s in range(4)]
    results["training_batch_samples_per_s"] = 16 / best(
        lambda: training_batch(imgs, 16, generator=make_generator(0, dev), device=dev),
        args.rounds)

    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in results.items()}, indent=2))
        return
    print(f"simulator throughput at {H}x{W}, {n} steps, torch threads "
          f"{torch.get_num_threads()}, device {dev}")
    for k, v in results.items():
        unit = "samples/s" if k.endswith("per_s") else "steps/s"
        ratio = "" if k.startswith("numpy") or unit != "steps/s" else \
            f"  ({v / results['numpy_loop_baseline']:.2f}x the numpy loop)"
        print(f"  {k:32s} {v:10.1f} {unit}{ratio}")


if __name__ == "__main__":
    main()
