"""PLACEHOLDER (to be replaced by the simulator's version): writes spkrecon/data/sample.dat.

A 250x400, 240-frame recording of a bright ellipse passing over a sinusoidal texture,
integrate-and-fire with alpha 0.6, seed 0.
"""

from pathlib import Path

import numpy as np

from spkrecon.io import write_dat


def main() -> None:
    h, w, t = 250, 400, 240
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    acc = rng.random((h, w))
    out = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        bg = 0.3 + 0.25 * np.sin((xx + 0.5 * i) / 17.0) * np.cos(yy / 23.0)
        car = ((xx - (40 + 1.2 * i)) ** 2 / 3600 + (yy - 150) ** 2 / 900) < 1
        acc += 0.6 * np.where(car, 0.9, bg)
        fired = acc >= 1
        acc[fired] -= 1
        out[i] = fired
    write_dat(Path(__file__).resolve().parents[1] / "spkrecon" / "data" / "sample.dat", out)


if __name__ == "__main__":
    main()
