"""Frame loading, pairing rules and per-frame/mean scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from spike_helpers import rate_spikes

from spkrecon.errors import InputError, ParameterError
from spkrecon.io import write_dat
from spkrecon.scoring import (
    FrameSet,
    load_frames,
    load_image,
    pair_frames,
    parse_key_frame,
    parse_params,
    reconstruct_frames,
    score_frames,
)


def _scene(seed: int, shape: tuple[int, int] = (40, 56)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return np.clip(0.5 + 0.35 * np.sin(xx / 5.0 + seed) * np.cos(yy / 7.0)
                   + rng.normal(0, 0.03, shape), 0, 1)


def test_folder_in_natural_order_and_dtypes(tmp_path: Path) -> None:
    a = (_scene(0) * 255).round().astype(np.uint8)
    b = (_scene(1) * 65535).round().astype(np.uint16)
    iio.imwrite(tmp_path / "f10.png", a)
    iio.imwrite(tmp_path / "f2.png", b)
    (tmp_path / "notes.txt").write_text("not an image")
    fs = load_frames(tmp_path)
    assert fs.names == ["f2.png", "f10.png"]
    assert fs.frames.dtype == np.float32 and fs.frames.shape == (2, 40, 56)
    np.testing.assert_allclose(fs.frames[0], b / 65535, atol=1e-6)
    np.testing.assert_allclose(fs.frames[1], a / 255, atol=1e-6)


def test_colour_becomes_bt601_luma(tmp_path: Path) -> None:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    iio.imwrite(tmp_path / "c.png", rgb)
    grey = load_image(tmp_path / "c.png")
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    np.testing.assert_allclose(grey, expected, atol=1e-6)


def test_npy_stacks(tmp_path: Path) -> None:
    stack = np.stack([_scene(i) for i in range(3)]).astype(np.float32)
    np.save(tmp_path / "s.npy", stack)
    fs = load_frames(tmp_path / "s.npy")
    assert len(fs) == 3 and fs.names[2] == "s.npy[2]"
    np.testing.assert_array_equal(fs.frames, stack)
    np.save(tmp_path / "bad.npy", stack * 3)
    with pytest.raises(InputError, match=r"not \[0, 1\]"):
        load_frames(tmp_path / "bad.npy")
    np.save(tmp_path / "int.npy", stack.astype(np.int32))
    with pytest.raises(InputError, match="dtype"):
        load_frames(tmp_path / "int.npy")


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_frames(tmp_path / "missing.png")
    with pytest.raises(InputError, match="holds no images"):
        load_frames(tmp_path)
    (tmp_path / "r.dat").write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match="--method"):
        load_frames(tmp_path / "r.dat")
    iio.imwrite(tmp_path / "a.png", np.zeros((10, 12), np.uint8))
    iio.imwrite(tmp_path / "b.png", np.zeros((10, 13), np.uint8))
    with pytest.raises(InputError, match="differ in size"):
        load_frames(tmp_path)


def _set(n: int, shape: tuple[int, int] = (40, 56), **kw: object) -> FrameSet:
    frames = np.stack([_scene(i, shape) for i in range(n)]).astype(np.float32)
    return FrameSet(frames, [f"f{i}" for i in range(n)], "test", **kw)  # type: ignore[arg-type]


def test_pairing_rules() -> None:
    refs, names, rule = pair_frames(_set(3), _set(3))
    assert rule == "in order" and names == ["f0", "f1", "f2"]
    recon = _set(2, indices=[1, 3], recording_frames=5)
    refs, names, rule = pair_frames(recon, _set(5))
    assert rule == "by recording frame" and names == ["f1", "f3"]
    np.testing.assert_array_equal(refs[1], _set(5).frames[3])
    with pytest.raises(InputError, match=r"3 reconstructed frame\(s\) but 1 ground-truth"):
        pair_frames(_set(3), _set(1))
    with pytest.raises(InputError, match="40x56 differs from ground truth 40x50"):
        pair_frames(_set(1), _set(1, (40, 50)))


def test_scores_match_skimage_per_frame_and_mean() -> None:
    truth = _set(3)
    rng = np.random.default_rng(5)
    noisy = np.clip(truth.frames + rng.normal(0, 0.05, truth.frames.shape), 0, 1)
    recon = FrameSet(noisy.astype(np.float32), ["a", "b", "c"], "noisy")
    report = score_frames(recon, truth, ["psnr", "ssim"])
    for i, f in enumerate(report.frames):
        x, y = noisy[i].astype(np.float64), truth.frames[i].astype(np.float64)
        assert f.scores["psnr"] == pytest.approx(peak_signal_noise_ratio(y, x, data_range=1.0))
        assert f.scores["ssim"] == pytest.approx(structural_similarity(
            x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=1.0), abs=1e-6)
    assert report.mean["psnr"] == pytest.approx(np.mean([f.scores["psnr"]
                                                         for f in report.frames]))
    assert report.frames[1].reference == "f1"


def test_self_score_is_infinite_psnr_reported() -> None:
    truth = _set(2, (100, 120))
    report = score_frames(truth, truth)
    assert report.metrics == ["psnr", "ssim", "niqe"]
    assert report.mean["psnr"] == math.inf
    assert report.mean["ssim"] == pytest.approx(1.0)
    assert any("infinite PSNR" in n for n in report.notes)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["mean"]["psnr"] == "inf"
    assert data["frames"][0]["psnr"] == "inf"
    assert isinstance(data["mean"]["niqe"], float)


def test_full_reference_metric_without_truth() -> None:
    with pytest.raises(ParameterError, match="needs ground truth"):
        score_frames(_set(1), None, ["psnr"])
    assert score_frames(_set(1, (100, 100)), None).metrics == ["niqe"]


def test_params_and_key_frames() -> None:
    assert parse_key_frame("200_part1_key_id151.dat") == 151
    assert parse_key_frame("car.dat") is None
    p = parse_params(["tfp.window=21", "alpha=0.5"], ["tfp", "tfi"])
    assert p == {"tfp": {"window": 21, "alpha": 0.5}, "tfi": {"alpha": 0.5}}
    with pytest.raises(ParameterError, match="not being run"):
        parse_params(["tvs.x=1"], ["tfp"])
    with pytest.raises(ParameterError, match="no parameter 'size'"):
        parse_params(["tfp.size=1"], ["tfp"])
    with pytest.raises(ParameterError, match="KEY=VALUE"):
        parse_params(["window"], ["tfp"])


def test_reconstruct_frames_defaults_and_alpha(tmp_path: Path) -> None:
    intensity = _scene(3)
    write_dat(tmp_path / "r.dat", rate_spikes(intensity, 80))
    fs = reconstruct_frames(tmp_path / "r.dat", "tfp", {"window": 21}, tonemap="alpha",
                            open_options={"height": 40, "width": 56})
    assert fs.indices == list(range(10, 70))
    assert fs.recording_frames == 80
    # 21-frame counts / 0.6 approximate the intensity.
    assert np.abs(fs.frames.mean(axis=0) - intensity).mean() < 0.05
    with pytest.raises(ParameterError, match="outside"):
        reconstruct_frames(tmp_path / "r.dat", "tfp", frames=[80],
                           open_options={"height": 40, "width": 56})


def test_tfp_on_reds_gives_published_psnr(reds_dir: Path) -> None:
    rec = reds_dir / "200_part1_key_id151.dat"
    fs = reconstruct_frames(rec, "tfp", frames=[150], tonemap="alpha")
    report = score_frames(fs, load_frames(rec.with_suffix(".png")), ["psnr", "ssim"])
    assert round(report.mean["psnr"], 2) == 31.60
