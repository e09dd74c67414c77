"""Motion synthesis: exact sub-frame paths, camera bounds, sprites, seeds, training batches."""

from __future__ import annotations

import math

import pytest
import torch

from spkrecon.errors import ParameterError
from spkrecon.simulate import (
    BLOCK_CENTRES,
    MotionConfig,
    MotionScene,
    Sprites,
    Trajectory,
    make_generator,
    prepare_background,
    random_crops,
    random_motion_scene,
    training_batch,
)
from spkrecon.simulate.synthetic import fractal_noise, street_scene

T64 = torch.float64


def texture(h: int = 120, w: int = 160, seed: int = 0) -> torch.Tensor:
    return fractal_noise(h, w, torch.Generator().manual_seed(seed), octaves=6, base=6)


def test_trajectory_closed_form_and_velocity() -> None:
    g = make_generator(0)
    scene = random_motion_scene(texture()[None], (40, 60), 50, MotionConfig(), g)
    t = torch.linspace(0, 49, 50, dtype=T64)
    q = scene.camera.at(t)
    v = scene.camera.velocity(t)
    eps = 1e-4
    fd = (scene.camera.at(t + eps) - scene.camera.at(t - eps)) / (2 * eps)
    assert torch.allclose(fd, v, atol=1e-6)
    lin = Trajectory.linear(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, -1.0]]),
                            torch.tensor([[0.0, 0.2]]), origin=10.0)
    vals = lin.at(torch.tensor([10.0, 12.0], dtype=T64))
    assert torch.allclose(vals[0, 1], torch.tensor([2.0, 2.0 - 2.0 + 0.4], dtype=T64))
    assert q.shape == (1, 50, 4)


def test_pan_is_exact_sub_frame_motion() -> None:
    bg = texture()
    cam = Trajectory.linear(torch.tensor([[80.0, 60.0, 0.0, 0.0]]),
                            torch.tensor([[0.5, -0.25, 0.0, 0.0]]))
    scene = MotionScene(bg[None], (40, 60), cam)
    light = scene.light_at(torch.tensor([0.0, 4.0, 0.5, 1.0], dtype=T64))[0]
    # After 4 steps the view moved by (2, -1) pixels: a pure shift of the first view.
    assert torch.allclose(light[1][1:, :-2], light[0][:-1, 2:], atol=1e-5)
    # A time between steps is rendered from the path, not blended from steps: at t = 0.5 the
    # view is shifted by (0.25, -0.125), not the average of the views at t = 0 and t = 1.
    avg = 0.5 * (light[0] + light[3])
    assert not torch.allclose(light[2], avg, atol=1e-4)
    ref = MotionScene(bg[None], (40, 60), Trajectory.linear(
        torch.tensor([[80.25, 59.875, 0.0, 0.0]]))).light_at(torch.zeros(1, dtype=T64))[0, 0]
    assert torch.allclose(light[2], ref, atol=1e-5)


def test_bicubic_resampling_keeps_fine_detail() -> None:
    bg = texture()
    cam = Trajectory.linear(torch.tensor([[80.0, 60.0, 0.0, 0.0]]))  # half-pixel offsets
    views = {m: MotionScene(bg[None], (40, 60), cam, resample=m).light_at(
        torch.zeros(1, dtype=T64))[0, 0] for m in ("bilinear", "bicubic")}
    # the same view, but bilinear at half a pixel is a 2x2 box blur: less high frequency
    torch.testing.assert_close(views["bicubic"].mean(), views["bilinear"].mean(), atol=2e-3,
                               rtol=0)

    def detail(x: torch.Tensor) -> float:
        return float((x[1:] - x[:-1]).pow(2).mean() + (x[:, 1:] - x[:, :-1]).pow(2).mean())

    assert detail(views["bicubic"]) > 1.2 * detail(views["bilinear"])
    # integer offsets: both reproduce the background exactly
    exact = Trajectory.linear(torch.tensor([[80.5, 60.5, 0.0, 0.0]]))
    for m in ("bilinear", "bicubic"):
        view = MotionScene(bg[None], (40, 60), exact, resample=m).light_at(
            torch.zeros(1, dtype=T64))[0, 0]
        torch.testing.assert_close(view, bg[41:81, 51:111], atol=1e-4, rtol=0)
    scene = random_motion_scene(bg[None], (40, 60), 20, MotionConfig(resample="bicubic"),
                                make_generator(1))
    assert scene.resample == "bicubic" and scene.to("cpu").resample == "bicubic"
    with pytest.raises(ParameterError, match="resampling"):
        MotionConfig(resample="nearest-ish")


