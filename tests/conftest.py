"""Shared fixtures: ../shared data (skipped when absent) and small synthetic recordings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from spike_helpers import rate_spikes

SHARED = Path(os.environ.get("SPKRECON_SHARED",
                            Path(__file__).resolve().parents[1].parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder; tests that need it skip when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared data is not present")
    return SHARED


@pytest.fixture(scope="session")
def reds_dir(shared_dir: Path) -> Path:
    d = shared_dir / "data" / "spikes" / "reds_sim"
    if not d.is_dir():
        pytest.skip("../shared/data/spikes/reds_sim is not present")
    return d


@pytest.fixture
def gradient_spikes() -> tuple[np.ndarray, np.ndarray]:
    """A horizontal gradient 0.1..0.9 on 24x32, 120 frames: (spikes, intensity)."""
    intensity = np.tile(np.linspace(0.1, 0.9, 32, dtype=np.float64), (24, 1))
    return rate_spikes(intensity, 120), intensity.astype(np.float32)


@pytest.fixture
def torch_one_thread():
    """Small tensors run far faster on one torch thread on a shared 2-core machine."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
