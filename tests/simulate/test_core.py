"""Integrate-and-fire core: rates, phases, saturation, determinism, TFP fidelity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spkrecon.errors import ParameterError
from spkrecon.methods.tfp import TFP
from spkrecon.simulate import (
    FrameScene,
    NoiseModel,
    SpikeCamera,
    StaticScene,
    make_generator,
    simulate_batch,
)
from spkrecon.simulate.synthetic import street_scene


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.mark.parametrize("alpha", [0.6, 0.25, 1.0])
def test_uniform_grey_fires_at_alpha_g(alpha: float) -> None:
    greys = torch.linspace(0.0, 1.0, 21)
    img = greys.view(1, 21, 1).expand(1, 21, 16)
    steps = 1000
    res = simulate_batch(StaticScene(img), steps, alpha=alpha, generator=make_generator(3))
    counts = res.spikes.sum(1)[0].double()  # (21, 16)
    expected = alpha * greys.double()[:, None] * steps
    # Subtract-on-fire keeps the remainder: every pixel is within one spike of alpha*g*T.
    assert torch.all((counts - expected).abs() <= 1.0 + 1e-3)
    rates = counts.mean(1) / steps
    assert torch.allclose(rates, alpha * greys.double(), atol=1.5 / steps)


def test_threshold_scales_the_rate() -> None:
    img = torch.full((1, 8, 16), 0.5)
    res = simulate_batch(StaticScene(img), 800, theta=2.0, generator=make_generator(0))
    rate = res.spikes.float().mean().item()
    assert abs(rate - 0.6 * 0.5 / 2.0) < 2 / 800


def test_random_initial_phase() -> None:
    img = torch.full((1, 64, 64), 0.5)  # 0.3 spikes per step
    res = simulate_batch(StaticScene(img), 10, generator=make_generator(1))
    first = res.spikes[0, 0].float().mean().item()
    # A ~ U[0, 1) fires at step 0 when A + 0.3 >= 1: probability 0.3.
    assert abs(first - 0.3) < 0.05
    # First-spike times spread over the whole period (1 / 0.3 steps).
    t_first = res.spikes[0].float().argmax(0)
    assert len(torch.unique(t_first)) >= 4


def test_saturates_at_one_spike_per_step() -> None:
    img = torch.ones(1, 4, 8)
    cam = SpikeCamera(1, 4, 8, alpha=1.0, theta=0.4, generator=make_generator(0))
    spikes = cam.integrate(img[:, None].expand(1, 50, 4, 8).contiguous())
    assert spikes[:, 1:].all()
    assert float(cam.accumulator.max()) <= 0.4 + 1e-6


def test_seed_determinism_and_chunk_independence() -> None:
    img = torch.from_numpy(street_scene(40, 48, 1).numpy()[:32, :48])[None]
    for noise in (None, NoiseModel()):
        runs = [simulate_batch(StaticScene(img), 70, noise=noise, generator=make_generator(5),
                               chunk=c).spikes for c in (7, 64, 70)]
        assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
        other = simulate_batch(StaticScene(img), 70, noise=noise, generator=make_generator(6))
        assert not torch.equal(runs[0], other.spikes)


def test_frames_tensor_and_ground_truth() -> None:
    frames = torch.stack([torch.full((2, 6, 8), v) for v in (0.0, 1.0)], dim=1)  # (2, 2, 6, 8)
    res = simulate_batch(frames, steps_per_frame=10, gt_steps=[0, 5, 10],
                         generator=make_generator(0))
    assert res.spikes.shape == (2, 11, 6, 8) and res.spikes.dtype == torch.bool
    assert res.gt.shape == (2, 3, 6, 8)
    # Linear blending between the two frames: half way at step 5.
    assert torch.allclose(res.gt[:, 1], torch.full((2, 6, 8), 0.5))
    assert torch.allclose(res.gt[:, 2], torch.ones(2, 6, 8))
    # The light ramps up smoothly, so the spike count grows along the clip.
    per_step = res.spikes.float().mean((0, 2, 3))
    assert per_step[:3].mean() < per_step[-3:].mean()


def test_scene_length_defaults_and_errors() -> None:
    scene = FrameScene(torch.rand(1, 4, 8, 8), steps_per_frame=2.5)
    assert scene.num_steps == 8
    with pytest.raises(ParameterError):
        simulate_batch(StaticScene(torch.rand(1, 8, 8)))  # endless scene, no steps
    with pytest.raises(ParameterError):
        simulate_batch(StaticScene(torch.rand(1, 8, 8)), 5, alpha=0.0)
    with pytest.raises(ParameterError):
        simulate_batch(StaticScene(torch.rand(1, 8, 8)), 5, gt_steps=[5])
    cam = SpikeCamera(1, 8, 8)
    with pytest.raises(ParameterError):
        cam.integrate(torch.rand(1, 3, 8, 9))


def test_tfp_reconstructs_a_still_image() -> None:
    """TFP (window 41, divided by alpha) of a simulated still recovers it: > 30 dB."""
    img = street_scene(64, 96, 2)
    res = simulate_batch(StaticScene(img[None]), 301, generator=make_generator(11),
                         gt_steps=[150])
    spikes = res.spikes[0].numpy().astype(np.uint8)
    rate = TFP(window=41)(spikes, [150])[0]
    recon = np.clip(rate / 0.6, 0, 1)
    gt = res.gt[0, 0].numpy()
    assert np.allclose(gt, img.numpy())
    assert psnr(recon, gt) > 30.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_unchanged_on_cuda() -> None:
    img = torch.rand(3, 32, 40)
    g = make_generator(0, "cuda")
    res = simulate_batch(StaticScene(img.cuda()), 200, noise=NoiseModel(), generator=g,
                         gt_steps=[10])
    assert res.spikes.device.type == "cuda" and res.spikes.shape == (3, 200, 32, 40)
    rate = res.spikes.float().mean(1).cpu()
    assert torch.allclose(rate, 0.6 * img, atol=0.08)
