"""ATSNet features against direct per-pixel definitions; the network's shapes and files."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spkrecon.models.atsnet import (  # noqa: E402
    ATSNet,
    ATSNetConfig,
    load_atsnet,
    mirrored,
    predict,
    save_atsnet,
    window_features,
)


def _reference(win: np.ndarray, cfg: ATSNetConfig) -> list[np.ndarray]:
    """The features of one window ``(T, H, W)`` from their definitions, pixel by pixel."""
    t, h, w = win.shape
    r = t // 2
    out = [win[r - n // 2:r + n // 2 + 1].mean(0) for n in cfg.tfp_windows]
    for k in cfg.isi_orders:
        est = np.empty((h, w))
        for y in range(h):
            for x in range(w):
                before = np.flatnonzero(win[:r + 1, y, x])[::-1]  # at or before r, nearest first
                after = np.flatnonzero(win[r + 1:, y, x])  # after r, nearest first
                p = r - before[k - 1] if len(before) >= k else r + 1
                n = after[k - 1] + 1 if len(after) >= k else r + 1
                est[y, x] = (2 * k - 1) / (p + n)
        out.append(est)
    half = cfg.snapshot_width // 2
    out += [win[r + o - half:r + o + half + 1].mean(0) for o in cfg.snapshot_offsets]
    out += [win[r + o].astype(float) for o in range(-cfg.raw_radius, cfg.raw_radius + 1)]
    return out


@pytest.mark.parametrize("rate", [0.02, 0.3])
def test_features_match_their_definitions(rate: float) -> None:
    cfg = ATSNetConfig()
    rng = np.random.default_rng(1)
    win = (rng.random((2, 2 * cfg.radius + 1, 5, 6)) < rate).astype(np.uint8)
    feats, s = window_features(torch.from_numpy(win), cfg)
    assert feats.shape == (2, cfg.channels, 5, 6)
    for b in range(2):
        ref = _reference(win[b], cfg)
        scale = float(s[b])
        assert scale == pytest.approx(max(ref[len(cfg.tfp_windows) - 1].mean(), cfg.min_scale),
                                      rel=1e-6)
        got = feats[b, :-1].numpy() * scale
        for i, expected in enumerate(ref):
            np.testing.assert_allclose(got[i], np.minimum(expected, 20 * scale), rtol=1e-5,
                                       atol=1e-7, err_msg=f"channel {i}")


def test_brightness_normalisation_makes_scaled_rates_alike() -> None:
    """A window and the same window with every other spike removed differ in scale, not in
    their normalised counts (on average)."""
    cfg = ATSNetConfig()
    rng = np.random.default_rng(2)
    win = torch.from_numpy((rng.random((1, 2 * cfg.radius + 1, 16, 16)) < 0.4).astype(np.uint8))
    bright, s_bright = window_features(win, cfg)
    dark, s_dark = window_features((win * (torch.rand(win.shape) < 0.1)).to(torch.uint8), cfg)
    assert float(s_dark) < 0.2 * float(s_bright)
    long = len(cfg.tfp_windows) - 1
    assert float(bright[0, long].mean()) == pytest.approx(1.0, abs=0.02)
    assert float(dark[0, long].mean()) == pytest.approx(1.0, abs=0.02)


def test_network_output_shape_and_weights_round_trip(tmp_path) -> None:
    cfg = ATSNetConfig(widths=(4, 8))
    model = ATSNet(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    win = (torch.rand(2, 2 * cfg.radius + 1, 10, 14) < 0.2).to(torch.uint8)
    with torch.inference_mode():
        out = predict(model, win)
    assert out.shape == (2, 10, 14)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    path = save_atsnet(model, tmp_path / "w.pt", meta={"note": "test"}, half=True)
    loaded, info = load_atsnet(str(path))
    assert info["meta"]["note"] == "test" and info["config"]["widths"] == [4, 8]
    with torch.inference_mode():
        again = predict(loaded, win)
    assert float((again - out).abs().max()) < 5e-3  # fp16 storage


def _still_scene(cfg: ATSNetConfig, seed: int, rates: tuple[float, float],
                 coarse: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A window ``(T, H, W)`` of a still scene whose pixels fire regularly (random phases) at
    a smooth rate ``(H, W)`` (bilinear from a coarse random grid), and that rate."""
    rng = np.random.default_rng(seed)
    grid = torch.from_numpy(rng.uniform(*rates, (1, 1, *coarse)))
    rate = torch.nn.functional.interpolate(grid, size=size, mode="bilinear",
                                           align_corners=False)[0, 0].numpy()
    phase = rng.random(size)
    t = np.arange(2 * cfg.radius + 1)[:, None, None]
    win = (np.floor(phase + rate * (t + 1)) > np.floor(phase + rate * t)).astype(np.uint8)
    return win, rate