def test_align_key_gives_an_exact_crop_at_the_key_time() -> None:
    bg = texture()
    cfg = MotionConfig(camera_max_speed=0.4, static_prob=0.0, objects=(0, 0))
    for seed in range(3):
        scene = random_motion_scene(bg[None], (24, 32), 41, cfg, make_generator(seed),
                                    key_step=20.5, align_key=True)
        view, later = scene.light_at(torch.tensor([20.5, 22.0], dtype=T64))[0]
        err = min(float((view - bg[y:y + 24, x:x + 32]).abs().max())
                  for y in range(120 - 24) for x in range(160 - 32))
        assert err < 1e-5  # whole-pixel position, no zoom or rotation: no resampling
        assert not torch.allclose(view, later, atol=1e-3)  # and it still moves
        free = random_motion_scene(bg[None], (24, 32), 41, cfg, make_generator(seed),
                                   key_step=20.5)
        torch.testing.assert_close(free.camera.v, scene.camera.v)  # the same path, moved


def test_rotation_and_zoom_about_the_view_centre() -> None:
    bg = texture(200, 200)
    cam = Trajectory.linear(torch.tensor([[99.5, 99.5, math.log(2.0), math.pi / 2]]))
    scene = MotionScene(bg[None], (41, 41), cam)
    m = scene.camera_affine(torch.zeros(1, dtype=T64))[0, 0]
    centre = m @ torch.tensor([20.0, 20.0, 1.0], dtype=T64)
    right = m @ torch.tensor([30.0, 20.0, 1.0], dtype=T64)
    assert torch.allclose(centre, torch.tensor([99.5, 99.5], dtype=T64))
    # 10 output pixels to the right = 5 background pixels (zoom 2), turned by 90 degrees.
    assert torch.allclose(right - centre, torch.tensor([0.0, 5.0], dtype=T64), atol=1e-5)


def test_camera_stays_inside_the_background() -> None:
    bg = texture(90, 120)
    cfg = MotionConfig(camera_max_speed=3.0, static_prob=0.0, max_zoom_rate=0.01,
                       max_rotation_rate=0.01, objects=(0, 0))
    scene = random_motion_scene(bg[None].expand(6, 90, 120), (40, 60), 100, cfg,
                                make_generator(2))
    m = scene.camera_affine(torch.arange(100, dtype=T64))  # (B, T, 2, 3)
    corners = torch.tensor([[-0.5, -0.5, 1.0], [59.5, -0.5, 1.0], [-0.5, 39.5, 1.0],
                            [59.5, 39.5, 1.0]], dtype=T64)
    pts = torch.einsum("btij,cj->btci", m, corners)
    assert float(pts[..., 0].min()) >= -0.5 - 1e-6 and float(pts[..., 0].max()) <= 119.5 + 1e-6
    assert float(pts[..., 1].min()) >= -0.5 - 1e-6 and float(pts[..., 1].max()) <= 89.5 + 1e-6
    speed = scene.camera.velocity(torch.arange(100, dtype=T64))[..., :2].norm(dim=-1)
    assert float(speed.max()) > 0.05  # it does move
    with pytest.raises(ParameterError):
        random_motion_scene(texture(30, 40)[None], (40, 60), 10, cfg, make_generator(0))


def test_sprite_moves_with_its_path() -> None:
    bg = torch.full((1, 60, 100), 0.2)
    size = 15
    disc = (torch.arange(size) - 7.0).pow(2)
    mask = ((disc[:, None] + disc[None, :]) <= 36).float()
    layers = torch.stack([mask * 0.9, mask])[None, None]  # (1, 1, 2, S, S)
    path = Trajectory.linear(torch.tensor([[[20.0, 30.0, 0.0, 0.0]]]),
                             torch.tensor([[[3.5, 0.5, 0.0, 0.0]]]))
    cam = Trajectory.linear(torch.tensor([[50.0, 30.0, 0.0, 0.0]]))
    scene = MotionScene(bg, (60, 100), cam, Sprites(layers, path))
    light = scene.light_at(torch.tensor([0.0, 10.0], dtype=T64))[0]
    ys, xs = torch.meshgrid(torch.arange(60.0), torch.arange(100.0), indexing="ij")
    cents = []
    for frame in light:
        wgt = (frame - 0.2).clamp(min=0)
        cents.append(torch.stack([(wgt * xs).sum() / wgt.sum(), (wgt * ys).sum() / wgt.sum()]))
    move = cents[1] - cents[0]
    assert torch.allclose(move, torch.tensor([35.0, 5.0]), atol=0.3)
    assert torch.allclose(cents[0], torch.tensor([20.0, 30.0]), atol=0.3)


