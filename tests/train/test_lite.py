"""The lite reconstructor: default weights name, and the shipped weights when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spkrecon.methods import available, create

REPO_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "spk2imgnet-lite.pt"


def test_lite_method_uses_the_lite_weights_name(tiny_data: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from spkrecon.train import TrainConfig, run

    folder = tmp_path / "wdir"
    cfg = TrainConfig(model="lite", features=8, num_blocks=1, images=[str(tiny_data["images"])],
                      patch=16, batch_size=2, steps=2, threads=1, out=str(tmp_path / "run"),
                      val_dir="none", val_every=0, max_side=200)
    res = run(cfg)
    folder.mkdir()
    (folder / "spk2imgnet-lite.pt").write_bytes(res.weights.read_bytes())
    monkeypatch.setenv("SPKRECON_WEIGHTS", str(folder))
    assert "spk2imgnet-lite" in available()
    method = create("spk2imgnet-lite", device="cpu")
    assert Path(method.weights).parent == folder and method.config.features == 8
    spikes = (np.random.default_rng(0).random((50, 20, 24)) < 0.3).astype(np.uint8)
    out = method.reconstruct(spikes, np.array([20, 25]))
    assert out.shape == (2, 20, 24) and np.isfinite(out).all()


@pytest.mark.skipif(not REPO_WEIGHTS.is_file(), reason="lite weights not shipped")
def test_shipped_lite_weights_beat_tfp(reds_dir: Path) -> None:
    from spkrecon.io import open_recording
    from spkrecon.metrics.psnr import psnr
    from spkrecon.models.weights import load_checkpoint
    from spkrecon.scoring import load_image

    ckpt = load_checkpoint(REPO_WEIGHTS)
    for key in ("iterations", "samples_seen", "training_data", "wall_time_s", "machine",
                "validation"):
        assert ckpt.meta.get(key), key
    assert ckpt.alpha == 0.6 and ckpt.model_config().pda is False
    dat = reds_dir / "200_part1_key_id151.dat"
    spikes = open_recording(dat).read(130, 171)
    gt = load_image(dat.with_suffix(".png"))
    method = create("spk2imgnet-lite", weights=str(REPO_WEIGHTS), device="cpu")
    img = np.clip(method.reconstruct(spikes, np.array([20]))[0] / 0.6, 0, 1)
    tfp = np.clip(spikes.mean(0) / 0.6, 0, 1)
    assert psnr(img, gt, data_range=1.0) > psnr(tfp, gt, data_range=1.0) + 3.0