def test_motion_features_are_named_and_start_as_plain_counts_on_a_still_scene() -> None:
    cfg = ATSNetConfig(motion=True)
    assert len(cfg.channel_names) == cfg.channels and cfg.channel_names[-1] == "logs"
    assert cfg.estimate_names[-len(cfg.motion_windows):] == [f"mc{n}" for n in
                                                             cfg.motion_windows]
    plain = ATSNetConfig()
    assert set(plain.channel_names) < set(cfg.channel_names)
    # A still scene: every pixel fires regularly at its own rate, so the measured motion is
    # ~0 and counts along it equal the plain counts of the same windows.
    win, _ = _still_scene(cfg, 4, (0.1, 0.6), (6, 7), (32, 40))
    feats, _ = window_features(torch.from_numpy(win[None]), cfg)
    names = cfg.channel_names
    for n in cfg.motion_windows:
        along, flat = feats[0, names.index(f"mc{n}")], feats[0, names.index(f"tfp{n}")]
        assert float((along - flat)[8:-8, 8:-8].abs().mean()) < 0.02
    assert float(feats[0, names.index("vx")].abs().max()) < 0.05


def test_motion_noise_reaches_the_estimate_and_the_weights_file(tmp_path) -> None:
    """The noise floor is part of the network's config: it changes the velocity channels of
    a faint scene (where plain Lucas-Kanade aligns noise) and survives a weights file."""
    with pytest.raises(ValueError, match="motion_noise needs"):
        ATSNetConfig(motion=True, motion_noise=(1.0, 2.0))
    rng = np.random.default_rng(7)
    coarse = torch.from_numpy(rng.uniform(0.48, 0.52, (1, 1, 5, 6)))
    rate = 0.3 * torch.nn.functional.interpolate(coarse, size=(40, 48), mode="bicubic",
                                                 align_corners=False)[0, 0].numpy()
    phase = rng.random((40, 48))
    plain_cfg = ATSNetConfig(motion=True, widths=(4, 8))
    t = np.arange(2 * plain_cfg.radius + 1)[:, None, None]
    win = torch.from_numpy((np.floor(phase + rate * (t + 1)) > np.floor(phase + rate * t))
                           .astype(np.uint8)[None])
    floored_cfg = ATSNetConfig(motion=True, widths=(4, 8), motion_noise=(16, 4, 4, 16))
    speed = {}
    for name, cfg in (("plain", plain_cfg), ("floored", floored_cfg)):
        feats, _ = window_features(win, cfg)
        vx, vy = (feats[0, cfg.channel_names.index(c)] * 4 for c in ("vx", "vy"))
        speed[name] = float(torch.hypot(vx, vy).median())
    assert speed["plain"] > 0.3 and speed["floored"] < 0.5 * speed["plain"]
    path = save_atsnet(ATSNet(floored_cfg), tmp_path / "w.pt")
    loaded, info = load_atsnet(str(path))
    assert loaded.config.motion_noise == (16.0, 4.0, 4.0, 16.0)
    assert info["config"]["motion_noise"] == [16.0, 4.0, 4.0, 16.0]


