"""NIQE and other pyiqa metrics: bundled model, offline behaviour, batching."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from spkrecon.errors import DeviceError, ParameterError, UnknownNameError, WeightsError
from spkrecon.metrics import get_metric
from spkrecon.metrics.iqa import resolve_device
from spkrecon.metrics.niqe import create_niqe, niqe, niqe_model_path, pristine_params
from spkrecon.scoring import load_image


def _texture(seed: int, shape: tuple[int, int] = (200, 200)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    base = 0.5 + 0.3 * np.sin(xx / 9.0 + seed) * np.cos(yy / 13.0)
    return np.clip(base + rng.normal(0, 0.05, shape), 0, 1).astype(np.float32)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def shared_mat(shared_dir: Path) -> Path:
    p = shared_dir / "data" / "niqe" / "niqe_modelparameters.mat"
    if not p.is_file():
        pytest.skip("shared NIQE model absent")
    return p


def test_bundled_model_equals_shared_mat(shared_mat: Path, tmp_path: Path) -> None:
    shared = scipy.io.loadmat(shared_mat)
    written = scipy.io.loadmat(niqe_model_path(tmp_path))
    for key, shape in (("mu_prisparam", (1, 36)), ("cov_prisparam", (36, 36))):
        assert written[key].shape == shape
        assert written[key].dtype == np.float64
        assert np.array_equal(written[key], shared[key])


def test_niqe_identical_to_pyiqa_with_shared_model(shared_mat: Path, reds_dir: Path,
                                                   no_network: None) -> None:
    import pyiqa
    import torch

    image = load_image(reds_dir / "200_part1_key_id151.png")
    theirs = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=str(shared_mat))
    expected = float(theirs(torch.from_numpy(image)[None, None]).item())
    assert 2 < expected < 20
    assert niqe(image, device="cpu") == expected


def test_model_file_is_written_once_and_repaired(tmp_path: Path) -> None:
    p = niqe_model_path(tmp_path)
    stamp = p.stat().st_mtime_ns
    assert niqe_model_path(tmp_path) == p
    assert p.stat().st_mtime_ns == stamp
    p.write_bytes(b"truncated")
    niqe_model_path(tmp_path)
    mat = scipy.io.loadmat(p)
    assert np.array_equal(mat["cov_prisparam"], pristine_params()["cov_prisparam"])
    assert not list(tmp_path.glob("*.partial"))


def test_batched_equals_one_by_one(no_network: None) -> None:
    frames = np.stack([_texture(s) for s in range(5)])
    metric = create_niqe("cpu")
    done: list[int] = []
    batched = metric.score(frames, batch_size=3, progress=done.append)
    single = np.array([metric.score(f[None], batch_size=1)[0] for f in frames])
    assert done == [3, 2]
    assert np.all(np.isfinite(batched))
    np.testing.assert_allclose(batched, single, rtol=1e-9)
    # A noisier image is less natural: NIQE goes up.
    noisy = np.clip(frames[0] + np.random.default_rng(9).normal(0, 0.2, frames[0].shape), 0, 1)
    assert metric.score(noisy[None])[0] > batched[0]


def test_niqe_input_checks() -> None:
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        niqe(_texture(0) * 2, device="cpu")
    assert isinstance(niqe(_texture(1), device="cpu"), float)


def test_missing_weights_name_file_url_and_destination(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: None) -> None:
    from pyiqa.utils import download_util

    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path))
    with pytest.raises(WeightsError) as info:
        get_metric("BRISQUE", device="cpu")
    msg = str(info.value)
    assert "brisque_svm_weights.pth" in msg
    assert "https://" in msg
    assert str(tmp_path / "brisque_svm_weights.pth") in msg
    assert not (tmp_path / "brisque_svm_weights.pth").exists()


def test_other_pyiqa_metric_without_files(no_network: None) -> None:
    piqe = get_metric("piqe", device="cpu")
    assert piqe.lower_better and not piqe.full_reference
    vals = piqe.score(np.stack([_texture(2), _texture(3)]))
    assert vals.shape == (2,) and np.all(np.isfinite(vals))


def test_unknown_metric_and_device() -> None:
    with pytest.raises(UnknownNameError, match="niqe"):
        get_metric("niqee")
    with pytest.raises(DeviceError):
        resolve_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def test_flat_frame_is_nan_and_spares_its_batch() -> None:
    frames = np.stack([_texture(4), np.full((200, 200), 0.5, np.float32), _texture(5)])
    vals = create_niqe("cpu").score(frames, batch_size=3)
    assert math.isnan(vals[1])
    assert vals[0] == pytest.approx(niqe(frames[0], device="cpu"), rel=1e-9)
    assert vals[2] == pytest.approx(niqe(frames[2], device="cpu"), rel=1e-9)


def test_too_small_for_niqe() -> None:
    with pytest.raises(ParameterError, match="96x96"):
        niqe(np.zeros((2, 64, 200), np.float32), device="cpu")


@pytest.mark.gpu
def test_auto_device_uses_cuda_and_agrees_with_cpu() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    frames = np.stack([_texture(s) for s in range(3)])
    gpu = get_metric("niqe")  # device auto
    assert gpu.device_name.startswith("cuda")
    np.testing.assert_allclose(gpu.score(frames), create_niqe("cpu").score(frames), rtol=1e-6)
