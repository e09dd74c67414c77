"""``spkrecon simulate`` and ``spkrecon dataset make`` through typer's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from spkrecon.cli._common import guarded
from spkrecon.cli.simulate import dataset_app, simulate
from spkrecon.io import open_recording
from spkrecon.simulate.synthetic import street_scene

app = typer.Typer()
app.command("simulate")(guarded(simulate))
app.add_typer(dataset_app, name="dataset")
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    text = result.stderr.strip()
    assert "Traceback" not in result.output
    assert text.startswith("error:") and len(text.splitlines()) == 1, text
    return text


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    iio.imwrite(path, (street_scene(60, 90, 1).numpy() * 255).astype(np.uint8))
    return path


SMALL = ("--height", "40", "--width", "64", "--steps", "50")


def test_module_import_stays_light() -> None:
    code = ("import sys; import spkrecon.cli.simulate; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_simulate_image_json_and_files(tmp_path: Path, png: Path) -> None:
    out = tmp_path / "o.dat"
    res = run("simulate", str(png), "-o", str(out), *SMALL, "--objects", "1", "--noise",
              "realistic", "--gt-step", "10", "--gt-step", "20", "--resample", "bicubic",
              "--json")
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    assert record["gt_steps"] == [10, 20] and record["config"]["noise"]["scale"] == 1.0
    assert record["config"]["motion"]["objects"] == [1, 1]
    assert record["config"]["motion"]["resample"] == "bicubic"
    assert open_recording(out, 40, 64).num_frames == 50
    assert (tmp_path / "o_gt" / "000020.png").is_file()
    assert json.loads(out.with_suffix(".json").read_text())["seed"] == 0


def test_config_repeats_and_overrides(tmp_path: Path, png: Path) -> None:
    a = tmp_path / "a.dat"
    assert run("simulate", str(png), "-o", str(a), *SMALL, "--seed", "9", "-q").exit_code == 0
    b = tmp_path / "b.dat"
    res = run("simulate", "-o", str(b), "--config", str(a.with_suffix(".json")), "-q")
    assert res.exit_code == 0, res.output
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.dat"
    res = run("simulate", "-o", str(c), "--config", str(a.with_suffix(".json")), "--seed", "10",
              "-q")
    assert res.exit_code == 0
    assert a.read_bytes() != c.read_bytes() and c.stat().st_size == a.stat().st_size
    assert json.loads(c.with_suffix(".json").read_text())["config"]["seed"] == 10


def test_progress_goes_to_stderr(tmp_path: Path, png: Path) -> None:
    res = run("simulate", str(png), "-o", str(tmp_path / "p.dat"), *SMALL)
    assert res.exit_code == 0
    assert res.stdout == ""
    assert "wrote" in res.stderr


def test_errors_are_one_line(tmp_path: Path, png: Path) -> None:
    out = tmp_path / "e.dat"
    assert run("simulate", str(png), "-o", str(out), *SMALL, "-q").exit_code == 0
    assert "--force" in one_line_error(run("simulate", str(png), "-o", str(out), *SMALL), 3)
    assert run("simulate", str(png), "-o", str(out), *SMALL, "-q", "--force").exit_code == 0
    one_line_error(run("simulate", str(tmp_path / "nope.png"), "-o", str(out)), 2)
    one_line_error(run("simulate", str(png), "-o", str(tmp_path / "n.dat"), "--noise", "loud"),
                   2)
    assert "resampling" in one_line_error(run("simulate", str(png), "-o", str(tmp_path / "n.dat"),
                                              "--resample", "cubic"), 2)
    one_line_error(run("simulate", str(png), "-o", str(tmp_path / "n.dat"), "--height", "5",
                       "--width", "5"), 2)
    one_line_error(run("simulate", str(png), "-o", str(tmp_path / "n.dat"), "--gt-step", "999",
                       *SMALL), 2)
    one_line_error(run("simulate", "-o", str(tmp_path / "n.dat")), 2)
    assert not list(tmp_path.glob("n*"))


def test_dataset_make(tmp_path: Path, png: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(2):
        iio.imwrite(images / f"p{i}.png", (street_scene(50, 70, i).numpy() * 255).astype(np.uint8))
    out = tmp_path / "train"
    res = run("dataset", "make", str(out), "--kind", "train", "--images", str(images),
              "--count", "2", "--height", "24", "--width", "32", "--threads", "1")
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    assert len(list((out / "input").glob("*.dat"))) == 2
    assert len(list((out / "gt").glob("*_35.png"))) == 2
    assert "--force" in one_line_error(
        run("dataset", "make", str(out), "--images", str(images), "--count", "1"), 3)
    one_line_error(run("dataset", "make", str(tmp_path / "x"), "--kind", "valid", "--images",
                       str(images)), 2)
    one_line_error(run("dataset", "make", str(tmp_path / "y")), 2)


def test_default_output_is_named_after_the_input(tmp_path: Path, png: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    res = run("simulate", str(png), *SMALL, "-q")
    assert res.exit_code == 0, res.output
    assert (here / "in.dat").is_file() and (here / "in_gt").is_dir()