def test_motion_stages_are_part_of_the_config_and_refine_the_velocity(tmp_path) -> None:
    """Custom refinement stages replace the default ones: the noise floor then takes one value
    per stage, a stage that reaches further widens the window, and a finer stage measures a
    pan more exactly than the default stages alone (which end at 1/4 resolution)."""
    from spkrecon.models.motion import STAGES

    with pytest.raises(ValueError, match="motion_noise needs 5"):
        ATSNetConfig(motion=True, motion_stages=STAGES + ((1, 6, 4, 2, 3),),
                     motion_noise=(16, 4, 4, 16))
    with pytest.raises(ValueError, match="each motion stage needs 5 integers"):
        ATSNetConfig(motion=True, motion_stages=((3, 2, 2, 3),))
    with pytest.raises(ValueError, match="each motion stage needs 5 integers"):
        ATSNetConfig(motion=True, motion_stages=((3, 2, 4, 3, 3),))  # counts overlap
    assert ATSNetConfig(motion=True).stages == STAGES
    far = ATSNetConfig(motion=True, motion_stages=((2, 120, 16, 1, 4),))
    assert far.radius == 136
    # A smooth texture panning at 0.3 px/step, rendered as integrate-and-fire spikes.
    rng = np.random.default_rng(3)
    coarse = torch.from_numpy(rng.uniform(0.2, 0.8, (1, 1, 12, 14)))
    big = torch.nn.functional.interpolate(coarse, size=(120, 136), mode="bicubic",
                                          align_corners=False)[0, 0].clamp(0.05, 0.95)
    base = ATSNetConfig(motion=True, widths=(4, 8), motion_noise=(16, 4, 4, 16))
    fine = ATSNetConfig(motion=True, widths=(4, 8), motion_noise=(16, 4, 4, 16, 1, 1),
                        motion_stages=STAGES + ((1, 6, 4, 2, 3), (1, 12, 8, 2, 3)))
    assert fine.radius == base.radius
    t = 2 * base.radius + 1
    vx = 0.3
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(48.0), indexing="ij")
    acc = torch.from_numpy(rng.random((40, 48)))
    frames = []
    for k in range(t):
        grid = torch.stack([(2 * (xs + 40 + vx * (k - base.radius)) + 1) / 136 - 1,
                            (2 * (ys + 40) + 1) / 120 - 1], -1)
        light = torch.nn.functional.grid_sample(big[None, None].float(), grid[None],
                                                align_corners=False)[0, 0].double()
        acc += 0.6 * light
        frames.append((acc >= 1).to(torch.uint8))
        acc -= (acc >= 1).double()
    win = torch.stack(frames)[None]
    err = {}
    for name, cfg in (("base", base), ("fine", fine)):
        feats, _ = window_features(win, cfg)
        got = feats[0, cfg.channel_names.index("vx")] * 4
        # Pixel x sees the texture at x + vx * k at step k: the content moves by -vx.
        err[name] = float((got + vx)[8:-8, 8:-8].abs().mean())
    # Measured: 0.033 px/step with the default stages, 0.013 with the finer ones.
    assert err["fine"] < 0.02 and err["fine"] < 0.6 * err["base"]
    path = save_atsnet(ATSNet(fine), tmp_path / "w.pt")
    loaded, info = load_atsnet(str(path))
    assert loaded.config.stages == fine.stages
    assert info["config"]["motion_stages"][-1] == [1, 12, 8, 2, 3]


