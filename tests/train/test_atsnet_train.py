"""The ATSNet trainer: a few real steps on simulated data, checkpoints, resume, hold-out."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spkrecon.models.atsnet import ATSNetConfig, load_atsnet  # noqa: E402
from spkrecon.train import atsnet as T  # noqa: E402


def _names(count: int, holdout: bool) -> list[str]:
    out, i = [], 0
    while len(out) < count:
        name = f"img_{i:04d}.png"
        if (zlib.crc32(name.encode()) % 8 == 0) == holdout:
            out.append(name)
        i += 1
    return out


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    import imageio.v3 as iio

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in _names(3, False) + _names(1, True):
        iio.imwrite(folder / name, (rng.random((48, 56)) * 255).astype(np.uint8))
    return folder


def _config(images: Path, out: Path, steps: int) -> T.ATSTrainConfig:
    return T.ATSTrainConfig(images=[str(images)], out=str(out), patch=16, batch=2,
                            total_steps=steps, warmup=2, minutes=5, workers=0, reuse=1,
                            val_per_condition=1, val_patch=16, log_every=2,
                            model={"mixture": True, "widths": [4, 8]})


@pytest.mark.slow
def test_trains_checkpoints_and_resumes(images: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, torch_one_thread
                                        ) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "run"
    scores = T.train(_config(images, out, steps=4))
    assert set(scores) >= {name for name, _, _ in T.VAL_CONDITIONS} | {"mean"}
    assert all(np.isfinite(v) for v in scores.values())
    for name in ("last.pt", "best.pt", "log.jsonl", "config.json"):
        assert (out / name).is_file()
    model, info = load_atsnet(str(out / "best.pt"))
    assert model.config.mixture and info["meta"]["step"] == 4
    assert list((tmp_path / "cache").rglob("atsnet-val-*.pt"))  # validation set cached
    first = len((out / "log.jsonl").read_text().splitlines())
    T.train(_config(images, out, steps=6))  # resumes from last.pt at step 4
    lines = (out / "log.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines[first:]]
    assert steps and min(steps) > 4 and steps[-1] == 6  # went on, did not start again


@pytest.mark.slow
def test_bf16_trains_the_network_under_autocast(images: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                torch_one_thread) -> None:
    from dataclasses import replace

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = replace(_config(images, tmp_path / precision, steps=4), precision=precision)
        torch.manual_seed(0)  # the network's initial weights
        scores = T.train(cfg)
        assert all(np.isfinite(v) for v in scores.values())
        runs[precision] = torch.load(tmp_path / precision / "last.pt", weights_only=True)["model"]
    # The same seed, data and steps: only the forward pass's precision differs.
    diff = max(float((runs["fp32"][k] - runs["bf16"][k]).abs().max()) for k in runs["fp32"])
    assert 0 < diff < 0.05
    with pytest.raises(ValueError, match="unknown precision"):
        T.train(replace(_config(images, tmp_path / "x", steps=1), precision="fp16"))
    assert not (tmp_path / "x" / "last.pt").exists()


def test_training_images_exclude_the_suites_held_out_ones(images: Path) -> None:
    train = T.load_images([str(images)], 800, holdout=False)
    held = T.load_images([str(images)], 800, holdout=True)
    assert (len(train), len(held)) == (3, 1)


def test_batches_hit_the_requested_light_and_shapes(images: Path) -> None:
    cfg = _config(images, Path("unused"), steps=1)
    cfg.batch = 3
    net = ATSNetConfig()
    g = torch.Generator().manual_seed(0)
    imgs = T.load_images([str(images)], 800, holdout=False)
    x, y = T.make_batch(imgs, cfg, net, g, speed=1.0, rate=0.05)
    assert x.shape == (3, 2 * net.radius + 1, 16, 16) and x.dtype == torch.uint8
    assert y.shape == (3, 16, 16)
    # The mean rate of the truth is the requested one (clipping can only lower it).
    assert float(y.mean()) == pytest.approx(0.05, rel=0.15)
    assert float(x.float().mean()) == pytest.approx(0.05, rel=0.3)


def test_a_network_grows_motion_features_and_keeps_its_function() -> None:
    from spkrecon.models.atsnet import ATSNet, predict

    torch.manual_seed(0)
    small = ATSNet(ATSNetConfig(widths=(4, 8), mixture=True)).eval()
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.05 * torch.randn_like(p))
    big = ATSNet(ATSNetConfig(widths=(4, 8), mixture=True, motion=True)).eval()
    state = T.grown_state(small, big)
    assert big.load_state_dict(state, strict=True) is not None
    names = big.config.channel_names
    for i, name in enumerate(small.config.channel_names):
        assert torch.equal(big.inc[0].weight[:, names.index(name)], small.inc[0].weight[:, i])
    assert float(big.inc[0].weight.detach()[:, names.index("mc15")].abs().max()) == 0.0
    win = (torch.rand((2, 2 * big.config.radius + 1, 16, 16)) < 0.3).to(torch.uint8)
    with torch.inference_mode():
        before, after = predict(small, win), predict(big, win)
    # New estimates enter the mixture with a small share only.
    assert float((before - after).abs().mean()) < 0.02


@pytest.mark.slow
def test_a_grown_run_logs_its_start_and_resumes_its_own_network(
        images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch_one_thread
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    T.train(_config(images, tmp_path / "a", steps=2))
    cfg = _config(images, tmp_path / "b", steps=2)
    cfg.init = str(tmp_path / "a" / "best.pt")
    T.train(cfg)
    first = json.loads((tmp_path / "b" / "log.jsonl").read_text().splitlines()[0])
    # The starting point is scored before the first step.
    assert first["step"] == 0 and first["init"] == cfg.init and np.isfinite(first["val"]["mean"])
    # Resumed with options that describe another network (the default widths): the run
    # goes on with its own instead of failing to load last.pt.
    again = _config(images, tmp_path / "b", steps=4)
    again.model = {"mixture": True}
    T.train(again)
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["model"]["widths"] == [4, 8]
    assert json.loads((tmp_path / "b" / "log.jsonl").read_text().splitlines()[-1])["step"] == 4


def test_motion_windows_reach_the_network_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    monkeypatch.setattr(T, "train", lambda cfg: seen.setdefault("cfg", cfg) and {})
    T.main(["--images", "x", "--motion", "--motion-windows", "7,15,127", "--patch", "96",
            "--motion-noise", "16,4,4,16", "--motion-isi", "7,15"])
    cfg = seen["cfg"]
    assert cfg.model["motion"] and cfg.model["motion_windows"] == [7, 15, 127]
    assert ATSNetConfig.from_dict(cfg.model).motion_noise == (16.0, 4.0, 4.0, 16.0)
    assert ATSNetConfig.from_dict(cfg.model).estimate_names[-3:] == ["mc127", "mi7", "mi15"]
    assert cfg.patch == 96


def test_motion_stages_reach_the_network_config(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    seen = {}
    monkeypatch.setattr(T, "train", lambda cfg: seen.setdefault("cfg", cfg) and {})
    T.main(["--images", "x", "--motion", "--motion-stages", "3,2,2,3,3;1,6,4,2,3",
            "--motion-noise", "16,1"])
    net = ATSNetConfig.from_dict(seen["cfg"].model)
    assert net.stages == ((3, 2, 2, 3, 3), (1, 6, 4, 2, 3)) and net.motion_noise == (16.0, 1.0)
    with pytest.raises(SystemExit):
        T.main(["--images", "x", "--motion", "--motion-stages", "3,2,two,3,3"])
    assert "--motion-stages takes integers" in capsys.readouterr().err


def test_a_network_grows_wider_and_keeps_its_function() -> None:
    from spkrecon.models.atsnet import ATSNet, predict

    torch.manual_seed(1)
    small = ATSNet(ATSNetConfig(widths=(4, 8, 8), mixture=True)).eval()
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.05 * torch.randn_like(p))
    big = ATSNet(ATSNetConfig(widths=(6, 12, 8), mixture=True)).eval()
    big.load_state_dict(T.grown_state(small, big), strict=True)
    win = (torch.rand((2, 2 * big.config.radius + 1, 16, 16)) < 0.3).to(torch.uint8)
    with torch.inference_mode():
        before, after = predict(small, win), predict(big, win)
    assert float((before - after).abs().max()) < 1e-5  # no new estimates: the same function
    # The new filters learn: one step moves the weights that read them away from zero.
    from spkrecon.models.atsnet import window_features

    feats, _ = window_features(win, big.config)
    big.train()
    loss = big(feats).square().mean()
    loss.backward()
    new_cols = big.up[0][0].weight.grad[:4, 8:12]  # old filters reading the new level-1 ones
    assert float(new_cols.abs().sum()) > 0


def test_logmse_loss_is_minus_the_mean_patch_psnr_over_ten() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.rand((3, 8, 8), generator=g)
    noise = torch.tensor([0.05, 0.1, 0.3]).view(3, 1, 1) * torch.randn((3, 8, 8), generator=g)
    pred = target + noise
    mse = (noise ** 2).mean(dim=(1, 2))
    want = torch.log10(mse + 1e-5).mean()
    assert float(T.training_loss(pred, target, "logmse")) == pytest.approx(float(want))
    # Halving the clean patch's error lowers it as much as halving the noisy one's.
    def halved(i: int) -> torch.Tensor:
        n = noise.clone()
        n[i] *= 0.5
        return T.training_loss(target + n, target, "logmse")
    assert float(halved(0)) == pytest.approx(float(halved(2)), abs=0.01)
    with pytest.raises(ValueError, match="unknown loss"):
        T.training_loss(pred, target, "l3")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc")
def test_worker_exits_when_the_trainer_is_killed(images: Path, tmp_path: Path) -> None:
    """A trainer killed by a signal cannot stop its daemon worker: the worker must notice."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "spkrecon.train.atsnet", "--images", str(images), "--out",
         str(tmp_path / "run"), "--patch", "16", "--batch", "2", "--widths", "4,8",
         "--workers", "1", "--minutes", "5", "--total-steps", "100000", "--val-patch", "16",
         "--val-per-condition", "1", "--log-every", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log = tmp_path / "run" / "log.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and not (log.is_file() and log.read_text().count("loss")):
            time.sleep(0.5)  # training steps: the worker is up and feeding
        workers = [c for c in _children(proc.pid)
                   if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert workers, "no simulator worker found"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() and
                                         "Z" not in Path(f"/proc/{w}/stat").read_text()
                                         .rsplit(")", 1)[1].split()[0] for w in workers):
        time.sleep(0.5)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()
             and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, "the simulator worker outlived its trainer"


