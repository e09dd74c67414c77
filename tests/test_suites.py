"""The project's evaluation suites (spkrecon.suites, benchmarks/eval_suites.py), small."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spkrecon import suites as S  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = (32, 40)


def _holdout_names(n: int, stem: str = "img") -> list[str]:
    names, i = [], 0
    while len(names) < n:
        name = f"{stem}_{i:04d}.png"
        if zlib.crc32(name.encode()) % 8 == 0:
            names.append(name)
        i += 1
    return names


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five held-out textured images and two that are not held out."""
    import imageio.v3 as iio

    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    kept = _holdout_names(5)
    other = [f"img_{i:04d}.png" for i in range(40) if not S.is_holdout(f"img_{i:04d}.png")][:2]
    for name in kept + other:
        base = rng.random((12, 15))
        img = np.kron(base, np.ones((8, 8)))  # 96 x 120 blocks
        img = 0.15 + 0.7 * (0.6 * img + 0.4 * rng.random(img.shape))
        iio.imwrite(d / name, (img * 255).astype(np.uint8))
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def images(image_dir: Path) -> list[Path]:
    return S.holdout_images(image_dir)


def _speed(**kw: object) -> S.SuiteSpec:
    spec = S.speed_suite(per_condition=1, size=SIZE, seed=3)
    return S.SuiteSpec(**{**spec.to_dict(), "conditions": spec.conditions, **kw})


@pytest.fixture(scope="module")
def speed_built(tmp_path_factory: pytest.TempPathFactory, images: list[Path]
                ) -> tuple[Path, dict]:
    with torch_threads(1):
        return S.build_suite(_speed(), images, tmp_path_factory.mktemp("suites"))


class torch_threads:
    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.old)


def test_holdout_rule(image_dir: Path, images: list[Path]) -> None:
    assert S.is_holdout("bsds500_test_10081.jpg")  # crc32 % 8 == 0
    for name in ("a.png", "b.jpg", "bsds500_test_100007.jpg", "wikiphoto_001.jpg"):
        assert S.is_holdout(name) == (zlib.crc32(name.encode()) % 8 == 0)
    assert [p.name for p in images] == sorted(_holdout_names(5))
    assert all(S.is_holdout(p.name) for p in images)
    with pytest.raises(Exception, match="not a folder"):
        S.holdout_images(image_dir / "missing")


def test_recording_seeds_are_independent() -> None:
    a = S.speed_suite(per_condition=2)
    b = S.speed_suite(per_condition=8, speeds=(0.0, 0.15, 0.3, 0.5, 1.0, 2.0, 4.0))
    assert S.recording_seeds(a, 2.0, 1) == S.recording_seeds(b, 2.0, 1)
    assert S.recording_seeds(a, 2.0, 1) != S.recording_seeds(a, 2.0, 0)
    assert S.recording_seeds(a, 1.0, 0) != S.recording_seeds(S.light_suite(), 1.0, 0)


