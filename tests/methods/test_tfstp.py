"""TFSTP: steady-state read-out, step response, streaming, the public read-out flag."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from spike_helpers import rate_spikes

from spkrecon.errors import ParameterError
from spkrecon.io import ArraySource, open_recording
from spkrecon.methods import available, create


def _step_spikes(before: float, after: float, t_step: int, frames: int,
                 shape: tuple[int, int] = (12, 16), seed: int = 3) -> np.ndarray:
    """Integrate-and-fire of a uniform scene whose intensity jumps at ``t_step``."""
    rng = np.random.default_rng(seed)
    acc = rng.random(shape)
    out = np.zeros((frames, *shape), np.uint8)
    for t in range(frames):
        acc += 0.6 * (before if t < t_step else after)
        fired = acc >= 1.0
        acc[fired] -= 1.0
        out[t] = fired
    return out


def _spikecv_reference(times: list[int], frames: int, public: bool) -> list[float]:
    """Scalar float64 re-statement of SpikeCV's update and read-out for one pixel.

    It tracks ``q = 1 - R`` (``q <- (u + q (1 - u)) exp(-D / tau_D)``, the same recursion),
    since ``1 - R`` itself rounds to 0 in float64 after ~37 silent frames.
    """
    u0, tau_d, tau_f, f = 0.15, 1.0, 10.0, 0.15
    q, u, prev = 0.0, u0, -1
    out = []
    spikes = set(times)
    for t in range(frames):
        if t in spikes:
            d = t - prev
            prev = t
            q = (u + q * (1 - u)) * math.exp(-d / tau_d)
            u = u0 + (u + f * (1 - u) - u0) * math.exp(-d / tau_f)
        if u == u0:
            out.append(0.0)
            continue
        r = 1 - q
        rho_r = -1 / (tau_d * math.log(q / (1 - r * (1 - u))))
        if public:
            rho_u = -1 / (tau_f * math.log((u - u0) / (tau_f - u0 + u * (1 - f))))
            out.append(min(rho_u + rho_r, 1.0))
        else:
            rho_u = -1 / (tau_f * math.log((u - u0) / (f - u0 + u * (1 - f))))
            out.append((rho_u + rho_r) / 2)
    return out


def test_registered_and_validated() -> None:
    assert "tfstp" in available()
    m = create("tfstp")
    assert m.stateful and m.min_frames == 1
    for bad in ({"u0": 0.0}, {"f": 1.5}, {"tau_d": 0}, {"estimate": "both"}, {"warmup": -1}):
        with pytest.raises(ParameterError):
            create("tfstp", **bad)


def test_matches_a_scalar_restatement_of_the_update() -> None:
    # Irregular spike train on one pixel, including a long silence (> 17 frames, where a
    # float32 1 - R underflows) and a burst.
    times = [2, 5, 9, 12, 40, 41, 42, 47, 90, 93, 96, 99]
    spikes = np.zeros((110, 1, 2), np.uint8)
    spikes[times, 0, :] = 1
    for public in (False, True):
        ref = _spikecv_reference(times, 110, public)
        got = create("tfstp", public_readout=public)(spikes)[:, 0, 0]
        assert np.allclose(got, ref, rtol=2e-4, atol=1e-6), public


def test_static_uniform_scene_is_flat_and_rises_with_rate() -> None:
    levels = []
    for intensity in (0.1, 0.25, 0.45, 0.7):
        spikes = rate_spikes(np.full((12, 16), intensity), 260, seed=1)
        rate = create("tfstp")(spikes, [250])[0]
        assert rate.std() < 0.15 * rate.mean()  # flat up to the 1-frame ISI quantisation
        assert rate.mean() == pytest.approx(0.6 * intensity, rel=0.06)
        levels.append(rate.mean())
    assert np.all(np.diff(levels) > 0)


@pytest.mark.parametrize(("before", "after"), [(0.15, 0.45), (0.5, 0.12)])
def test_step_in_brightness_is_followed(before: float, after: float) -> None:
    spikes = _step_spikes(before, after, 300, 420)
    out = create("tfstp")(spikes, range(280, 420))
    means = out.mean(axis=(1, 2))
    assert means[:20].mean() == pytest.approx(0.6 * before, rel=0.06)
    # Within 40 frames (a few inter-spike intervals at the dimmer level) of the step.
    assert np.all(np.abs(means[20 + 40:] - 0.6 * after) < 0.08 * 0.6 * after)


def test_outputs_in_unit_range_float32_and_deterministic() -> None:
    rng = np.random.default_rng(5)
    spikes = (rng.random((150, 20, 30)) < rng.random((1, 20, 30))).astype(np.uint8)
    spikes[:, :2] = 1  # pixels firing every frame
    spikes[:, -2:] = 0  # silent pixels
    a = create("tfstp")(spikes, range(0, 150, 7))
    b = create("tfstp")(spikes, range(0, 150, 7))
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert np.all(a[:, -2:] == 0.0)
    assert np.allclose(a[-1, :2], 1.0, atol=1e-5)


def test_streaming_carries_state_across_chunks_and_restarts_after_gaps() -> None:
    spikes = rate_spikes(np.random.default_rng(2).random((10, 14)), 300, seed=4)
    src = ArraySource(spikes)
    small = dict(create("tfstp", chunk=7, warmup=1000).stream(src, range(0, 300, 5)))
    whole = create("tfstp", warmup=1000)(spikes, range(0, 300, 5))
    assert np.array_equal(np.stack([small[i] for i in range(0, 300, 5)]), whole)
    # Gaps longer than warmup start a new run ``warmup`` frames before the index.
    m = create("tfstp", warmup=30, chunk=16)
    got = dict(m.stream(src, [40, 250]))
    assert np.array_equal(got[250], create("tfstp")(spikes[220:251])[-1])
    assert np.array_equal(got[40], create("tfstp")(spikes[10:41])[-1])
    with pytest.raises(ParameterError):
        list(m.stream(src, [50, 40]))


def test_estimates_and_public_readout_differ_as_derived() -> None:
    spikes = rate_spikes(np.full((6, 6), 0.4), 200, seed=0)  # rate 0.24
    est = {e: create("tfstp", estimate=e)(spikes, [190])[0].mean() for e in ("mean", "r", "u")}
    for value in est.values():
        assert value == pytest.approx(0.24, rel=0.05)  # each inverts its own fixed point
    public = create("tfstp", public_readout=True)(spikes, [190])[0].mean()
    # SpikeCV's sum: rho_R plus a rho_u squashed by tau_F in place of f (far below 0.24).
    assert 0.0 < public - est["r"] < 0.3 * est["u"]


def test_on_reds_sample(reds_dir: Path) -> None:
    import imageio.v3 as iio

    dat = reds_dir / "200_part1_key_id151.dat"
    rate = create("tfstp")(open_recording(dat).read(0, 151), [150])[0]
    gt = iio.imread(dat.with_suffix(".png")).astype(np.float64) / 255.0
    gt = gt if gt.ndim == 2 else gt[..., 0]
    psnr = 10 * np.log10(1.0 / np.mean((np.clip(rate / 0.6, 0, 1) - gt) ** 2))
    assert 23.0 < psnr < 30.0  # measured 25.6 dB; TFP gets 31.6 dB on this sample
