"""Tiny training data written as real files: a few textured images and one short clip."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = 0.5 + 0.25 * np.sin(x / rng.uniform(3, 9) + rng.uniform(0, 6)) \
        * np.cos(y / rng.uniform(3, 9) + rng.uniform(0, 6))
    img += 0.2 * (((x // rng.integers(6, 14)) + (y // rng.integers(6, 14))) % 2 - 0.5)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``images``: 4 grey/colour images; ``videos``: one clip of 6 frames panning right."""
    root = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    for i in range(4):
        img = _texture(rng, 90 + 10 * i, 120)
        if i % 2:
            img = np.stack([img, img[::-1], img[:, ::-1]], -1)
        iio.imwrite(images / f"img_{i}.png", img)
    clip = root / "videos" / "pan"
    clip.mkdir(parents=True)
    big = _texture(rng, 80, 160)
    for k in range(6):
        iio.imwrite(clip / f"frame_{k:04d}.png", big[:, 4 * k:4 * k + 100])
    return {"images": images, "videos": root / "videos"}
