"""Simulating to files: .dat + ground truth + sidecar, bit-for-bit repeats, safe writes."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from spkrecon.errors import OutputError, ParameterError
from spkrecon.io import open_recording
from spkrecon.methods.tfp import TFP
from spkrecon.simulate.motion import MotionConfig
from spkrecon.simulate.noise import NoiseModel
from spkrecon.simulate.runner import (
    SimulateConfig,
    load_sidecar_config,
    resolve_gt_steps,
    simulate_file,
)
from spkrecon.simulate.synthetic import street_scene


@pytest.fixture
def still_png(tmp_path: Path) -> Path:
    img = street_scene(96, 128, 5).numpy()
    path = tmp_path / "street.png"
    iio.imwrite(path, (img * 255 + 0.5).astype(np.uint8))
    return path


def small(**kw: object) -> SimulateConfig:
    base: dict[str, object] = {"height": 80, "width": 112, "steps": 101}
    base.update(kw)
    return SimulateConfig(**base)  # type: ignore[arg-type]


def test_still_image_round_trip_and_tfp_fidelity(tmp_path: Path, still_png: Path) -> None:
    out = tmp_path / "out" / "still.dat"
    record = simulate_file(still_png, out, small(motion=None, gt_steps=[50, 10]))
    assert out.is_file() and out.with_suffix(".json").is_file()
    gt_dir = tmp_path / "out" / "still_gt"
    assert sorted(p.name for p in gt_dir.iterdir()) == ["000010.png", "000050.png"]
    src = open_recording(out, 80, 112)
    assert src.num_frames == 101
    spikes = src.read_all()
    gt = iio.imread(gt_dir / "000050.png").astype(np.float64) / 255
    rate = TFP(window=41)(spikes, [50])[0]
    recon = np.clip(rate / 0.6, 0, 1)
    psnr = 10 * np.log10(1 / np.mean((recon - gt) ** 2))
    assert psnr > 30
    assert abs(spikes.mean() - 0.6 * gt.mean()) < 0.01
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["config"]["seed"] == 0 and side["gt_steps"] == [10, 50]
    assert side["recording"]["frames"] == 101 and record["input"]["kind"] == "image"
    assert len(side["input"]["digest"]) == 64
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_sidecar_repeats_the_run_bit_for_bit(tmp_path: Path, still_png: Path) -> None:
    cfg = small(motion=MotionConfig(objects=(2, 2)).to_dict(), noise=NoiseModel().to_dict(),
                seed=42, steps=60)
    a = tmp_path / "a.dat"
    simulate_file(still_png, a, cfg)
    again, sidecar = load_sidecar_config(a.with_suffix(".json"))
    assert again == cfg
    b = tmp_path / "b.dat"
    simulate_file(sidecar["input"]["path"], b, again)
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a_gt" / "000030.png").read_bytes() == \
        (tmp_path / "b_gt" / "000030.png").read_bytes()
    again.chunk = 7  # the chunk size does not change the bits
    d = tmp_path / "d.dat"
    simulate_file(still_png, d, again)
    assert a.read_bytes() == d.read_bytes()
    again.seed = 43
    c = tmp_path / "c.dat"
    simulate_file(still_png, c, again)
    assert a.read_bytes() != c.read_bytes()


def test_refuses_existing_outputs_and_cleans_up(tmp_path: Path, still_png: Path) -> None:
    out = tmp_path / "x.dat"
    simulate_file(still_png, out, small(steps=20))
    first = out.read_bytes()
    with pytest.raises(OutputError):
        simulate_file(still_png, out, small(steps=20, seed=1))
    assert out.read_bytes() == first
    simulate_file(still_png, out, small(steps=20, seed=1), force=True)
    assert out.read_bytes() != first

    def boom(_: int) -> None:
        raise RuntimeError("interrupted")

    fresh = tmp_path / "y.dat"
    with pytest.raises(RuntimeError):
        simulate_file(still_png, fresh, small(steps=40, chunk=8), on_chunk=boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["street.png", "x.dat", "x.json",
                                                          "x_gt"]


def test_every_step_as_npy(tmp_path: Path, still_png: Path) -> None:
    out = tmp_path / "m.dat"
    simulate_file(still_png, out, small(steps=30, gt_all=True, gt_every=10, substeps=2))
    light = np.load(tmp_path / "m_gt" / "light.npy")
    assert light.shape == (30, 80, 112) and light.dtype == np.float16
    png = iio.imread(tmp_path / "m_gt" / "000020.png").astype(np.float64) / 255
    assert np.abs(light[20] - png).max() <= 1 / 255 + 1e-3


def test_frame_folder_input(tmp_path: Path) -> None:
    img = street_scene(90, 150, 6).numpy()
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        iio.imwrite(folder / f"{i:03d}.png", (img[:, 3 * i:3 * i + 120] * 255).astype(np.uint8))
    out = tmp_path / "v.dat"
    record = simulate_file(folder, out, SimulateConfig(height=64, width=96, steps_per_frame=5,
                                                       interp="linear", gt_every=5))
    assert record["recording"]["frames"] == 16 and record["gt_steps"] == [0, 5, 10, 15]
    assert open_recording(out, 64, 96).num_frames == 16


def test_gt_step_resolution() -> None:
    assert resolve_gt_steps(301, None, None) == [150]
    assert resolve_gt_steps(41, [-1, 0], 20) == [0, 20, 40]
    with pytest.raises(ParameterError):
        resolve_gt_steps(10, [10], None)
    with pytest.raises(ParameterError):
        SimulateConfig(height=5, width=5).validate()  # 25 pixels: not whole bytes
