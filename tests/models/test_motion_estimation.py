"""Motion from spikes: velocity estimates on real integrate-and-fire spikes of moving
textures, and counts along the motion against shifted frames."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from spkrecon.models import motion  # noqa: E402

H, W, T, R = 96, 128, 2 * motion.reach() + 1, motion.reach()


def texture(seed: int = 0) -> torch.Tensor:
    """A smooth random texture ``(H + 2m, W + 2m)`` in [0.1, 0.9] with a margin m."""
    g = torch.Generator().manual_seed(seed)
    m = 200
    coarse = torch.rand((1, 1, (H + 2 * m) // 8 + 2, (W + 2 * m) // 8 + 2), generator=g)
    img = F.interpolate(coarse, scale_factor=8, mode="bicubic", align_corners=False)[0, 0]
    return (0.1 + 0.8 * img.clamp(0, 1))[: H + 2 * m, : W + 2 * m], m


def spikes(v: tuple[float, float], rate: float = 0.5, seed: int = 0,
           contrast: float = 1.0, after: tuple[float, float] | None = None) -> torch.Tensor:
    """Integrate-and-fire spikes ``(1, T, H, W)`` of the texture translating at ``v``
    px/step (content at ``x`` at the key frame is at ``x + v * tau`` ``tau`` steps later),
    its contrast about mid-grey scaled by ``contrast``; ``after``: the velocity after the
    key frame, when it turns there."""
    img, m = texture(seed)
    img = 0.5 + contrast * (img - 0.5)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32),
                            torch.arange(W, dtype=torch.float32), indexing="ij")
    acc = torch.rand((H, W), generator=torch.Generator().manual_seed(seed + 1))
    out = torch.zeros((T, H, W), dtype=torch.uint8)
    hs, ws = img.shape
    for t in range(T):
        tau = t - R
        u = v if after is None or tau <= 0 else after
        gx, gy = xs - u[0] * tau + m, ys - u[1] * tau + m
        grid = torch.stack([(2 * gx + 1) / ws - 1, (2 * gy + 1) / hs - 1], -1)[None]
        light = F.grid_sample(img[None, None], grid, align_corners=False)[0, 0]
        acc += rate * light
        fire = acc >= 1.0
        acc[fire] -= 1.0
        out[t] = fire
    return out[None]


@pytest.mark.parametrize("v", [(0.0, 0.0), (0.4, -0.2), (1.0, 0.5), (-2.0, 1.0)])
def test_velocity_of_a_translating_texture(v: tuple[float, float]) -> None:
    est = motion.estimate_velocity(spikes(v), R)
    assert est.shape == (1, 2, H, W)
    inner = est[0, :, 16:-16, 16:-16]
    err = (inner - torch.tensor(v)[:, None, None]).norm(dim=0)
    assert float(err.median()) < 0.1 + 0.05 * max(abs(v[0]), abs(v[1]))


def test_counts_along_an_integer_motion_are_shifted_frames() -> None:
    win = (torch.rand((1, 21, 40, 50), generator=torch.Generator().manual_seed(3)) < 0.4)
    win = win.to(torch.uint8)
    v = torch.zeros((1, 2, 40, 50))
    v[:, 0] = 1.0  # one px to the right per step
    taus = torch.arange(-3, 4)
    got = motion.compensated_frames(win, 10, v, taus)
    for i, tau in enumerate(taus.tolist()):
        want = win[0, 10 + tau].float()
        # x + tau, inside the frame
        lo, hi = max(0, -tau), 50 - max(0, tau)
        assert torch.allclose(got[0, i, :, lo:hi], want[:, lo + tau:hi + tau], atol=1e-4)


def test_still_scene_has_no_motion_and_counts_match_plain_ones() -> None:
    win = spikes((0.0, 0.0))
    est = motion.estimate_velocity(win, R)
    assert float(est.abs().median()) < 0.03 and float(est.abs().max()) < 0.15
    taus = torch.arange(-7, 8)
    along = motion.compensated_frames(win, R, torch.zeros_like(est), taus).mean(1)
    plain = win[:, R - 7:R + 8].float().mean(1)
    assert torch.allclose(along, plain)


def test_too_short_a_window_is_refused() -> None:
    with pytest.raises(ValueError, match="frames on each side"):
        motion.estimate_velocity(torch.zeros((1, 11, 16, 16), dtype=torch.uint8), 5)


def test_counts_along_the_estimated_motion_are_sharper_than_plain_ones() -> None:
    """On a texture moving at 1 px/step, a 31-frame count along the measured motion is
    closer to the key frame's light than the plain 31-frame count (blurred over 31 px)."""
    rate = 0.5
    win = spikes((1.0, 0.5), rate=rate)
    img, m = texture()
    truth = rate * img[m:m + H, m:m + W]
    v = motion.estimate_velocity(win, R)
    taus = torch.arange(-15, 16)
    along = motion.compensated_frames(win, R, v, taus).mean(1)[0]
    plain = win[0, R - 15:R + 16].float().mean(0)
    inner = (slice(20, -20), slice(20, -20))
    err_along = float((along - truth)[inner].pow(2).mean().sqrt())
    err_plain = float((plain - truth)[inner].pow(2).mean().sqrt())
    assert err_along < 0.75 * err_plain