@pytest.mark.parametrize("rate", [0.004, 0.1, 0.5])
def test_intervals_match_their_definition_pixel_by_pixel(rate: float) -> None:
    from spkrecon.models.atsnet import _intervals

    rng = np.random.default_rng(11)
    t, r, reach = 61, 30, 9
    win = (rng.random((t, 5, 6)) < rate).astype(np.uint8)
    win[:, 0, 0] = 0  # a pixel that never fires
    win[:, 0, 1] = 0
    win[r - reach, 0, 1] = 1  # ... and one whose only spike is the first frame of the range
    got = _intervals(torch.from_numpy(win[None]), r, reach)[0].numpy()
    assert got.shape == (2 * reach + 1, 5, 6)
    for j in range(-reach, reach + 1):
        f = r + j
        for y in range(5):
            for x in range(6):
                spikes = np.flatnonzero(win[:, y, x])
                prev = max([i for i in spikes if i <= f], default=-1)
                nxt = min([i for i in spikes if i > f], default=t)
                assert got[j + reach, y, x] == pytest.approx(1.0 / (nxt - prev), rel=1e-6)


def test_intervals_along_the_motion_start_as_the_pixel_interval_and_read_the_rate() -> None:
    cfg = ATSNetConfig(motion=True, motion_isi=(1, 15, 63))
    names = cfg.channel_names
    assert cfg.estimate_names[-3:] == ["mi1", "mi15", "mi63"] and names.index("mi63") < \
        names.index("snap-15")
    with pytest.raises(ValueError, match="odd and positive"):
        ATSNetConfig(motion=True, motion_isi=(8,))
    # A still scene of regular integrate-and-fire pixels: no motion, so every interval
    # estimate along it is the pixel's own, about its rate, and at offset 0 exactly TFI.
    win, rate = _still_scene(cfg, 5, (0.05, 0.5), (4, 5), (24, 32))
    feats, s = window_features(torch.from_numpy(win[None]), cfg)
    assert torch.allclose(feats[0, names.index("mi1")], feats[0, names.index("isi1")],
                          atol=1e-5)
    est = (feats[0, names.index("mi63")] * s[0, 0]).numpy()
    assert np.abs(est - rate)[4:-4, 4:-4].max() < 0.1 * rate.max()
    assert np.abs(est / rate - 1)[4:-4, 4:-4].mean() < 0.05