def test_pan_and_sprites_move_at_the_requested_speed(images: list[Path]) -> None:
    spec = S.speed_suite(per_condition=2, size=(64, 80), seed=0)
    with torch_threads(1):
        pan, _ = S.plan_recording(spec, 1.0, 0, images)
        sprites, _ = S.plan_recording(spec, 2.0, 1, images)
    assert pan.kind == "pan" and sprites.kind == "sprites"
    t = torch.tensor([0.0, 100.0, 137.5, 200.0], dtype=torch.float64)
    v = pan.scene.camera.velocity(t)[0, :, :2].norm(dim=-1)
    assert torch.allclose(v, torch.full_like(v, 1.0), atol=1e-12)
    q = pan.scene.camera.at(t)[0]
    assert torch.allclose(q[:, 2:], torch.zeros_like(q[:, 2:]))  # no zoom, no rotation
    sv = sprites.scene.sprites.path.velocity(t)[0, :, :, :2].norm(dim=-1)
    assert torch.allclose(sv, torch.full_like(sv, 2.0), atol=1e-12)
    assert sprites.scene.sprites.count == 2
    cam = sprites.scene.camera.velocity(t)[0, :, :2]
    assert float(cam.abs().max()) == 0.0
    # Measured on the images: the truth 10 steps after the key frame is the key view
    # shifted by 10 px (the best whole-pixel shift is within rounding of the trajectory's).
    with torch_threads(1):
        a, b = pan.scene.light_at(torch.tensor([100.0, 110.0], dtype=torch.float64))[0]
    a, b = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
    best, err = (0, 0), math.inf
    m = 12
    for dy in range(-11, 12):
        for dx in range(-11, 12):
            # b(y, x) = a(y + dy, x + dx) when the camera moved by (dx, dy)
            d = b[m:-m, m:-m] - a[m + dy:a.shape[0] - m + dy, m + dx:a.shape[1] - m + dx]
            e = float(np.mean(d * d))
            if e < err:
                best, err = (dx, dy), e
    ang = math.radians(pan.info["direction_deg"])
    assert abs(best[0] - 10 * math.cos(ang)) <= 0.75 and abs(best[1] - 10 * math.sin(ang)) <= 0.75
    assert math.hypot(*best) == pytest.approx(10, abs=1.0)


def _fine_detail(img: np.ndarray) -> float:
    """RMS of the high-pass (minus a 3x3 box blur) of a mean-normalised image."""
    img = img / img.mean()
    pad = np.pad(img, 1, mode="edge")
    blur = sum(pad[dy:dy + img.shape[0], dx:dx + img.shape[1]]
               for dy in range(3) for dx in range(3)) / 9.0
    return float(np.sqrt(np.mean((img - blur) ** 2)))


def test_detail_suite_views_shrunk_mosaics_at_the_requested_speed(images: list[Path]) -> None:
    """The detail suite's views hold more fine detail than the speed suite's, from four
    held-out images per background, and move as the speed suite's do."""
    size = (64, 80)
    spec = S.detail_suite(per_condition=2, size=size, seed=0)
    plain = S.speed_suite(per_condition=2, size=size, seed=0)
    assert spec.conditions == S.DETAIL_SPEEDS and "detail" in S.SUITE_NAMES
    key = torch.tensor([float(spec.key)], dtype=torch.float64)
    detail, fine = [], []
    with torch_threads(1):
        for index in range(4):
            d, _ = S.plan_recording(spec, 0.5, index, images)
            p, _ = S.plan_recording(plain, 0.5, index, images)
            assert d.kind == p.kind and d.speed == 0.5
            if d.kind == "pan":
                assert len(set(d.info["mosaic"])) == 4
                assert all(n in {q.name for q in images} for n in d.info["mosaic"])
                assert d.info["background"] == [2 * math.ceil(n * 2.5 / 2) for n in size]
                v = d.scene.camera.velocity(key)[0, :, :2].norm(dim=-1)
                assert torch.allclose(v, torch.full_like(v, 0.5), atol=1e-12)
            detail.append(_fine_detail(d.scene.light_at(key)[0, 0].numpy().astype(np.float64)))
            fine.append(_fine_detail(p.scene.light_at(key)[0, 0].numpy().astype(np.float64)))
    # The test images are 8x8 blocks plus noise: shrinking them 2x halves the block size.
    # Measured: 0.089-0.096 against 0.065-0.071.
    assert min(detail) > 1.15 * max(fine), (detail, fine)


