"""Images for docs/methods/tvs.md and tfstp.md: each method on a real recording.

Reconstructs one frame (0-based ``--frame``, default 150: the key frame ``spkrecon compare``
uses, 151 1-based) of ``car.dat`` with TFP, TFI, TFSTP and TVS (and TVS's variants and motion
mask), tone-maps each with ``ToneMapper("auto")`` (fresh per method, as ``compare`` does for a
real recording) and writes 8-bit grey PNGs ``car_<name>.png`` into ``--out``.

Usage: python benchmarks/make_method_figures.py [--recording ../shared/data/spikes/real/car.dat]
       [--frame 150] [--out docs/img]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from spkrecon.io import open_recording
from spkrecon.methods import create
from spkrecon.tonemap import ToneMapper, to_uint8

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "spikes" / "real" / "car.dat"

FIGURES: list[tuple[str, str, dict]] = [
    ("tfp", "tfp", {}),
    ("tfi", "tfi", {}),
    ("tfstp", "tfstp", {}),
    ("tvs", "tvs", {"extend_range": False}),
    ("tvs_extend_range", "tvs", {"extend_range": True}),
    ("tvs_camera_moving", "tvs", {"mode": "camera_moving"}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recording", type=Path, default=DEFAULT)
    ap.add_argument("--frame", type=int, default=150)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.recording.stem
    src = open_recording(args.recording)
    for label, name, params in FIGURES:
        method = create(name, **params)
        (_, rate), = method.stream(src, [args.frame])
        image = ToneMapper("auto")(rate)
        path = args.out / f"{stem}_{label}.png"
        iio.imwrite(path, to_uint8(image))
        print(f"{path}: {path.stat().st_size // 1024} KB, rate {rate.min():.3f}..{rate.max():.3f}")
    (_, mask), = create("tvs").motion_masks(src, [args.frame])
    path = args.out / f"{stem}_tvs_mask.png"
    iio.imwrite(path, np.where(mask, 255, 0).astype(np.uint8))
    print(f"{path}: dynamic fraction {mask.mean():.3f}")


if __name__ == "__main__":
    main()
