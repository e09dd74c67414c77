"""The car of the bundled sample, reconstructed by several methods: docs/img/sample_car.png.

Reconstructs the sample's key frame (121, 1-based: 0-based 120, the frame ``sample_gt.png``
holds) with each method, scores the whole frame against ``sample_gt.png`` (PSNR of
``clip(rate / 0.6, 0, 1)``, as tests/train/test_shipped_scores.py does) and writes one image:
the ground truth and each method's crop of the passing car (moving at 1 px per readout step,
lettering "SPKRECON" on its side), upscaled 2x without smoothing, labelled with the
full-frame PSNR.

Usage: python benchmarks/make_sample_grid.py [--methods tfi spk2imgnet-lite atsnet:weights=F]
       [--out docs/img/sample_car.png] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: The car and its lettering at the key frame (rows, columns of the 250x400 frame).
CROP = (slice(128, 228), slice(96, 266))
KEY = 120


def main() -> None:
    import torch

    from spkrecon.io import open_recording
    from spkrecon.methods import create
    from spkrecon.metrics.psnr import psnr
    from spkrecon.scoring import load_image
    from spkrecon.suites import parse_methods

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["tfi", "spk2imgnet-lite", "atsnet"])
    ap.add_argument("--out", type=Path, default=Path("docs/img/sample_car.png"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import spkrecon

    gt = load_image(Path(spkrecon.__file__).parent / "data" / "sample_gt.png")
    panels: list[tuple[str, np.ndarray]] = [("ground truth", gt)]
    scores: dict[str, float] = {}
    for spec in parse_methods(",".join(args.methods)):
        method = create(spec.name, **spec.params)
        src = open_recording("sample")
        try:
            with torch.inference_mode():
                rate = dict(method.stream(src, [KEY]))[KEY]
        finally:
            src.close()
        img = np.clip(rate / float(getattr(method, "alpha", 0.6)), 0, 1)
        scores[spec.label] = round(float(psnr(img, gt, data_range=1.0)), 2)
        weights = spec.params.get("weights")
        label = spec.name + (f" ({Path(str(weights)).parent.name})" if weights else "")
        panels.append((f"{label}: {scores[spec.label]:.2f} dB", img))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    h, w = CROP[0].stop - CROP[0].start, CROP[1].stop - CROP[1].start
    fig, axes = plt.subplots(rows, cols, figsize=(cols * w * 2 / 100, rows * (h * 2 + 44) / 100),
                             dpi=100, squeeze=False)
    for ax, (label, img) in zip(axes.flat, panels, strict=False):
        ax.imshow(img[CROP], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout(pad=0.3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(json.dumps({"out": str(args.out), "key_frame_1based": KEY + 1, "psnr": scores}))


if __name__ == "__main__":
    main()
