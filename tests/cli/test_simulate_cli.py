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


# Every option that a sidecar records, given again with --config, lands in the new run's
# configuration: (option and value, the configuration's value that must follow).
OVERRIDES = [
    (("--steps", "30"), lambda c: c["steps"] == 30),
    (("--motion", "none"), lambda c: c["motion"] is None),
    (("--objects", "2"), lambda c: c["motion"]["objects"] == [2, 2]),
    (("--max-speed", "2.5"), lambda c: c["motion"]["max_speed"] == 2.5),
    (("--camera-speed", "0.5"), lambda c: c["motion"]["camera_max_speed"] == 0.5),
    (("--resample", "bicubic"), lambda c: c["motion"]["resample"] == "bicubic"),
    (("--sprites", "SPRITES"), lambda c: (c["sprites"] or "").endswith("in.png")),
    (("--alpha", "0.5"), lambda c: c["alpha"] == 0.5),
    (("--theta", "0.9"), lambda c: c["theta"] == 0.9),
    (("--noise", "off"), lambda c: c["noise"] is None),
    (("--noise-scale", "0.25"), lambda c: c["noise"]["scale"] == 0.25),  # stays realistic
    (("--substeps", "2"), lambda c: c["substeps"] == 2),
    (("--height", "32"), lambda c: c["height"] == 32),
    (("--width", "48"), lambda c: c["width"] == 48),
    (("--seed", "3"), lambda c: c["seed"] == 3),
    (("--gt-step", "5"), lambda c: c["gt_steps"] == [5]),
    (("--gt-every", "10"), lambda c: c["gt_every"] == 10),
    (("--gt-all",), lambda c: c["gt_all"] is True),
    (("--chunk", "8"), lambda c: c["chunk"] == 8),
    (("--device", "cpu"), lambda c: c["device"] == "cpu"),  # the only device here
]


@pytest.fixture
def noisy_run(tmp_path: Path, png: Path) -> tuple[Path, dict]:
    a = tmp_path / "a.dat"
    res = run("simulate", str(png), "-o", str(a), "--height", "40", "--width", "64", "--steps",
              "20", "--objects", "1", "--max-speed", "1", "--noise", "realistic",
              "--noise-scale", "0.5", "--seed", "9", "-q")
    assert res.exit_code == 0, res.output
    return a.with_suffix(".json"), json.loads(a.with_suffix(".json").read_text())["config"]


@pytest.mark.parametrize("option,check", OVERRIDES, ids=[o[0][0] for o in OVERRIDES])
def test_config_override_of_every_option(tmp_path: Path, png: Path, noisy_run, option,
                                         check) -> None:
    sidecar, before = noisy_run
    option = tuple(str(png) if v == "SPRITES" else v for v in option)
    out = tmp_path / "o.dat"
    res = run("simulate", "-o", str(out), "--config", str(sidecar), *option, "-q")
    assert res.exit_code == 0, res.output
    after = json.loads(out.with_suffix(".json").read_text())["config"]
    assert check(after), (option, after)
    changed = {k for k in after if after[k] != before[k]}
    if option[0] != "--device":
        assert not check(before), f"{option} is the base run's value already"
        assert len(changed) == 1, changed  # nothing else moved
    else:
        assert not changed


def test_config_override_of_frame_options(tmp_path: Path) -> None:
    frames = tmp_path / "clip"
    frames.mkdir()
    for i in range(3):
        iio.imwrite(frames / f"f{i}.png", (street_scene(60, 90, i).numpy() * 255).astype(np.uint8))
    a = tmp_path / "a.dat"
    assert run("simulate", str(frames), "-o", str(a), "--height", "40", "--width", "64",
               "--steps-per-frame", "4", "-q").exit_code == 0
    for option, key, value in ((("--steps-per-frame", "3"), "steps_per_frame", 3.0),
                               (("--interp", "linear"), "interp", "linear")):
        out = tmp_path / f"{key}.dat"
        res = run("simulate", "-o", str(out), "--config", str(a.with_suffix(".json")), *option,
                  "-q")
        assert res.exit_code == 0, res.output
        assert json.loads(out.with_suffix(".json").read_text())["config"][key] == value


@pytest.mark.parametrize("args,needle", [
    (("--noise-scale", "0.5"), "--noise-scale has no effect without noise"),
    (("--motion", "none", "--objects", "2"), "--objects has no effect with --motion none"),
    (("--motion", "none", "--resample", "bicubic"), "--resample has no effect"),
    (("--interp", "linear"), "--interp applies to frame folders and videos"),
    (("--steps-per-frame", "4"), "--steps-per-frame applies to frame folders"),
])
def test_options_that_cannot_apply_are_errors(tmp_path: Path, png: Path, args, needle) -> None:
    res = run("simulate", str(png), "-o", str(tmp_path / "x.dat"), *SMALL, *args, "-q")
    assert needle in one_line_error(res, 2)
    assert not (tmp_path / "x.dat").exists()


def test_config_options_that_cannot_apply_are_errors(tmp_path: Path, png: Path) -> None:
    a = tmp_path / "a.dat"
    assert run("simulate", str(png), "-o", str(a), *SMALL, "--motion", "none",
               "-q").exit_code == 0
    sidecar = str(a.with_suffix(".json"))
    res = run("simulate", "-o", str(tmp_path / "b.dat"), "--config", sidecar, "--objects", "2")
    assert "does not move" in one_line_error(res, 2)
    res = run("simulate", "-o", str(tmp_path / "c.dat"), "--config", sidecar,
              "--noise-scale", "2")
    assert "no effect without noise" in one_line_error(res, 2)
    res = run("simulate", "-o", str(tmp_path / "d.dat"), "--config", sidecar, "--motion",
              "random", "--objects", "2", "-q")
    assert res.exit_code == 0, res.output


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