def test_turn_suite_motion_turns_at_the_key_frame(images: list[Path]) -> None:
    """Pans and sprites of the turn suite move at the condition's speed up to the key frame
    and change velocity there by TURN_SHARE of it; the speed suite's do not turn."""
    spec = S.turn_suite(per_condition=2, size=(64, 80), seed=0)
    assert spec.conditions == S.TURN_SPEEDS and "turn" in S.SUITE_NAMES
    key = float(spec.key)
    t = torch.tensor([0.0, key - 1, key, key + 1, key + 100], dtype=torch.float64)
    with torch_threads(1):
        pan, _ = S.plan_recording(spec, 0.5, 0, images)
        sprites, _ = S.plan_recording(spec, 0.5, 1, images)
        straight, _ = S.plan_recording(S.speed_suite(2, (64, 80)), 0.5, 0, images)
    v = pan.scene.camera.velocity(t)[0, :, :2]
    assert torch.allclose(v[:3].norm(dim=-1), torch.full((3,), 0.5, dtype=torch.float64))
    change = v[3:] - v[:1]
    assert torch.allclose(change.norm(dim=-1), torch.full((2,), S.TURN_SHARE * 0.5,
                                                          dtype=torch.float64))
    assert pan.info["turn"] == [round(float(x), 4) for x in change[0]]
    sv = sprites.scene.sprites.path.velocity(t)[0, :, :, :2]  # (sprites, times, 2)
    assert torch.allclose((sv[:, 3] - sv[:, 0]).norm(dim=-1),
                          torch.full((2,), S.TURN_SHARE * 0.5, dtype=torch.float64))
    assert straight.scene.camera.turn is None and "turn" not in straight.info


def test_turn_suite_builds_scores_and_tabulates(tmp_path: Path, images: list[Path]) -> None:
    spec = S.turn_suite(per_condition=2, size=SIZE, seed=3, speeds=(0.5,))
    with torch_threads(1):
        built = S.build_suite(spec, images, tmp_path)
        result = S.score_suites([built], S.parse_methods("tfp"))
    assert [len(r["turn"]) for r in built[1]["recordings"]] == [2, 2]  # pan; two sprites
    assert {s["label"] for s in result["scores"]} == {"0.5"}
    text = S.markdown_tables(result, ["turn"])
    assert "**turn suite, PSNR (dB)**" in text
    assert "| speed before the key frame (px/step) | n | tfp |" in text


def test_suite_builds_deterministically(tmp_path: Path, images: list[Path],
                                        speed_built: tuple[Path, dict]) -> None:
    folder, meta = speed_built
    assert len(meta["recordings"]) == 6
    assert [r["label"] for r in meta["recordings"]] == ["0", "0.15", "0.5", "1", "2", "4"]
    for r in meta["recordings"]:
        assert (folder / r["dat"]).stat().st_size == 257 * SIZE[0] * SIZE[1] // 8
        gt = np.load(folder / r["gt"])
        assert gt.dtype == np.float32 and gt.shape == SIZE
        assert (folder / r["gt_png"]).is_file()
    # A second build with the same seed: the same bytes. With two recordings per speed,
    # the first of each is unchanged (seeds are per recording).
    spec2 = _speed(conditions=(0.5,), per_condition=2)
    with torch_threads(1):
        folder2, meta2 = S.build_suite(spec2, images, tmp_path)
    first = {r["label"]: r for r in meta["recordings"]}
    for r in meta2["recordings"]:
        if r["index"] == 0:
            ref = first[r["label"]]
            assert r["dat"] == ref["dat"]
            assert (folder2 / r["dat"]).read_bytes() == (folder / ref["dat"]).read_bytes()
            assert (folder2 / r["gt"]).read_bytes() == (folder / ref["gt"]).read_bytes()
    # The same spec again is reused, not rebuilt; a changed file forces a rebuild.
    stamp = (folder2 / "suite.json").stat().st_mtime_ns
    with torch_threads(1):
        S.build_suite(spec2, images, tmp_path)
        assert (folder2 / "suite.json").stat().st_mtime_ns == stamp
        victim = folder2 / meta2["recordings"][0]["dat"]
        victim.write_bytes(b"\0" * victim.stat().st_size)
        _, meta3 = S.build_suite(spec2, images, tmp_path)
    assert meta3["files"] == meta2["files"]
    assert victim.read_bytes() == (folder / first["0.5"]["dat"]).read_bytes()


