"""Convert the NIQE pristine model into the form spkrecon ships (spkrecon/data/*.npz).

Provenance of the model: the pristine-image multivariate Gaussian of Mittal, Soundararajan and
Bovik, "Making a 'completely blind' image quality analyzer", IEEE SPL 2013, as released with
MATLAB's NIQE; converted to ``niqe_pris_params.npz`` by BasicSR 1.4.2 (Apache-2.0,
https://github.com/XPixelGroup/BasicSR) and to ``niqe_modelparameters.mat`` (the file pyiqa
downloads) by the pyiqa authors. This script reads that ``.mat`` (``mu_prisparam`` 1x36 and
``cov_prisparam`` 36x36, float64) and writes the two arrays, unchanged, to a compressed
``.npz``. At run time ``spkrecon.metrics.niqe`` writes them back to a ``.mat`` in the user cache
folder for pyiqa. Run once, from the project root:

    python tools/convert_niqe_model.py ../shared/data/niqe/niqe_modelparameters.mat
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.io

OUT = Path(__file__).resolve().parents[1] / "spkrecon" / "data" / "niqe_pris_params.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mat", type=Path, help="niqe_modelparameters.mat")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    params = scipy.io.loadmat(args.mat)
    mu = np.asarray(params["mu_prisparam"], np.float64)
    cov = np.asarray(params["cov_prisparam"], np.float64)
    if mu.shape != (1, 36) or cov.shape != (36, 36):
        raise SystemExit(f"unexpected shapes {mu.shape} and {cov.shape}")
    np.savez_compressed(args.out, mu_prisparam=mu, cov_prisparam=cov)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
