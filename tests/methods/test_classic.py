"""TFP and TFI: values, streaming equivalence, edges, registry behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from spike_helpers import rate_spikes

from spkrecon.errors import ParameterError, UnknownNameError
from spkrecon.io import ArraySource, open_recording
from spkrecon.methods import available, build, create, get_class


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_tfp_is_the_window_mean(gradient_spikes) -> None:
    spikes, _ = gradient_spikes
    tfp = create("tfp", window=21)
    out = tfp(spikes, [10, 50, 119])
    assert out.dtype == np.float32 and out.shape == (3, 24, 32)
    assert np.allclose(out[1], spikes[40:61].mean(axis=0), atol=1e-6)
    assert np.allclose(out[0], spikes[0:21].mean(axis=0), atol=1e-6)   # 10 - 10 = 0
    assert np.allclose(out[2], spikes[109:120].mean(axis=0), atol=1e-6)  # clipped at the end


def test_tfp_and_tfi_recover_a_still_scene(gradient_spikes) -> None:
    spikes, intensity = gradient_spikes
    for name, floor in (("tfp", 24.0), ("tfi", 17.0)):
        rate = create(name, window=41)(spikes, [60])[0]
        assert 0.0 <= rate.min() and rate.max() <= 1.0
        assert _psnr(np.clip(rate / 0.6, 0, 1), intensity) > floor, name


def test_tfi_is_one_over_the_interval() -> None:
    spikes = np.zeros((30, 1, 8), np.uint8)
    spikes[[4, 9, 14, 19, 24], 0, :] = 1  # period 5
    spikes[:, 0, 7] = 0  # a silent pixel
    out = create("tfi", window=11)(spikes, [12, 14])
    assert np.allclose(out[:, 0, :7], 1 / 5)
    assert np.allclose(out[:, 0, 7], 1 / 10)  # no spike within 5 frames: interval 2 * 5


def test_stream_equals_whole_array_across_chunks(gradient_spikes) -> None:
    spikes, _ = gradient_spikes
    for name in ("tfp", "tfi"):
        method = create(name, window=13)
        method.batch_frames = 7  # force many chunks with halos
        src = ArraySource(spikes)
        streamed = dict(method.stream(src, range(0, 120, 3)))
        method.batch_frames = 1000
        whole = method(spikes, range(0, 120, 3))
        assert sorted(streamed) == list(range(0, 120, 3))
        assert np.allclose(np.stack([streamed[i] for i in sorted(streamed)]), whole)


def test_registry_suggests_and_validates() -> None:
    assert {"tfp", "tfi"} <= set(available())
    with pytest.raises(UnknownNameError, match="did you mean 'tfp'"):
        get_class("tpf")
    with pytest.raises(ParameterError, match="no parameter 'bogus'"):
        create("tfp", bogus=1)
    with pytest.raises(ParameterError):
        create("tfp", window=0)
    with pytest.raises(ParameterError):
        create("tfi", alpha=1.5)



def test_auto_on_a_machine_without_cuda(monkeypatch) -> None:
    """``build("auto")`` with the repository's shipped weights and no CUDA GPU picks the
    first network of ``auto.CPU_PREFERENCE`` whose weights are found, and says why; a
    TFP-only parameter is dropped."""
    pytest.importorskip("torch")
    from spkrecon.methods import auto
    from spkrecon.models.weights import DEFAULT_NAME, find_weights

    monkeypatch.setattr(auto, "_cuda_available", lambda: False)
    found = [(n, find_weights(n)) for n in auto.CPU_PREFERENCE if find_weights(n) is not None]
    assert found, "no shipped CPU network"
    expected, path = found[0]
    method, why = build("auto", window=9)
    assert method.name == expected
    missing = "no CUDA GPU" if find_weights(DEFAULT_NAME) else "no full Spk2ImgNet weights"
    assert why.startswith(f"method auto: using {expected} ({missing}; ")
    assert why.endswith(f"{expected} ({path}) is present)")


def test_parameters_are_described() -> None:
    assert get_class("tfp").parameter_names() == ["window", "alpha"]
    assert create("tfi", window=21).params() == {"window": 21, "alpha": 0.6}


def test_tfp_on_reds_matches_published_31_60_db(reds_dir: Path) -> None:
    import imageio.v3 as iio

    dat = reds_dir / "200_part1_key_id151.dat"
    rec = open_recording(dat)
    rate = create("tfp", window=41)(rec.read(130, 171), [20])[0]  # frames 130..170
    gt = iio.imread(dat.with_suffix(".png")).astype(np.float64) / 255.0
    gt = gt if gt.ndim == 2 else gt[..., 0]
    assert round(_psnr(np.clip(rate / 0.6, 0, 1), gt), 2) == 31.60


def test_still_scene_helper_rates(gradient_spikes) -> None:
    spikes, intensity = gradient_spikes
    assert abs(spikes.mean() - 0.6 * intensity.mean()) < 0.01
    assert rate_spikes(np.full((2, 2), 0.5), 100).mean() == pytest.approx(0.3, abs=0.02)