def test_refuses_a_foreign_folder(tmp_path: Path, images: list[Path]) -> None:
    (tmp_path / "speed").mkdir()
    (tmp_path / "speed" / "mine.txt").write_text("keep")
    with pytest.raises(Exception, match="not a suite folder"):
        S.build_suite(_speed(conditions=(0.0,)), images, tmp_path)
    assert (tmp_path / "speed" / "mine.txt").read_text() == "keep"


def test_light_suite_hits_the_firing_rates(tmp_path: Path, images: list[Path]) -> None:
    spec = S.light_suite(per_condition=1, size=SIZE, seed=3, rates=(0.3, 0.03))
    with torch_threads(1):
        folder, meta = S.build_suite(spec, images, tmp_path)
    from spkrecon.io import open_recording

    for r in meta["recordings"]:
        assert 0 <= r["speed"] <= S.LIGHT_MAX_SPEED
        src = open_recording(folder / r["dat"], *SIZE)
        spikes = src.read(0, src.num_frames)
        src.close()
        assert spikes.shape[0] == 401
        measured = float(spikes.mean())
        assert measured == pytest.approx(r["mean_rate"], abs=1e-6)
        assert measured == pytest.approx(r["condition"], rel=0.15)
        gt = np.load(folder / r["gt"])
        assert float(gt.max()) <= 1.0
        if r["gain"] < 1:  # dark: the truth is the image times k, never clipped
            assert float(gt.max()) <= r["gain"] + 1e-6


def test_light_gain() -> None:
    x = np.linspace(0, 1, 101)
    k = S.light_gain(x, 0.45, 0.6)
    assert 0.6 * np.clip(k * x, 0, 1).mean() == pytest.approx(0.45, abs=1e-9)
    assert S.light_gain(x, 0.03, 0.6) == pytest.approx(0.1, rel=1e-9)
    with pytest.raises(Exception, match="out of reach"):
        S.light_gain(x, 0.7, 0.6)


def test_parse_methods() -> None:
    from spkrecon.methods import available

    assert [m.label for m in S.parse_methods("all")] == available()
    ms = S.parse_methods("tfp, tfp:window=201,tfi,tfp")
    assert [m.label for m in ms] == ["tfp", "tfp:window=201", "tfi"]
    assert ms[1].params == {"window": 201}
    with pytest.raises(Exception, match="unknown method"):
        S.parse_methods("nosuch")


def test_scores_tables_and_plots(tmp_path: Path, speed_built: tuple[Path, dict]) -> None:
    folder, meta = speed_built
    methods = S.parse_methods("tfp,tfi,spk2imgnet,tfp:window=401")
    with torch_threads(1):
        result = S.score_suites([(folder, meta)], methods)
    info = result["methods"]
    assert "skipped" in info["spk2imgnet"] or "seconds" in info["spk2imgnet"]
    assert "speed" in info["tfp:window=401"]["not_run"]  # 401 frames do not fit in 257
    tfp = {s["label"]: s for s in result["scores"] if s["method"] == "tfp"}
    assert set(tfp) == {"0", "0.15", "0.5", "1", "2", "4"}
    # A real property of TFP-41: a pan at 4 px/step smears it far more than a still.
    assert tfp["0"]["psnr"] > tfp["4"]["psnr"] + 4
    for s in result["scores"]:
        assert math.isfinite(s["psnr"]) and 0 < s["ssim"] <= 1 and s["gain"] == 1.0
    text = S.markdown_tables(result, ["speed"])
    psnr_table = text.split("**speed suite, SSIM**")[0]
    rows = [ln for ln in psnr_table.splitlines() if ln.startswith("| ") and "|---" not in ln]
    assert len(rows) == 1 + 6  # header + one row per condition
    assert rows[0].startswith("| speed (px/step) | n | tfp | tfi |")
    assert all("**" in r for r in rows[1:])  # the best of each row in bold
    assert "skipped" in text or "spk2imgnet" in rows[0]
    plots = S.plot_curves(result, tmp_path / "plots")
    assert [p.name for p in plots] == ["suite_speed.png"]
    assert plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_normalisation() -> None:
    rate = np.array([[0.0, 0.3, 0.6, 0.9]])
    img = S.normalised(rate, 0.6, 0.5)
    assert np.allclose(img, [[0.0, 1.0, 2.0, 2.0]])