NOISE = (16.0, 4.0, 4.0, 16.0)  # the shipped network's (docs/atsnet.md)


def test_a_faint_still_texture_moves_only_with_the_noise_floor_off() -> None:
    """Where the texture is barely above the spike-count noise (a floor, a wall), plain
    Lucas-Kanade aligns noise; the noise floor keeps such a scene still."""
    win = spikes((0.0, 0.0), rate=0.3, contrast=0.03, seed=4)
    plain = motion.estimate_velocity(win, R).norm(dim=1)
    floored = motion.estimate_velocity(win, R, noise=NOISE).norm(dim=1)
    assert float(plain.median()) > 1.0  # measured: 5.7 px/step of made-up motion
    assert float(floored.median()) < 0.2  # measured: 0.10


@pytest.mark.parametrize("v", [(0.4, -0.2), (-2.0, 1.0)])
def test_the_noise_floor_keeps_textured_motion(v: tuple[float, float]) -> None:
    est = motion.estimate_velocity(spikes(v), R, noise=NOISE)
    err = (est[0, :, 16:-16, 16:-16] - torch.tensor(v)[:, None, None]).norm(dim=0)
    assert float(err.median()) < 0.1 + 0.05 * max(abs(v[0]), abs(v[1]))


def test_noise_floor_needs_one_value_per_stage() -> None:
    with pytest.raises(ValueError):
        motion.estimate_velocity(spikes((0.0, 0.0)), R, noise=(1.0, 2.0))


SIDES = ((1, 4, 16, 4, 1, 4), (1, 6, 30, 6, 1, 4))  # the shipped network's


def test_each_side_of_a_turn_gets_its_own_velocity() -> None:
    """A texture that turns at the key frame (as a video interpolated between frames does
    at every original frame): the one-sided refinements find the velocity before and after
    it, where the estimate through the key frame finds about their mean; the counts along
    the two velocities are closer to the key frame's light than those along the one."""
    before, after = (0.3, 0.1), (0.15, 0.3)
    rate = 0.5
    win = spikes(before, rate=rate, after=after)
    v = motion.estimate_velocity(win, R, noise=NOISE)
    back, ahead = motion.estimate_sides(win, R, v, SIDES, noise=(16.0, 16.0))
    inner = (slice(None), slice(16, -16), slice(16, -16))

    def err(est: torch.Tensor, want: tuple[float, float]) -> float:
        return float((est[0][inner] - torch.tensor(want)[:, None, None]).norm(dim=0).median())

    assert err(back, before) < 0.1 and err(ahead, after) < 0.1  # measured 0.073, 0.076
    assert err(v, before) > 0.11 and err(v, after) > 0.11  # measured 0.127, 0.124
    img, m = texture()
    truth = rate * img[m:m + H, m:m + W]
    taus = torch.arange(-31, 32)
    one = motion.compensated_frames(win, R, v, taus).mean(1)[0]
    two = motion.compensated_frames(win, R, (back, ahead), taus).mean(1)[0]
    e1 = float((one - truth)[16:-16, 16:-16].pow(2).mean().sqrt())
    e2 = float((two - truth)[16:-16, 16:-16].pow(2).mean().sqrt())
    assert e2 < 0.75 * e1  # measured 0.0222 against 0.0378


def test_sides_of_a_straight_motion_agree_and_a_pair_of_one_velocity_is_that_velocity() -> None:
    v0 = (0.4, -0.2)
    win = spikes(v0)
    v = motion.estimate_velocity(win, R, noise=NOISE)
    back, ahead = motion.estimate_sides(win, R, v, SIDES, noise=(16.0, 16.0))
    for est in (back, ahead):
        err = (est[0, :, 16:-16, 16:-16] - torch.tensor(v0)[:, None, None]).norm(dim=0)
        assert float(err.median()) < 0.05
    taus = torch.arange(-9, 10)
    assert torch.equal(motion.compensated_frames(win, R, (v, v), taus),
                       motion.compensated_frames(win, R, v, taus))
    with pytest.raises(ValueError, match="frames on each side"):
        motion.estimate_sides(win[:, :41], 20, v, SIDES)