def test_intervals_along_a_pan_are_sharper_than_counts_along_it() -> None:
    """At 1 px/step the interval estimates along the true motion beat the counts along it:
    each pixel's interval is the exact mean of the scene over the stretch it swept, where a
    count along the motion reads one Bernoulli bit per frame from a different pixel."""
    from spkrecon.models.atsnet import _intervals
    from spkrecon.models.motion import compensated_frames

    rng = np.random.default_rng(2)
    h, w, t, r, v = 24, 200, 255, 127, 1.0
    scene = np.repeat(rng.uniform(0.1, 0.5, (1, w // 4 + 80)), 4, 1)  # 4 px stripes
    scene = np.repeat(scene, h, 0)  # (h, w + 320): content moving right at v px/step
    cum = np.zeros((h, w))
    phase = rng.random((h, w))
    win = np.zeros((t, h, w), np.uint8)
    x = np.arange(w)
    for i in range(t):
        light = scene[:, (x - int(v * (i - r)) + 160)]
        before = np.floor(phase + cum)
        cum = cum + light
        win[i] = np.floor(phase + cum) > before
    truth = scene[:, x + 160]
    spk = torch.from_numpy(win[None])
    vel = torch.zeros(1, 2, h, w)
    vel[:, 0] = v
    taus = torch.arange(-7, 8)
    along_isi = compensated_frames(_intervals(spk, r, 7), 7, vel, taus).mean(1)[0].numpy()
    along_cnt = compensated_frames(spk, r, vel, taus).mean(1)[0].numpy()
    inner = (slice(2, -2), slice(20, -20))
    err_isi = np.abs(along_isi - truth)[inner].mean()
    err_cnt = np.abs(along_cnt - truth)[inner].mean()
    assert err_isi < 0.6 * err_cnt


@pytest.mark.parametrize("cfg", [
    ATSNetConfig(),
    ATSNetConfig(motion=True, motion_isi=(7, 15, 63), motion_noise=(16, 4, 4, 16)),
    ATSNetConfig(isi_orders=(), motion=True, motion_isi=(7,)),
    ATSNetConfig(motion=True, motion_isi=(15,), motion_noise=(16, 4, 4, 16, 1, 1),
                 motion_stages=((3, 2, 2, 3, 3), (3, 6, 4, 2, 3), (2, 12, 8, 2, 4),
                                (2, 24, 16, 2, 4), (1, 6, 4, 2, 3), (0, 12, 8, 1, 3))),
    ATSNetConfig(motion=True, motion_isi=(7, 31), motion_noise=(16, 4, 4, 16),
                 motion_sides=((1, 4, 16, 4, 2, 3), (0, 6, 50, 6, 1, 3)),
                 motion_side_noise=(8, 8)),
], ids=["counts", "motion-intervals", "no-orders", "fine-stages", "sides"])
def test_chunk_features_equal_window_features_exactly(cfg: ATSNetConfig) -> None:
    """The shared-work route (the method's) gives the very same features as one window per
    key frame, in the dark (pixels that never fire within a window) and in bright light."""
    from spkrecon.models.atsnet import ChunkFeatures

    r = cfg.radius
    gen = torch.Generator().manual_seed(4)
    rate = torch.rand(9, 11, generator=gen) ** 3 * 0.6
    rate[0, :3] = 0.0  # never fires
    frames = (torch.rand(2 * r + 30, 9, 11, generator=gen) < rate).to(torch.uint8)
    keys = [r, r + 1, r + 2, r + 7, r + 16, r + 29]  # the recording's first and last windows
    with torch.inference_mode():
        chunk = ChunkFeatures(frames, keys, cfg)
        # in order (counts slide by 1, 5 and 9 frames: the last recounts), then any order
        for key in keys + [r + 16, r, r + 29, r + 1]:
            x, s = chunk(key)
            wx, ws = window_features(frames[key - r:key + r + 1][None], cfg)
            assert torch.equal(x, wx) and torch.equal(s, ws), key
        with pytest.raises(ValueError, match="key frames"):
            chunk(r + 3)
    with pytest.raises(ValueError, match="must lie in"):
        ChunkFeatures(frames, [r - 1], cfg)


def test_motion_sides_are_checked_and_sample_each_side_along_its_own_velocity() -> None:
    """With ``motion_sides`` the counts along the motion follow the velocity before the key
    frame for earlier frames and the one after it for later frames; on a still scene both
    are zero and the features are the plain ones."""
    from spkrecon.models.motion import side_reach

    for bad in [((1, 4, 16, 4, 2),), ((1, 4, 4, 4, 2, 3),), ((1, 2, 16, 4, 2, 3),)]:
        with pytest.raises(ValueError, match="side stage"):
            ATSNetConfig(motion=True, motion_sides=bad)
    with pytest.raises(ValueError, match="motion_side_noise"):
        ATSNetConfig(motion=True, motion_sides=((1, 4, 16, 4, 2, 3),), motion_side_noise=(1, 1))
    far = ATSNetConfig(motion=True, motion_sides=((1, 4, 140, 4, 1, 3),))
    assert side_reach(far.motion_sides) == 144 and far.radius == 144
    cfg = ATSNetConfig(motion=True, motion_sides=((1, 4, 16, 4, 2, 3),), motion_side_noise=(8,))
    plain = ATSNetConfig(motion=True)
    r = cfg.radius
    still = (torch.rand(1, 2 * r + 1, 24, 32, generator=torch.Generator().manual_seed(2))
             < 0.3).to(torch.uint8)
    still[:] = still[:, :1]  # every frame the same: nothing moves
    x, _ = window_features(still, cfg)
    y, _ = window_features(still, plain)
    assert torch.allclose(x, y, atol=1e-5)


def test_refine_starts_as_the_network_it_grows_and_learns_a_correction(tmp_path) -> None:
    cfg = ATSNetConfig(widths=(4, 8), mixture=True)
    base = ATSNet(cfg).eval()
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.01 * torch.randn_like(p))
    grown = ATSNet(ATSNetConfig(widths=(4, 8), mixture=True, refine=(6, 5))).eval()
    missing, unexpected = grown.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("refine.") for k in missing)
    win = (torch.rand(1, 2 * cfg.radius + 1, 12, 16) < 0.2).to(torch.uint8)
    with torch.inference_mode():
        before, after = predict(base, win), predict(grown, win)
    assert torch.equal(before, after)  # the correction starts at zero
    # One gradient step on the refinement alone moves the output, and only through it.
    x, _ = window_features(win, grown.config)
    loss = (grown(x) - 0.5).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0
               for p in grown.refine.out.parameters())
    with torch.no_grad():
        grown.refine.out.weight.add_(0.05 * torch.randn_like(grown.refine.out.weight))
    with torch.inference_mode():
        moved = predict(grown, win)
    assert float((moved - before).abs().max()) > 1e-4
    path = save_atsnet(grown, tmp_path / "r.pt")
    loaded, info = load_atsnet(str(path))
    assert info["config"]["refine"] == [6, 5]
    with torch.inference_mode():
        assert torch.allclose(predict(loaded, win), moved, atol=1e-6)
    with pytest.raises(ValueError, match="refine"):
        ATSNetConfig(refine=(4, 0))