@pytest.mark.slow
def test_command(tmp_path: Path, image_dir: Path) -> None:
    out = tmp_path / "suites"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "eval_suites.py"), "--images",
           str(image_dir), "--out", str(out), "--methods", "tfp,tfi", "--per-condition", "1",
           "--size", "32x40", "--suites", "speed", "--markdown", str(tmp_path / "t.md"),
           "--json", str(tmp_path / "t.json"), "--plots", str(tmp_path / "plots")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "t.json").read_text())
    assert len(data["scores"]) == 12
    assert (tmp_path / "plots" / "suite_speed.png").is_file()
    assert "speed suite, PSNR" in (tmp_path / "t.md").read_text()
    assert "speed suite, PSNR" in res.stdout


# -- the video suite ---------------------------------------------------------------------
VSHIFT = 4  # px per video frame, to the right, before the suite's scaling


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three held-out clips (28 frames) of a texture moving VSHIFT px right per frame, one not held
    out, and one held-out folder that holds no frames."""
    import imageio.v3 as iio

    d = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(5)
    held = [f"clip_{i}" for i in range(400) if S.is_holdout(f"clip_{i}")][:4]
    other = next(f"clip_{i}" for i in range(50) if not S.is_holdout(f"clip_{i}"))
    for name in held[:3] + [other]:
        base = np.kron(rng.random((8, 26)), np.ones((8, 8)))  # 64 x 208 blocks
        big = 0.2 + 0.6 * (0.7 * base + 0.3 * rng.random(base.shape))
        (d / name).mkdir()
        for f in range(28):  # enough for 257 steps at 10 steps per frame
            x0 = 27 * VSHIFT - f * VSHIFT
            iio.imwrite(d / name / f"frame_{f:04d}.png",
                        (big[:, x0:x0 + 96] * 255).astype(np.uint8))
    (d / held[3]).mkdir()  # no frames: not a clip
    return d


def _video(**kw: object) -> S.SuiteSpec:
    spec = S.video_suite(per_condition=2, size=(16, 24), seed=1, spfs=(8.0,))
    return S.SuiteSpec(**{**spec.to_dict(), "conditions": spec.conditions, "steps": 24,
                          "key": 12, "margin": 2.0, **kw})


def test_video_suite_uses_held_out_clips_and_real_motion(tmp_path: Path, clip_dir: Path
                                                         ) -> None:
    clips = S.holdout_clips(clip_dir)
    assert len(clips) == 3 and all(S.is_holdout(c.name) for c in clips)
    with torch_threads(1):
        folder, meta = S.build_suite(_video(), clips, tmp_path / "s")
        again = S.build_suite(_video(), clips, tmp_path / "s")[1]
    assert again["hash"] == meta["hash"]  # reused
    recs = meta["recordings"]
    assert [r["kind"] for r in recs] == ["clip", "clip"]
    assert {r["clip"] for r in recs} <= {c.name for c in clips}
    # Frames of 64 x 96 scaled to cover 32 x 48 (x0.5): VSHIFT / 2 px per video frame.
    for r in recs:
        assert r["speed"] == pytest.approx(VSHIFT * 0.5 / 8.0, rel=0.35)
        truth = np.load(folder / r["gt"])
        assert truth.shape == (16, 24) and 0.1 < truth.mean() < 0.9
        spikes = np.fromfile(folder / r["dat"], np.uint8)
        assert spikes.size == 24 * 16 * 24 // 8


def test_redslike_suite_has_an_original_frame_at_the_key(tmp_path: Path, clip_dir: Path
                                                         ) -> None:
    """The REDS construction: the truth is an original frame (shrunk to cover 1.1x the
    view, denser than the video suite's 3x), and each recording has its own seeds."""
    from spkrecon.simulate.scenes import list_frames, resize_cover

    assert all(S.redslike_suite().key % spf == 0 for spf in S.REDSLIKE_SPFS)
    assert "redslike" in S.SUITE_NAMES and "redslike" in S.VIDEO_SUITES
    base = S.redslike_suite(per_condition=2, size=(16, 24), seed=1, spfs=(4.0,))
    assert base.margin == pytest.approx(1.1) and base.sprites == 0
    spec = S.SuiteSpec(**{**base.to_dict(), "conditions": base.conditions, "steps": 24,
                          "key": 12})
    clips = S.holdout_clips(clip_dir)
    with torch_threads(1):
        folder, meta = S.build_suite(spec, clips, tmp_path / "s")
        video = S.build_suite(_video(conditions=(4.0,), margin=1.1), clips, tmp_path / "v")[1]
    for r, v in zip(meta["recordings"], video["recordings"], strict=True):
        assert r["sensor_seed"] != v["sensor_seed"]  # another suite: other seeds
        assert r["cover"] == [18, 27]  # 16 x 24 x 1.1, rounded up
        # Frames of 64 x 96 cover 18 x 27 at x0.28: VSHIFT x 0.28 px per 4 steps.
        assert r["speed"] == pytest.approx(VSHIFT * 0.28 / 4.0, rel=0.35)
        files = list_frames(clip_dir / r["clip"])
        first = [f.name for f in files].index(r["frames"][0])
        key_frame = files[first - 3 if r["backwards"] else first + 3]  # step 12 = frame 3
        (ch, cw), (y, x) = r["cover"], r["crop"]
        want = resize_cover(S._load_image(key_frame), ch, cw)[y:y + 16, x:x + 24]
        np.testing.assert_allclose(np.load(folder / r["gt"]), want.numpy(), atol=1e-5)


def test_video_suite_needs_long_enough_clips(tmp_path: Path, clip_dir: Path) -> None:
    from spkrecon.errors import InputError

    with pytest.raises(InputError, match="has 28 frames"):
        S.build_suite(_video(steps=300, key=150), S.holdout_clips(clip_dir), tmp_path / "s")


@pytest.mark.slow
def test_command_video_suite(tmp_path: Path, image_dir: Path, clip_dir: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "eval_suites.py"), "--images",
           str(image_dir), "--videos", str(clip_dir), "--out", str(tmp_path / "suites"),
           "--methods", "tfp", "--per-condition", "1", "--size", "16x24", "--suites", "video",
           "--json", str(tmp_path / "t.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "t.json").read_text())
    assert {s["suite"] for s in data["scores"]} == {"video"}
    assert len(data["scores"]) == len(S.VIDEO_SPFS)
    assert "video suite, PSNR" in res.stdout and "px/step)" in res.stdout
    bad = subprocess.run(cmd[:5] + [str(tmp_path / "none")] + cmd[6:], capture_output=True,
                         text=True, timeout=600)
    assert bad.returncode == 2 and "no held-out video clips" in bad.stderr
    assert "Traceback" not in bad.stderr
    # redslike is built from the same clips: at 8 steps per frame 257 steps need 33 frames.
    short = subprocess.run([*cmd[:-3], "redslike", *cmd[-2:]], capture_output=True, text=True,
                           timeout=600)
    assert short.returncode == 2 and "has 28 frames" in short.stderr
    assert "Traceback" not in short.stderr
