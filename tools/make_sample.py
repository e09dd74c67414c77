"""Regenerate the bundled sample: ``spkrecon/data/sample.dat`` and ``sample_gt.png``.

A procedural street (``spkrecon.simulate.synthetic.sample_scene``: buildings, a sign with
text, trees, a fence, a road) under a slow pan and zoom, with a car passing at 1 px per
readout step and a spinning ball thrown across; 250x400, 240 readout steps, alpha 0.6,
noise-free, seed 0. No external data. ``sample_gt.png`` is the light at the middle step (120,
0-based), to score reconstructions against (divide rates by 0.6).

    python tools/make_sample.py            # rewrite the files
    python tools/make_sample.py --check    # verify the bundled files are reproduced exactly

The simulator's arithmetic is exactly rounded step by step (``spkrecon.simulate.exact``), so
the recording comes out byte for byte the same on every CPU (x86-64 or ARM, any vector
width, any thread count). ``--check`` compares the ``.dat`` bytes and the PNG's pixels (the
PNG file's compressed bytes depend on the zlib build of the image library, not on us).
Not quite every CPU: on an AVX-512 Xeon 4 of the 24,000,000 spike bits came out flipped
(threshold crossings at steps 106-107 and 135-136; the PNG identical), the same under torch's
default, AVX2 and AVX-512 kernels, so the cause lies below torch's ISA dispatch (not found
yet); ``--check`` reports that as DIFFERS.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "spkrecon" / "data"
SIZE = (250, 400)
STEPS = 240
SEED = 0


def build(out_dir: Path, seed: int = SEED) -> tuple[Path, Path]:
    """Write ``sample.dat`` and ``sample_gt.png`` into ``out_dir`` (temporary names first)."""
    import torch

    from spkrecon.simulate.core import make_generator
    from spkrecon.simulate.runner import derive_seeds, stream_to_dat, write_png
    from spkrecon.simulate.synthetic import sample_scene

    torch.set_num_threads(1)  # faster on a busy machine; the bits do not depend on it
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = sample_scene(seed, SIZE, STEPS)
    _, sensor_seed = derive_seeds(seed)
    key = STEPS // 2
    dat, png = out_dir / "sample.dat", out_dir / "sample_gt.png"
    tmp_dat = out_dir / f".sample.partial-{os.getpid()}.dat"
    tmp_png = out_dir / f".sample_gt.partial-{os.getpid()}.png"
    try:
        stats = stream_to_dat(scene, STEPS, tmp_dat, alpha=0.6,
                              generator=make_generator(sensor_seed), gt_steps=[key], chunk=16)
        write_png(tmp_png, stats.gt[key])
        os.replace(tmp_dat, dat)
        os.replace(tmp_png, png)
    finally:
        tmp_dat.unlink(missing_ok=True)
        tmp_png.unlink(missing_ok=True)
    print(f"wrote {dat} ({dat.stat().st_size} bytes, mean rate {stats.mean_rate:.3f}) and "
          f"{png} ({png.stat().st_size} bytes)")
    return dat, png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--check", action="store_true",
                        help="rebuild in a temporary folder and compare with --out-dir")
    args = parser.parse_args(argv)
    if not args.check:
        build(args.out_dir, args.seed)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        dat, png = build(Path(tmp), args.seed)
        same = same_sample(args.out_dir, dat.parent)
    print("bundled sample reproduced exactly" if same else "bundled sample DIFFERS")
    return 0 if same else 1


def same_sample(a: Path, b: Path) -> bool:
    """Whether two folders hold the same ``sample.dat`` (bytes) and ``sample_gt.png``
    (pixels)."""
    import imageio.v3 as iio
    import numpy as np

    files = [(d / "sample.dat", d / "sample_gt.png") for d in (a, b)]
    if not all(p.is_file() for pair in files for p in pair):
        return False
    (dat_a, png_a), (dat_b, png_b) = files
    return dat_a.read_bytes() == dat_b.read_bytes() and np.array_equal(
        iio.imread(png_a), iio.imread(png_b))


if __name__ == "__main__":
    sys.exit(main())