def test_random_scenes_are_seeded_and_reach_fast_speeds() -> None:
    imgs = torch.stack([street_scene(100, 140, s) for s in range(4)])
    cfg = MotionConfig(objects=(2, 2), max_speed=4.0, static_prob=0.0)
    a = random_motion_scene(imgs, (48, 64), 41, cfg, make_generator(7))
    b = random_motion_scene(imgs, (48, 64), 41, cfg, make_generator(7))
    c = random_motion_scene(imgs, (48, 64), 41, cfg, make_generator(8))
    t = torch.arange(41, dtype=T64)
    la, lb, lc = (s.light_at(t) for s in (a, b, c))
    assert torch.equal(la, lb)
    assert not torch.equal(la, lc)
    assert torch.equal(a.to("cpu").light_at(t[:5]), la[:, :5])
    assert la.shape == (4, 41, 48, 64) and 0 <= float(la.min()) and float(la.max()) <= 1
    speeds = a.sprites.path.velocity(t)[..., :2].norm(dim=-1)  # (B, K, T)
    assert float(speeds.max()) <= 4.0 * 1.2
    many = random_motion_scene(imgs.repeat(8, 1, 1), (48, 64), 41, cfg, make_generator(9))
    fast = many.sprites.path.velocity(t)[..., :2].norm(dim=-1).amax(-1)
    assert float(fast.max()) > 2.0  # several pixels per step occur
    assert float(fast.min()) < 0.5  # and slow ones too


def test_static_config_gives_a_still_scene() -> None:
    scene = random_motion_scene(texture()[None], (40, 60), 30, MotionConfig.still(),
                                make_generator(0))
    light = scene.light_at(torch.tensor([0.0, 29.0], dtype=T64))
    assert torch.allclose(light[0, 0], light[0, 1])


def test_prepare_background_covers_with_margin() -> None:
    bg = prepare_background(texture(50, 200), (40, 60), margin=0.25)
    assert bg.shape[0] >= 50 and bg.shape[1] >= 75


def test_training_batch_shapes_and_seed() -> None:
    imgs = [street_scene(120, 150, s) for s in range(3)] + [texture(30, 30)]
    a = training_batch(imgs, 4, generator=make_generator(1), motion=MotionConfig(objects=(1, 2)))
    b = training_batch(imgs, 4, generator=make_generator(1), motion=MotionConfig(objects=(1, 2)))
    assert a.spikes.shape == (4, 41, 40, 40) and a.spikes.dtype == torch.bool
    assert a.gt.shape == (4, 5, 40, 40) and a.gt_steps == list(BLOCK_CENTRES)
    assert torch.equal(a.spikes, b.spikes) and torch.equal(a.gt, b.gt)
    crops = random_crops(imgs, 5, (64, 64), make_generator(2))
    assert crops.shape == (5, 64, 64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_batch_on_cuda() -> None:
    imgs = [street_scene(120, 150, s) for s in range(3)]
    res = training_batch(imgs, 8, generator=make_generator(0, "cuda"))
    assert res.spikes.device.type == "cuda" and res.gt.device.type == "cuda"
    again = training_batch(imgs, 8, generator=make_generator(0, "cuda"))
    assert torch.equal(res.spikes, again.spikes)


def test_a_turn_changes_the_velocity_at_the_origin_and_keeps_the_path_continuous() -> None:
    turn = torch.tensor([[0.25, -0.5]], dtype=torch.float64)
    path = Trajectory.linear(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, -1.0]]),
                             origin=10.0)
    path.turn = turn
    t = torch.tensor([0.0, 9.0, 10.0, 11.0, 30.0], dtype=torch.float64)
    q = path.at(t)[0]
    assert torch.allclose(q[:3], torch.tensor([[-4.0, 12.0], [0.5, 3.0], [1.0, 2.0]],
                                              dtype=torch.float64))
    assert torch.allclose(q[3], torch.tensor([1.75, 0.5], dtype=torch.float64))
    assert torch.allclose(q[4], torch.tensor([16.0, -28.0], dtype=torch.float64))
    vel = path.velocity(t)[0]
    assert torch.allclose(vel[:3], torch.tensor([0.5, -1.0], dtype=torch.float64).expand(3, 2))
    assert torch.allclose(vel[3:], torch.tensor([0.75, -1.5], dtype=torch.float64).expand(2, 2))
    half = path.scaled(torch.tensor([0.5]))
    assert torch.allclose(half.velocity(t)[0, 4], torch.tensor([0.375, -0.75],
                                                               dtype=torch.float64))
    assert torch.equal(path.to("cpu").turn, turn)
