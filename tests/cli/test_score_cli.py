"""``score`` and ``compare`` through typer's CliRunner on an app that mounts them."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import typer
from spike_helpers import rate_spikes
from typer.testing import CliRunner

from spkrecon.cli._common import guarded
from spkrecon.cli.score import compare, score
from spkrecon.io import write_dat

app = typer.Typer(pretty_exceptions_enable=False)
app.command("score")(guarded(score))
app.command("compare")(guarded(compare))
runner = CliRunner()
H, W = 104, 200
SIZE = ["--height", str(H), "--width", str(W)]


def _scene(seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.clip(0.5 + 0.4 * np.sin(xx / 6.0 + seed) * np.cos(yy / 9.0), 0.02, 0.98)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    d = tmp_path / "set"
    d.mkdir()
    write_dat(d / "a_key_id30.dat", rate_spikes(_scene(0), 60, seed=1))
    iio.imwrite(d / "a_key_id30.png", (_scene(0) * 255).round().astype(np.uint8))
    write_dat(d / "b_key_id30.dat", rate_spikes(_scene(1), 60, seed=2))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        iio.imwrite(frames / f"f{i}.png", (_scene(i) * 255).round().astype(np.uint8))
    return tmp_path


def test_score_self_json_is_clean_and_reports_inf(files: Path) -> None:
    res = runner.invoke(app, ["score", str(files / "frames"), "--gt", str(files / "frames"),
                              "--metrics", "psnr,ssim", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["mean"]["psnr"] == "inf" and data["mean"]["ssim"] == pytest.approx(1.0)
    assert [f["name"] for f in data["frames"]] == ["f0.png", "f1.png", "f2.png"]
    assert "infinite PSNR" in res.stderr


def test_score_recording_with_method(files: Path) -> None:
    rec = files / "set" / "a_key_id30.dat"
    res = runner.invoke(app, ["score", str(rec), "-m", "tfp", "--gt",
                              str(rec.with_suffix(".png")), "-p", "tfp.window=21", "--json",
                              "-q", *SIZE])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["frames"][0]["frame"] == 30
    assert data["method"] == {"name": "tfp", "params": {"window": 21, "alpha": 0.6},
                              "tonemap": "alpha"}
    assert 15 < data["mean"]["psnr"] < 60 and "niqe" in data["mean"]


def test_score_mismatched_counts_is_a_clear_error(files: Path) -> None:
    res = runner.invoke(app, ["score", str(files / "frames"), "--gt",
                              str(files / "set" / "a_key_id30.png")])
    assert res.exit_code == 2
    assert "3 reconstructed frame(s) but 1 ground-truth frame(s)" in res.stderr
    res = runner.invoke(app, ["score", str(files / "set" / "a_key_id30.dat")])
    assert res.exit_code == 2 and "--method" in res.stderr


def test_score_csv_refuses_to_overwrite(files: Path) -> None:
    out = files / "s.csv"
    args = ["score", str(files / "frames"), "--gt", str(files / "frames"), "--metrics",
            "ssim", "--csv", str(out), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "name,frame,reference,ssim" and lines[-1].startswith("mean,")
    res = runner.invoke(app, args)
    assert res.exit_code == 3 and "--force" in res.stderr
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_compare_outputs(files: Path) -> None:
    grid, table = files / "grid.png", files / "cmp.csv"
    md = files / "cmp.md"
    res = runner.invoke(app, ["compare", str(files / "set"), "--methods", "tfp,tfi",
                              "--grid", str(grid), "--crop", "10,10,40,20", "--tile-width",
                              "120", "--csv", str(table), "--markdown", str(md), "--json",
                              *SIZE])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["methods"] == ["tfp", "tfi"]
    assert [r["name"] for r in data["recordings"]] == ["a", "b"]
    assert data["mean"]["tfp"]["niqe"] is not None
    assert iio.imread(grid).shape[1] > 2 * 120
    assert table.read_text().splitlines()[-1].startswith("mean,,tfi,")
    assert "| **Mean** |" in md.read_text()
    assert "PSNR" in res.stderr  # tables go to stderr with --json
    res = runner.invoke(app, ["compare", str(files / "set"), "--methods", "tfp", "--grid",
                              str(grid), *SIZE])
    assert res.exit_code == 3 and "exists" in res.stderr


def test_compare_errors(files: Path) -> None:
    res = runner.invoke(app, ["compare", str(files / "set"), "--methods", "tfpp", *SIZE])
    assert res.exit_code == 2 and "did you mean 'tfp'" in res.stderr
    res = runner.invoke(app, ["compare", str(files / "set"), "--crop", "1,2,3,4", *SIZE])
    assert res.exit_code == 2 and "--grid" in res.stderr
    res = runner.invoke(app, ["compare", str(files / "set"), "--methods", "tfp", "-p",
                              "tfi.window=9", *SIZE])
    assert res.exit_code == 2 and "not being run" in res.stderr


def test_unusable_metric_fails_before_reconstruction(files: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pyiqa.utils import download_util

    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path / "pyiqa"))
    res = runner.invoke(app, ["compare", str(files / "set"), "--methods", "tfp", "--metrics",
                              "brisque", "--csv", str(tmp_path / "out.csv"), *SIZE])
    assert res.exit_code == 4
    assert "brisque_svm_weights.pth" in res.stderr and "reconstructing" not in res.stderr
    assert not (tmp_path / "out.csv").exists()