def test_nothing_to_train_on_fails_before_any_worker(tmp_path: Path) -> None:
    import imageio.v3 as iio

    folder = tmp_path / "held"
    folder.mkdir()
    iio.imwrite(folder / _names(1, True)[0], np.zeros((16, 16), np.uint8))
    cfg = _config(folder, tmp_path / "run", steps=2)
    with pytest.raises(ValueError, match="no training images"):
        T.train(cfg)
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.slow
def test_a_dead_worker_stops_the_trainer_instead_of_hanging(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    import imageio.v3 as iio

    folder = tmp_path / "images"
    folder.mkdir()
    iio.imwrite(folder / _names(1, True)[0], np.zeros((48, 56), np.uint8))  # validation
    (folder / _names(1, False)[0]).write_bytes(b"not a png")  # the worker cannot read it
    cfg = _config(folder, tmp_path / "run", steps=2)
    cfg.workers = 1
    with pytest.raises(RuntimeError, match="simulator worker stopped"):
        T.train(cfg)


def test_the_command_reports_bad_data_in_one_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        T.main(["--images", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: image folder") and "nope" in err[0]


def _assert_validation_ignores(images: Path, **options: float) -> None:
    """Validation batches are the same whatever these training options say, and the options
    are outside the validation cache's key (so its cached copy is shared too)."""
    net = ATSNetConfig(widths=(4, 8))
    cfg = _config(images, images / "unused", steps=1)
    held = T.load_images([str(images)], 256, holdout=True)
    plain = T.make_validation(held, cfg, net)
    for k, v in options.items():
        setattr(cfg, k, v)
    other = T.make_validation(held, cfg, net)
    for (n1, x1, y1), (n2, x2, y2) in zip(plain, other, strict=True):
        assert n1 == n2 and torch.equal(x1, x2) and torch.equal(y1, y2)
    assert set(options) <= set(T._NOT_DATA)


def test_mosaics_tile_four_crops_and_leave_validation_alone(images: Path) -> None:
    """A mosaic background is four crops of half its side, rolled; validation batches are the
    same whatever ``mosaic_prob`` says (so its figures stay comparable across runs)."""
    # Four flat images: at scale 1 each crop is a whole image, so after the roll every value
    # covers whole 40x40 tiles.
    tiles = [torch.full((40, 40), v, dtype=torch.uint8) for v in (20, 80, 140, 200)]
    mos = T._mosaics(tiles, 3, 40, (1.0, 1.0), torch.Generator().manual_seed(0))
    assert mos.shape == (3, 80, 80)
    for m in mos:
        values, counts = np.unique(np.round(m.numpy() * 255).astype(np.int64),
                                   return_counts=True)
        assert set(values.tolist()) <= {20, 80, 140, 200}
        assert all(c % 1600 == 0 for c in counts) and counts.sum() == 6400
    _assert_validation_ignores(images, mosaic_prob=1.0)


def test_turns_change_training_velocities_at_the_key_and_leave_validation_alone(
        images: Path) -> None:
    """``turn_prob`` batches turn at the key instant by at most ``turn_max`` of the speed;
    validation batches are the same whatever it says."""
    vel = torch.zeros((500, 4), dtype=torch.float64)
    vel[:, 0] = torch.linspace(0.1, 4.0, 500, dtype=torch.float64)
    turn = T._turns(vel, 0.6, torch.Generator().manual_seed(0))
    share = turn[:, :2].norm(dim=-1) / vel[:, 0]
    assert float(share.max()) <= 0.6 and float(share.max()) > 0.5
    assert float(share.min()) < 0.1 and torch.equal(turn[:, 2:], torch.zeros_like(turn[:, 2:]))
    _assert_validation_ignores(images, turn_prob=1.0, turn_max=0.3)
    # A training batch with turns differs from the same draw without them.
    net = ATSNetConfig(widths=(4, 8))
    cfg = _config(images, images / "unused", steps=1)
    held = T.load_images([str(images)], 256, holdout=True)
    cfg.turn_prob, cfg.static_prob = 1.0, 0.0
    a = T.make_batch(held, cfg, net, torch.Generator().manual_seed(5))
    cfg.turn_prob = 0.0
    b = T.make_batch(held, cfg, net, torch.Generator().manual_seed(5))
    assert not torch.equal(a[0], b[0])


def test_motion_sides_reach_the_network_config(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    seen = {}
    monkeypatch.setattr(T, "train", lambda cfg: seen.setdefault("cfg", cfg) and {})
    T.main(["--images", "x", "--motion", "--motion-sides", "1,4,16,4,2,3;1,6,30,6,2,3",
            "--motion-side-noise", "8,8", "--turn-prob", "0.5"])
    net = ATSNetConfig.from_dict(seen["cfg"].model)
    assert net.motion_sides == ((1, 4, 16, 4, 2, 3), (1, 6, 30, 6, 2, 3))
    assert net.motion_side_noise == (8.0, 8.0) and seen["cfg"].turn_prob == 0.5
    with pytest.raises(SystemExit):
        T.main(["--images", "x", "--motion", "--motion-sides", "1,4,x,4,2,3"])
    assert "--motion-sides takes integers" in capsys.readouterr().err
