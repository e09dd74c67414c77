"""Video clips for ATSNet training: flows computed once, cropped with the frames."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spkrecon.train import atsnet as T  # noqa: E402
from spkrecon.train.clips import FlowClips  # noqa: E402

SHIFT = 3  # px per video frame, to the right


def _clip_name(holdout: bool, start: int = 0) -> str:
    i = start
    while (zlib.crc32(f"clip_{i}".encode()) % 8 == 0) != holdout:
        i += 1
    return f"clip_{i}"


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random texture (so that flow is well defined everywhere)."""
    rng = np.random.default_rng(seed)
    img = torch.from_numpy(rng.random((1, 1, h // 4, w // 4)).astype(np.float32))
    return torch.nn.functional.interpolate(img, size=(h, w), mode="bicubic",
                                           align_corners=False)[0, 0].clamp(0, 1).numpy()


@pytest.fixture()
def videos(tmp_path: Path) -> Path:
    """Two clips (one held out) of a texture moving SHIFT px right per frame."""
    import imageio.v3 as iio

    root = tmp_path / "videos"
    for k, name in enumerate([_clip_name(False), _clip_name(True)]):
        d = root / name
        d.mkdir(parents=True)
        big = _texture(64, 96 + 5 * SHIFT, seed=k)
        for f in range(5):
            x0 = 5 * SHIFT - f * SHIFT  # content moves right: the window moves left
            iio.imwrite(d / f"frame_{f:04d}.png", (big[:, x0:x0 + 96] * 255).astype(np.uint8))
    return root


def test_holdout_split_and_shapes(videos: Path, torch_one_thread) -> None:
    train = FlowClips([str(videos)], holdout=False, flow_side=48)
    held = FlowClips([str(videos)], holdout=True, flow_side=48)
    assert train.names == [_clip_name(False)] and held.names == [_clip_name(True)]
    assert train.frames[0].shape == (5, 64, 96) and train.frames[0].dtype == torch.uint8
    flows = train.flows[0]
    assert flows.shape == (4, 6, 32, 48) and flows.dtype == torch.float16
    # flow01 points right (to where the content goes), flow10 left, in flow-map pixels.
    mid = flows[:, :, 8:24, 12:36].float()
    assert mid[:, 0].mean() == pytest.approx(SHIFT / 2, abs=0.5)
    assert mid[:, 2].mean() == pytest.approx(-SHIFT / 2, abs=0.5)
    assert mid[:, 1].abs().mean() < 0.3


def test_scene_crops_frames_and_flows_alike(videos: Path, torch_one_thread) -> None:
    clips = FlowClips([str(videos)], holdout=False, flow_side=48)
    g = torch.Generator().manual_seed(0)
    spf = 10.0
    scene = clips.scene(2, 32, 31, spf, (1.0, 1.0), g)  # scale 1: pixel crops
    assert scene.frames.shape == (2, 4, 32, 32) and scene.num_steps == 31
    # At scale 1 the flows are the clip's, in frame pixels: SHIFT px per frame.
    assert scene.pairs[0].flow01[:, 0, 4:-4, 4:-4].mean() == pytest.approx(SHIFT, abs=0.6)
    t = torch.tensor([0.0, spf, 0.5 * spf], dtype=torch.float64)
    light = scene.light_at(t)
    assert torch.allclose(light[:, 0], scene.frames[:, 0], atol=1e-6)  # frames are exact
    assert torch.allclose(light[:, 1], scene.frames[:, 1], atol=1e-6)
    # Half-way, the interpolated light is the content shifted by half a step, far closer
    # to it than a cross-fade of the two frames is.
    half = 0.5 * (scene.frames[:, 0].roll(1, -1) + scene.frames[:, 0].roll(2, -1))
    inner = (slice(None), slice(4, -4), slice(6, -6))
    err_flow = (light[:, 2] - half)[inner].abs().mean()
    fade = 0.5 * (scene.frames[:, 0] + scene.frames[:, 1])
    err_fade = (fade - half)[inner].abs().mean()
    assert err_flow < 0.5 * err_fade


def test_shifted_scene_puts_an_original_frame_at_the_key(videos: Path,
                                                         torch_one_thread) -> None:
    from spkrecon.train.clips import key_shift

    clips = FlowClips([str(videos)], holdout=False, flow_side=48)
    spf, key = 10.0, 15.0
    shift = key_shift(key, spf)
    assert shift == pytest.approx(5.0)
    assert key_shift(20.0, spf) == 0.0 and key_shift(21.0, 8.0) == pytest.approx(3.0)
    scene = clips.scene(2, 32, 31, spf, (1.0, 1.0), torch.Generator().manual_seed(0), shift)
    assert scene.num_steps >= 31
    light = scene.light_at(torch.tensor([key, key + spf, key - 0.5 * spf], dtype=torch.float64))
    # The key instant is frame 2 of the crop, exactly; one frame later, frame 3.
    assert torch.allclose(light[:, 0], scene.frames[:, 2], atol=1e-6)
    assert torch.allclose(light[:, 1], scene.frames[:, 3], atol=1e-6)
    # Half-way between frames the light is interpolated: not any original frame.
    assert all((light[:, 2] - scene.frames[:, k]).abs().mean() > 0.01 for k in range(4))
    with pytest.raises(ValueError, match="shift"):
        clips.scene(1, 32, 31, spf, (1.0, 1.0), torch.Generator().manual_seed(0), spf)


def test_make_batch_key_original(videos: Path, torch_one_thread,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With the key on an original frame the truth is that frame of the crop, exactly."""
    from spkrecon.models.atsnet import ATSNetConfig

    clips = FlowClips([str(videos)], holdout=False, flow_side=48)
    net = ATSNetConfig(tfp_windows=(3, 7, 15), isi_orders=(1,), snapshot_offsets=(-3, 3),
                       snapshot_width=3, raw_radius=1)
    scenes = []
    real = clips.scene

    def keep(*args, **kwargs):  # the real scene, kept to compare the truth with its frames
        scenes.append(real(*args, **kwargs))
        return scenes[-1]

    monkeypatch.setattr(clips, "scene", keep)
    spf = 0.8 * net.radius  # the key (step radius) then falls on frame 2 of the 5
    cfg = T.ATSTrainConfig(patch=24, batch=2, video_share=1.0, noise_prob=0.0,
                           normal_prob=1.0, video_spf_min=spf, video_spf_max=spf)

    def truth(key_original: bool | None, c: T.ATSTrainConfig = cfg) -> torch.Tensor:
        return T.make_batch([], c, net, torch.Generator().manual_seed(3), clips=clips,
                            key_original=key_original)[1] / c.alpha  # the light, not a rate

    y = truth(True)
    assert scenes[-1].shift == pytest.approx(0.6 * net.radius)
    assert scenes[-1].count == 5  # a whole clip: no frame held at its end
    assert torch.allclose(y, scenes[-1].frames[:, 2], atol=1e-5)
    y = truth(False)
    assert scenes[-1].shift == 0.0  # the key is 1.25 frames in: interpolated light
    frames = scenes[-1].frames
    assert min(float((y - frames[:, k]).abs().mean()) for k in range(frames.shape[1])) > 0.01
    truth(None, T.ATSTrainConfig(**{**cfg.__dict__, "video_key_original": 1.0}))
    assert scenes[-1].shift == pytest.approx(0.6 * net.radius)
    truth(None)  # the default, 0: never
    assert scenes[-1].shift == 0.0


def test_video_scale_range(videos: Path, torch_one_thread,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``video_scale_min/max`` set the clips' crop scale (0: the photos' range); the video
    validation keeps the photos' range, so its cached batches do not depend on them."""
    from spkrecon.models.atsnet import ATSNetConfig

    clips = FlowClips([str(videos)], holdout=False, flow_side=48)
    net = ATSNetConfig(tfp_windows=(3, 7, 15), isi_orders=(1,), snapshot_offsets=(-3, 3),
                       snapshot_width=3, raw_radius=1)
    sides = []
    real = clips.scene

    def keep(*args, **kwargs):  # the real scene; its crop side tells the scale drawn
        scene = real(*args, **kwargs)
        sides.append(args[4])
        return scene

    monkeypatch.setattr(clips, "scene", keep)
    cfg = T.ATSTrainConfig(patch=24, batch=1, video_share=1.0, noise_prob=0.0,
                           scale_min=0.9, scale_max=1.0, video_scale_min=0.3,
                           video_scale_max=0.4)
    T.make_batch([], cfg, net, torch.Generator().manual_seed(0), clips=clips)
    assert sides[-1] == (0.3, 0.4)
    plain = T.ATSTrainConfig(**{**cfg.__dict__, "video_scale_min": 0.0, "video_scale_max": 0.0})
    T.make_batch([], plain, net, torch.Generator().manual_seed(0), clips=clips)
    assert sides[-1] == (0.9, 1.0)
    val = T.make_video_validation(clips, cfg, net)
    assert len(val) == len(T.VIDEO_VAL_CONDITIONS) and set(sides[2:]) == {(0.9, 1.0)}


def test_make_batch_from_clips(videos: Path, torch_one_thread) -> None:
    from spkrecon.models.atsnet import ATSNetConfig

    clips = FlowClips([str(videos)], holdout=False, flow_side=48)
    net = ATSNetConfig(tfp_windows=(3, 7, 15), isi_orders=(1,), snapshot_offsets=(-3, 3),
                       snapshot_width=3, raw_radius=1)
    cfg = T.ATSTrainConfig(patch=24, batch=3, video_share=1.0, noise_prob=0.0,
                           normal_prob=1.0, video_spf_min=4.0, video_spf_max=4.0)
    g = torch.Generator().manual_seed(1)
    x, y = T.make_batch([], cfg, net, g, clips=clips)
    steps = 2 * net.radius + 1
    assert x.shape == (3, steps, 24, 24) and x.dtype == torch.uint8
    assert y.shape == (3, 24, 24)
    # The clip's own light (normal_prob 1): the mean rate matches alpha x the truth's mean.
    rate = x.float().mean()
    assert float(rate) == pytest.approx(float(y.mean()), rel=0.1)


def test_cache_round_trip(videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          torch_one_thread) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a = FlowClips.cached([str(videos)], holdout=False, flow_side=48)
    assert len(list((tmp_path / "cache").rglob("atsnet-clips-*.pt"))) == 1
    b = FlowClips.cached([str(videos)], holdout=False, flow_side=48)
    assert b.names == a.names
    assert torch.equal(b.frames[0], a.frames[0]) and torch.equal(b.flows[0], a.flows[0])


def test_no_clips_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    folder = tmp_path / "only" / _clip_name(True)
    folder.mkdir()
    import imageio.v3 as iio

    for f in range(2):
        iio.imwrite(folder / f"frame_{f}.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="no training clips"):
        FlowClips([str(tmp_path / "only")], holdout=False)


@pytest.mark.slow
def test_training_with_videos_logs_their_validation(videos: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    torch_one_thread) -> None:
    import json

    import imageio.v3 as iio

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    i = 0
    while len(list(images.iterdir())) < 3:  # two training photos, one held out
        name = f"img_{i:04d}.png"
        held = zlib.crc32(name.encode()) % 8 == 0
        if held == (len(list(images.iterdir())) == 2):
            iio.imwrite(images / name, (rng.random((48, 56)) * 255).astype(np.uint8))
        i += 1
    out = tmp_path / "run"
    cfg = T.ATSTrainConfig(images=[str(images)], out=str(out), patch=16, batch=2,
                           total_steps=3, warmup=1, minutes=5, workers=0, reuse=1,
                           val_per_condition=1, val_patch=16, log_every=1,
                           videos=[str(videos)], video_share=0.5,
                           model={"mixture": True, "widths": [4, 8]})
    T.train(cfg)
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    vals = [r for r in recs if "val" in r]
    assert vals and all(set(r["val_video"]) == {c[0] for c in T.VIDEO_VAL_CONDITIONS}
                        | {"mean"} for r in vals)
    assert json.loads((out / "config.json").read_text())["videos"] == [str(videos)]
    assert list((tmp_path / "cache").rglob("atsnet-clips-*.pt"))  # both splits cached