def test_mirrored_average_is_mirror_equivariant_and_the_head_runs_once_on_it() -> None:
    torch.manual_seed(3)
    cfg = ATSNetConfig(widths=(4, 8), mixture=True, refine=(6,))
    model = ATSNet(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    win = (torch.rand(1, 2 * cfg.radius + 1, 12, 18) < 0.2).to(torch.uint8)
    x, s = window_features(win, cfg)
    xm, _ = window_features(win.flip(-1), cfg)
    with torch.inference_mode():
        out, y = mirrored(model, x, 2)
        out_m, y_m = mirrored(model, xm, 2)
        single, _ = mirrored(model, x, 1)
        # The mean over {identity, left-right} of a window is that of its mirror image, mirrored.
        assert torch.allclose(out_m.flip(-1), out, atol=1e-5)
        assert torch.allclose(y_m.flip(-1), y, atol=1e-5)
        assert float((single - out).abs().max()) > 1e-4  # the mirror image does differ
        calls: list[int] = []
        hook = model.refine.register_forward_hook(lambda *_: calls.append(1))
        rates = predict(model, win, 2)
        hook.remove()
    assert len(calls) == 1
    expected = (model.refined(x, y, out)[:, 0] * s[:, 0]).clamp(0, 1)
    assert torch.allclose(rates, expected, atol=1e-6)


def test_mirrored_keeps_the_features_of_a_network_without_a_head_when_asked() -> None:
    # tools/train_refine.py caches a head's inputs from the shipped network, which has none.
    cfg = ATSNetConfig(widths=(4, 8), mixture=True)
    model = ATSNet(cfg).eval()
    win = (torch.rand(1, 2 * cfg.radius + 1, 12, 18) < 0.2).to(torch.uint8)
    x, _ = window_features(win, cfg)
    with torch.inference_mode():
        _, dropped = mirrored(model, x, 2)
        out, kept = mirrored(model, x, 2, keep=True)
        _, single = mirrored(model, x, 1, keep=True)
    assert dropped.shape[1] == 0
    assert kept.shape == (1, cfg.widths[0], 12, 18)
    assert float(kept.abs().max()) > 0
    assert float((kept - single).abs().max()) > 1e-6  # averaged over the mirror image
    assert out.shape == (1, 1, 12, 18)
