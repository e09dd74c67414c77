"""Training: loss, data, the loop (loss falls, seed and resume reproduce), checkpoints, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from spkrecon.errors import OutputError, ParameterError, WeightsError
from spkrecon.train import TrainConfig
from spkrecon.train.data import BLOCK_CENTRES, Batch, DatasetSource, Mixture, augment
from spkrecon.train.loop import initial_weights, lr_factor, run
from spkrecon.train.loss import hierarchical_loss
from spkrecon.train.validate import pad4


def tiny(tmp: Path, data: dict[str, Path], **kw) -> TrainConfig:
    base = dict(model="lite", features=8, num_blocks=1, images=[str(data["images"])],
                videos=[str(data["videos"])], video_share=0.25, patch=16, batch_size=4,
                steps=8, lr=3e-3, lr_min=1e-4, threads=1, out=str(tmp / "run"), log_every=1,
                val_dir="none", val_every=0, max_side=200, video_interp="linear",
                checkpoint_minutes=60.0)
    base.update(kw)
    return TrainConfig(**base)


def weights_of(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "weights.pt", weights_only=True)["state_dict"]


# -- loss -------------------------------------------------------------------------------
def test_hierarchical_loss_matches_eq_11() -> None:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 5, 8, 8, generator=g)
    out = torch.rand(2, 1, 8, 8, generator=g)
    ests = [torch.rand(2, 4, 8, 8, generator=g) for _ in range(5)]
    total, image = hierarchical_loss(out, ests, gt, alpha=0.6, lam=0.02)
    want_img = (out - 0.6 * gt[:, 2:3]).abs().mean()
    want_aux = sum((ests[k][:, j] - 0.6 * gt[:, k]).abs().mean()
                   for k in range(5) for j in range(4))
    assert torch.allclose(image, want_img)
    assert torch.allclose(total, want_img + 0.02 * want_aux)
    # A perfect network (0.6-scaled targets everywhere) has zero loss.
    perfect = [0.6 * gt[:, k:k + 1].expand(2, 4, 8, 8) for k in range(5)]
    zero, _ = hierarchical_loss(0.6 * gt[:, 2:3], perfect, gt)
    assert float(zero) == pytest.approx(0.0, abs=1e-7)


def test_lr_schedules() -> None:
    cfg = TrainConfig(images=["x"], lr=1e-3, lr_min=1e-5, warmup=10)
    assert lr_factor(cfg, 0.0, 0) == pytest.approx(0.1)  # warm-up
    assert lr_factor(cfg, 0.0, 50) == pytest.approx(1.0)
    assert lr_factor(cfg, 1.0, 50) == pytest.approx(0.01)
    assert lr_factor(cfg, 0.5, 50) == pytest.approx(0.505)
    cfg.schedule = "step"
    assert lr_factor(cfg, 0.3, 50) == 1.0 and lr_factor(cfg, 0.4, 50) == 0.1


# -- data -------------------------------------------------------------------------------
def test_simulated_batches_shapes_rates_and_seed(tiny_data: dict[str, Path], tmp_path: Path
                                                 ) -> None:
    cfg = tiny(tmp_path, tiny_data, batch_size=8, noise_prob=0.0, dim_prob=0.0)
    mix = Mixture(cfg, torch.device("cpu"))
    assert [k for _, k in mix.split(8)] == [6, 2]
    b1 = mix.sample(8, torch.Generator().manual_seed(3))
    b2 = mix.sample(8, torch.Generator().manual_seed(3))
    assert b1.spikes.shape == (8, 41, 16, 16) and b1.gt.shape == (8, 5, 16, 16)
    assert torch.equal(b1.spikes, b2.spikes) and torch.equal(b1.gt, b2.gt)
    assert set(torch.unique(b1.spikes).tolist()) <= {0.0, 1.0}
    # Noise-free integrate-and-fire: the mean rate is alpha times the mean light.
    assert float(b1.spikes.mean()) == pytest.approx(0.6 * float(b1.gt.mean()), rel=0.1)


def test_gt_offset_moves_the_ground_truth_in_time(tiny_data: dict[str, Path], tmp_path: Path
                                                  ) -> None:
    cfg = tiny(tmp_path, tiny_data, batch_size=6, video_share=0.0, noise_prob=0.0,
               static_prob=0.0)
    on, later, half = (Mixture(replace(cfg, gt_offset=o), torch.device("cpu"))
                       .sample(6, torch.Generator().manual_seed(5)) for o in (0.0, 7.0, 0.5))
    assert torch.equal(on.spikes, later.spikes) and torch.equal(on.spikes, half.spikes)
    # one block step later: each block's truth is the next block's
    torch.testing.assert_close(later.gt[:, :4], on.gt[:, 1:])
    assert not torch.allclose(half.gt, on.gt) and not torch.allclose(half.gt, later.gt)
    # sharper truth than input: the same spikes, more fine detail in the truth
    sharp = Mixture(replace(cfg, gt_resample="bicubic"), torch.device("cpu")).sample(
        6, torch.Generator().manual_seed(5))
    assert torch.equal(sharp.spikes, on.spikes)

    def detail(x: torch.Tensor) -> float:
        return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean())

    assert detail(sharp.gt) > detail(on.gt)
    with pytest.raises(ParameterError, match="gt_offset"):
        replace(cfg, gt_offset=8.0).validate()
    with pytest.raises(ParameterError, match="resampling"):
        replace(cfg, gt_resample="lanczos").validate()


def test_augment_moves_spikes_and_truth_together() -> None:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(16, 5, 8, 8, generator=g)
    spikes = gt[:, [0] * 41]  # spikes "equal" the truth: any mismatch shows
    out = augment(Batch(spikes, gt), g)
    assert torch.equal(out.spikes[:, 0], out.gt[:, 0])
    assert not torch.equal(out.gt, gt)  # something was rotated or flipped


def test_dataset_source_reads_the_authors_layout(tmp_path: Path) -> None:
    import imageio.v3 as iio

    from spkrecon.io import write_dat

    root = tmp_path / "ds"
    (root / "input").mkdir(parents=True)
    (root / "gt").mkdir()
    rng = np.random.default_rng(0)
    light = np.zeros((24, 32))
    light[:, 16:] = 1.0  # dark left half, bright right half
    acc = rng.random(light.shape)
    spikes = np.zeros((41, 24, 32), np.uint8)
    for t in range(41):
        acc += 0.6 * light
        spikes[t] = acc >= 1
        acc[spikes[t] == 1] -= 1
    write_dat(root / "input" / "a.dat", spikes)
    for c in BLOCK_CENTRES:
        iio.imwrite(root / "gt" / f"a_{c + 1}.png", (light * 255).astype(np.uint8))
    cfg = TrainConfig(dataset=[str(root)], patch=16, augment=False)
    src = DatasetSource(cfg.dataset, cfg, torch.device("cpu"))
    b = src.sample(6, torch.Generator().manual_seed(1))
    assert b.spikes.shape == (6, 41, 16, 16) and b.gt.shape == (6, 5, 16, 16)
    rate = b.spikes.mean(1)
    assert torch.allclose(rate, 0.6 * b.gt[:, 2], atol=0.05)  # crops line up


def test_trains_on_a_dataset_made_by_spkrecon(tiny_data: dict[str, Path], tmp_path: Path
                                              ) -> None:
    from spkrecon.datasets import DatasetConfig, collect_sources, make_dataset

    ds = tmp_path / "made"
    make_dataset(ds, DatasetConfig(kind="train", count=2, height=32, width=48, seed=1),
                 collect_sources(images=[tiny_data["images"]]))
    cfg = tiny(tmp_path, tiny_data, images=[], videos=[], dataset=[str(ds)], steps=2)
    res = run(cfg)
    assert res.step == 2
    meta = torch.load(res.out / "weights.pt", weights_only=True)["meta"]
    assert meta["training_data"]["sources"] == [
        {"kind": "dataset", "samples": 2, "folders": [str(ds)]}]


def test_pad4_is_numpy_symmetric() -> None:
    x = torch.arange(2 * 3 * 10 * 7, dtype=torch.float32).view(2, 3, 10, 7)
    y, h, w = pad4(x)
    want = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 2), (0, 1)), mode="symmetric")
    assert (h, w) == (10, 7) and np.array_equal(y.numpy(), want)


# -- the loop ---------------------------------------------------------------------------
def test_tiny_training_loss_falls(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    losses: list[float] = []
    cfg = tiny(tmp_path, tiny_data, steps=48, lr=4e-3, lr_min=4e-4, noise_prob=0.0)
    res = run(cfg, callback=lambda k, d: losses.append(d["loss"]) if k == "step" else None)
    assert res.step == 48 and res.stopped == "steps" and len(losses) == 48
    first, last = np.mean(losses[:6]), np.mean(losses[-6:])
    assert last < 0.6 * first, (first, last)
    from spkrecon.models.weights import load_model

    model, ckpt = load_model(res.weights)
    assert ckpt.config["features"] == 8 and ckpt.meta["iterations"] == 48
    assert ckpt.meta["samples_seen"] == 48 * 4 and ckpt.meta["train_config"]["lr"] == 4e-3
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["kind"] == "train"] == list(range(1, 49))
    assert lines[-1]["kind"] == "end" and lines[-1]["replicas_in_sync"] is True


def test_seed_reproduces_a_run(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    a = run(tiny(tmp_path / "a", tiny_data, seed=5, steps=5))
    b = run(tiny(tmp_path / "b", tiny_data, seed=5, steps=5))
    c = run(tiny(tmp_path / "c", tiny_data, seed=6, steps=5))
    wa, wb, wc = weights_of(a.out), weights_of(b.out), weights_of(c.out)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_continues_exactly(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    full = run(tiny(tmp_path / "full", tiny_data, steps=8, noise_prob=0.5))

    def stop_at_3(kind: str, d: dict) -> None:
        if kind == "step" and d["step"] == 3:
            raise KeyboardInterrupt

    part = tiny(tmp_path / "part", tiny_data, steps=8, noise_prob=0.5)
    first = run(part, callback=stop_at_3)
    assert first.stopped == "interrupted" and first.step == 3
    assert first.signal == 2  # SIGINT: the CLI exits 130 (143 for SIGTERM, 129 for SIGHUP)
    assert (first.out / "last.pt").is_file() and (first.out / "weights.pt").is_file()
    with pytest.raises(OutputError):
        run(part)  # refuses to overwrite a run without --resume/--force
    second = run(part, resume=True)
    assert second.step == 8 and second.samples == 8 * 4
    wf, wr = weights_of(full.out), weights_of(second.out)
    assert all(torch.allclose(wf[k], wr[k], rtol=0, atol=1e-6) for k in wf)


def test_init_fine_tunes_from_weights_or_last(tiny_data: dict[str, Path], tmp_path: Path
                                              ) -> None:
    first = run(tiny(tmp_path / "first", tiny_data, steps=4))
    w0 = weights_of(first.out)
    mcfg = tiny(tmp_path, tiny_data).model_config()
    for src in (first.out / "weights.pt", first.out / "last.pt"):
        loaded = initial_weights(str(src), mcfg)
        assert all(torch.equal(w0[k], loaded[k]) for k in w0)
    tuned = run(tiny(tmp_path / "tuned", tiny_data, steps=3, seed=9,
                     init=str(first.out / "weights.pt")))
    assert tuned.step == 3  # a fresh step count, not the 4 of the first run
    fresh = run(tiny(tmp_path / "fresh", tiny_data, steps=3, seed=9))
    wt, wf = weights_of(tuned.out), weights_of(fresh.out)
    assert not all(torch.equal(wt[k], wf[k]) for k in wt)
    with pytest.raises(WeightsError, match="different architecture"):
        run(tiny(tmp_path / "wide", tiny_data, features=12, init=str(first.out / "weights.pt")))
    # a plain network grows into each of spkrecon's additions with the same function
    plain = tiny(tmp_path / "plain", tiny_data, model="net_b", steps=2)
    run(plain)
    pw = str(Path(plain.out) / "weights.pt")
    base_cfg = mcfg.with_(separate_encoders=False, flow_align=False)
    grown = initial_weights(str(Path(plain.out) / "last.pt"), base_cfg)
    assert base_cfg.raw_skip and grown["extractor.conv.weight"].shape[1] == 4 + 13
    assert not grown["extractor.conv.weight"][:, 4:].any()  # zero weights on spike frames
    assert torch.equal(grown["extractor.conv.weight"][:, :4],
                       weights_of(Path(plain.out))["extractor.conv.weight"])
    from spkrecon.models.spk2imgnet import Spk2ImgNet

    small = Spk2ImgNet(base_cfg).eval()
    small.load_state_dict(grown)
    x = (torch.rand(1, 41, 16, 16) < 0.3).float()
    # deeper (identity blocks), a deeper fusion head, flow alignment (zero flow), one
    # extractor per block position (copies of the shared one), and all of the lite preset
    for cfg in (base_cfg.with_(num_blocks=3), base_cfg.with_(fusion_blocks=2),
                base_cfg.with_(flow_align=True), base_cfg.with_(separate_encoders=True),
                mcfg.with_(fusion_blocks=1)):
        net = Spk2ImgNet(cfg).eval()
        net.load_state_dict(initial_weights(pw, cfg))
        with torch.inference_mode():
            torch.testing.assert_close(net(x)[0], small(x)[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(WeightsError, match="different architecture"):
        initial_weights(pw, base_cfg.with_(num_blocks=0))
    with pytest.raises(WeightsError, match="different architecture"):
        initial_weights(str(first.out / "last.pt"), mcfg.with_(features=12))
    with pytest.raises(WeightsError, match="do not exist"):
        run(tiny(tmp_path / "none", tiny_data, init=str(tmp_path / "missing.pt")))


def test_ema_averages_the_weights_without_changing_training(tiny_data: dict[str, Path],
                                                          tmp_path: Path) -> None:
    from spkrecon.train.loop import update_ema

    plain = run(tiny(tmp_path / "plain", tiny_data, steps=4))
    avg = run(tiny(tmp_path / "ema", tiny_data, steps=4, ema=0.5))
    sp = torch.load(plain.out / "last.pt", weights_only=True)
    se = torch.load(avg.out / "last.pt", weights_only=True)
    assert "ema" not in sp and set(se["ema"]) == set(se["model"])
    assert all(torch.equal(sp["model"][k], se["model"][k]) for k in sp["model"])  # same run
    exported = weights_of(avg.out)
    assert all(torch.equal(exported[k], se["ema"][k]) for k in exported)
    assert not all(torch.equal(exported[k], se["model"][k]) for k in exported)
    # the update rule itself, on a small module
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    update_ema(a, b, 0.75)
    torch.testing.assert_close(a.weight, 0.75 * before + 0.25 * b.weight)
    # resuming carries the average on
    more = run(tiny(tmp_path / "ema", tiny_data, steps=6, ema=0.5), resume=True)
    assert more.step == 6
    sr = torch.load(more.out / "last.pt", weights_only=True)
    assert not all(torch.equal(sr["ema"][k], se["ema"][k]) for k in se["ema"])
    with pytest.raises(ParameterError, match="ema"):
        tiny(tmp_path, tiny_data, ema=1.0).validate()


def test_max_minutes_stops_and_writes_weights(tiny_data: dict[str, Path], tmp_path: Path
                                              ) -> None:
    res = run(tiny(tmp_path, tiny_data, steps=100_000, max_minutes=0.05, time_schedule=True))
    assert res.stopped == "time" and 0 < res.step < 100_000
    assert (res.out / "weights.pt").is_file() and (res.out / "last.pt").is_file()
    state = torch.load(res.out / "last.pt", weights_only=True)
    assert state["progress"] > 10 * res.step / 100_000  # the time budget drove the schedule


def test_validation_on_reds(tiny_data: dict[str, Path], tmp_path: Path, reds_dir: Path
                            ) -> None:
    res = run(tiny(tmp_path, tiny_data, steps=2, val_dir=str(reds_dir), val_every=1,
                   val_limit=1))
    assert len(res.history) == 2 and res.best_psnr is not None
    h = res.history[-1]
    assert 0 < h["psnr"] < 60 and 0 < h["ssim"] <= 1
    assert list(h["samples"]) == ["200_part1_key_id151"]
    best = torch.load(res.out / "best.pt", weights_only=True)
    assert best["meta"]["validation"]["psnr"] == pytest.approx(res.best_psnr)


def test_bad_options_raise() -> None:
    with pytest.raises(ParameterError, match="no training data"):
        TrainConfig().validate()
    with pytest.raises(ParameterError, match="patch"):
        TrainConfig(images=["x"], patch=30).validate()
    with pytest.raises(ParameterError, match="model"):
        TrainConfig(images=["x"], model="huge").validate()


# -- CLI --------------------------------------------------------------------------------
def test_cli_train_runs_and_guards_inputs(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from spkrecon.cli.app import app

    out = tmp_path / "cli_run"
    args = ["train", "--images", str(tiny_data["images"]), "--model", "lite", "--features",
            "8", "--blocks", "1", "--patch", "16", "-b", "2", "--steps", "3", "--threads", "1",
            "--val-dir", "none", "--val-every", "0", "-o", str(out), "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["step"] == 3 and Path(data["weights"]).is_file()
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "--resume" in again.output
    missing = CliRunner().invoke(app, ["train", "--images", str(tmp_path / "nope"), "-o",
                                       str(tmp_path / "x")])
    assert missing.exit_code != 0 and "does not exist" in missing.output
    vid = ["train", "--videos", str(tiny_data["videos"]), "--patch", "16", "-b", "2",
           "--model", "lite", "--features", "8", "--blocks", "1", "--threads", "1",
           "--val-dir", "none", "--val-every", "0", "--steps", "1"]
    slow = CliRunner().invoke(app, [*vid, "--video-steps", "50", "100", "--gt-offset", "0.5",
                                    "--resample", "bicubic", "--fusion-blocks", "1", "-o",
                                    str(tmp_path / "slow")])
    assert slow.exit_code == 0, slow.output
    saved = json.loads((tmp_path / "slow" / "config.json").read_text())
    assert saved["video_steps_per_frame"] == [50.0, 100.0]
    assert (saved["gt_offset"], saved["resample"], saved["fusion_blocks"]) == (0.5, "bicubic", 1)
    assert "fusion_net.0.conv3.weight" in weights_of(tmp_path / "slow")
    bad = CliRunner().invoke(app, [*vid, "--video-steps", "10", "5", "-o", str(tmp_path / "b")])
    assert bad.exit_code != 0 and "video steps per frame" in bad.output
    assert not (tmp_path / "b").exists()
