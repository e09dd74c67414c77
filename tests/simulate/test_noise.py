"""Noise model: SCSim defaults, scaling, fixed-pattern spread, dark current."""

from __future__ import annotations

import pytest
import torch

from spkrecon.errors import ParameterError
from spkrecon.simulate import (
    NoiseModel,
    StaticScene,
    make_generator,
    noise_from_name,
    simulate_batch,
)


def rates(img: torch.Tensor, steps: int, noise: NoiseModel | None, seed: int = 0
          ) -> torch.Tensor:
    res = simulate_batch(StaticScene(img), steps, noise=noise, generator=make_generator(seed),
                         chunk=256)
    return res.spikes.float().mean(1)[0]


def test_scale_zero_is_the_noise_free_sensor() -> None:
    img = torch.rand(1, 16, 24)
    clean = simulate_batch(StaticScene(img), 60, generator=make_generator(4)).spikes
    zero = simulate_batch(StaticScene(img), 60, noise=NoiseModel(scale=0),
                          generator=make_generator(4)).spikes
    assert torch.equal(clean, zero)
    assert noise_from_name("off") is None
    assert noise_from_name("realistic", 0.0) is None
    assert noise_from_name("Realistic", 2.0) == NoiseModel(scale=2.0)


def test_fixed_pattern_spread_matches_scsim_figures() -> None:
    img = torch.full((1, 48, 48), 0.5)
    steps = 1500
    clean = rates(img, steps, None)
    noisy = rates(img, steps, NoiseModel())
    # Noise-free: every pixel within 1/T of 0.3.
    assert float((clean - 0.3).abs().max()) <= 1.0 / steps + 1e-6
    # PRNU 5.8 %, threshold offset 5 %, capacitance 0.3 %: about 7.6 % relative spread.
    rel = float(noisy.std() / noisy.mean())
    assert 0.05 < rel < 0.11
    # The model's mean offset (-0.76 % threshold) barely moves the mean rate.
    assert abs(float(noisy.mean()) - 0.3) < 0.01
    rel2 = float(rates(img, steps, NoiseModel(scale=2.0)).std() / noisy.mean())
    assert rel2 > 1.6 * rel


def test_dark_current_fires_in_the_dark() -> None:
    dark = torch.zeros(1, 32, 32)
    assert float(rates(dark, 400, None).max()) == 0.0
    steps = 6000
    r = rates(dark, steps, NoiseModel(photons=0, threshold_jitter_std=0.0))
    # N(0.4442, 0.1731) grey levels of dark current: about 0.4442 / 255 spikes per step.
    assert 0.8 * 0.4442 / 255 < float(r.mean()) < 1.25 * 0.4442 / 255


def test_temporal_noise_spreads_spike_counts() -> None:
    img = torch.full((1, 32, 32), 0.5)
    only_temporal = NoiseModel(dark_current_mean=0, dark_current_std=0, capacitance_std=0,
                               threshold_offset_mean=0, threshold_offset_std=0, prnu_std=0,
                               threshold_jitter_std=0.05, photons=200)
    clean = rates(img, 400, None)
    noisy = rates(img, 400, only_temporal)
    assert float(noisy.std()) > 2 * float(clean.std())
    assert abs(float(noisy.mean()) - 0.3) < 0.01


def test_hot_pixels() -> None:
    img = torch.full((1, 64, 64), 0.1)
    r = rates(img, 300, NoiseModel(hot_pixel_fraction=0.01, hot_pixel_rate=(0.5, 0.5)))
    hot = r > 0.4
    assert 10 <= int(hot.sum()) <= 80


def test_dict_round_trip_and_validation() -> None:
    m = NoiseModel(scale=1.5, hot_pixel_fraction=0.001)
    assert NoiseModel.from_dict(m.to_dict()) == m
    with pytest.raises(ParameterError):
        NoiseModel(scale=-1)
    with pytest.raises(ParameterError):
        NoiseModel.from_dict({"dark": 1})
    with pytest.raises(ParameterError):
        noise_from_name("loud")
