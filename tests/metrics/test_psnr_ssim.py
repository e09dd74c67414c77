"""PSNR and SSIM against scikit-image as the independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from spkrecon.errors import ParameterError
from spkrecon.metrics import get_metric, psnr, ssim


def _pair(seed: int, shape: tuple[int, int] = (60, 80), noise: float = 0.08):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    ref = 0.5 + 0.4 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    img = np.clip(ref + rng.normal(0, noise, shape), 0, 1)
    return img, ref


def _sk_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    return structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=data_range)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psnr_matches_skimage(seed: int) -> None:
    img, ref = _pair(seed)
    assert psnr(img, ref, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(ref, img, data_range=1.0), rel=1e-12)


def test_psnr_data_range_is_explicit_and_scales() -> None:
    img, ref = _pair(3)
    with pytest.raises(TypeError):
        psnr(img, ref)  # type: ignore[call-arg]
    with pytest.raises(ParameterError):
        psnr(img, ref, data_range=0)
    on_255 = psnr(img * 255, ref * 255, data_range=255)
    assert on_255 == pytest.approx(psnr(img, ref, data_range=1.0), rel=1e-12)
    # A bright ground truth (no pixel below 0.5) is where guessing the range goes wrong.
    bright_ref, bright = 0.5 + ref / 2, 0.5 + img / 2
    assert psnr(bright, bright_ref, data_range=1.0) == pytest.approx(
        10 * math.log10(1.0 / np.mean((bright - bright_ref) ** 2)), rel=1e-12)


def test_psnr_identical_is_inf_and_batches() -> None:
    img, ref = _pair(4)
    assert psnr(ref, ref, data_range=1.0) == math.inf
    stack = psnr(np.stack([img, ref]), np.stack([ref, ref]), data_range=1.0)
    assert stack.shape == (2,)
    assert stack[0] == pytest.approx(psnr(img, ref, data_range=1.0))
    assert stack[1] == math.inf


def test_shape_mismatch_is_an_error() -> None:
    img, ref = _pair(5)
    with pytest.raises(ParameterError, match="differ in shape"):
        psnr(img[:-1], ref, data_range=1.0)
    with pytest.raises(ParameterError, match="differ in shape"):
        ssim(img[:, :-1], ref, data_range=1.0)


@pytest.mark.parametrize("seed,noise", [(0, 0.02), (1, 0.08), (2, 0.3)])
def test_ssim_matches_skimage(seed: int, noise: float) -> None:
    img, ref = _pair(seed, noise=noise)
    assert ssim(img, ref, data_range=1.0) == pytest.approx(_sk_ssim(img, ref), abs=1e-12)


def test_ssim_on_odd_sizes_and_uint8_scale() -> None:
    img, ref = _pair(6, shape=(37, 53))
    assert ssim(img, ref, data_range=1.0) == pytest.approx(_sk_ssim(img, ref), abs=1e-12)
    q_img, q_ref = np.round(img * 255), np.round(ref * 255)
    assert ssim(q_img, q_ref, data_range=255) == pytest.approx(
        _sk_ssim(q_img, q_ref, 255), abs=1e-12)
    assert ssim(q_img / 255, q_ref / 255, data_range=1.0) == pytest.approx(
        ssim(q_img, q_ref, data_range=255), abs=1e-12)


def test_ssim_properties() -> None:
    img, ref = _pair(7)
    assert ssim(ref, ref, data_range=1.0) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, ref, data_range=1.0) == pytest.approx(ssim(ref, img, data_range=1.0))
    stack = ssim(np.stack([img, ref]), np.stack([ref, ref]), data_range=1.0)
    assert stack[0] == pytest.approx(ssim(img, ref, data_range=1.0), abs=1e-12)
    with pytest.raises(ParameterError, match="at least 11x11"):
        ssim(img[:10, :10], ref[:10, :10], data_range=1.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.5))
def test_ssim_random_images_match_skimage(seed: int, noise: float) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.random((24, 31))
    img = np.clip(ref + rng.normal(0, noise, ref.shape), 0, 1)
    ours = ssim(img, ref, data_range=1.0)
    assert ours <= 1.0 + 1e-12
    assert ours == pytest.approx(_sk_ssim(img, ref), abs=1e-10)


def test_metric_objects_need_references() -> None:
    img, ref = _pair(8)
    m = get_metric("PSNR")
    assert m.full_reference and not m.lower_better
    calls: list[int] = []
    out = m.score(np.stack([img, img, img]), np.stack([ref, ref, ref]), batch_size=2,
                  progress=calls.append)
    assert calls == [2, 1]
    assert out == pytest.approx([psnr(img, ref, data_range=1.0)] * 3)
    with pytest.raises(ParameterError, match="reference"):
        get_metric("ssim").score(img[None])
