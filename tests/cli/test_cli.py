"""The CLI end to end with typer's CliRunner: real files, real ffmpeg."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from spike_helpers import rate_spikes
from typer.testing import CliRunner

from spkrecon.cli import app
from spkrecon.io import write_dat

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def rec(tmp_path: Path) -> Path:
    yy, xx = np.mgrid[0:24, 0:40]
    spikes = rate_spikes(0.2 + 0.6 * (xx / 39.0) * (yy / 23.0), 80)
    path = tmp_path / "rec.dat"
    write_dat(path, spikes)
    return path


def one_line_error(result, code: int | None = None) -> str:
    assert result.exit_code != 0
    if code is not None:
        assert result.exit_code == code
    text = result.stderr.strip()
    assert "Traceback" not in result.output + result.stderr
    assert text.startswith("error:")
    assert len(text.splitlines()) == 1, text
    return text


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from spkrecon.cli import app; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "spkrecon", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "video" in out.stdout


def test_info_json(rec: Path) -> None:
    res = run("info", str(rec), "--height", "24", "--width", "40", "--json", "--rate", "20000")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["height"], data["width"], data["frames"]) == (24, 40, 80)
    assert data["duration_s"] == pytest.approx(80 / 20000)
    assert 0.1 < data["mean_rate"] < 0.5
    assert data["pixel_rate_min"] <= data["pixel_rate_median"] <= data["pixel_rate_max"]


def test_info_table_on_sample() -> None:
    res = run("info", "sample")
    assert res.exit_code == 0
    assert "250 x 400" in res.stdout and "firing rate" in res.stdout


def test_video_writes_playable_mp4(rec: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    res = run("video", str(rec), "--height", "24", "--width", "40", "-o", str(out),
              "-m", "tfp", "-w", "9", "--start", "10", "--end", "50", "--stride", "2")
    assert res.exit_code == 0, res.output
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert frames == 20
    meta = next(imageio_ffmpeg.read_frames(str(out)))
    assert tuple(meta["size"]) == (40, 24)
    assert "wrote" in res.stderr


def test_video_of_the_sample_with_auto_method(tmp_path: Path, monkeypatch) -> None:
    """The README's main job, on 6 frames: without CUDA, the first network of
    ``auto.CPU_PREFERENCE`` with weights runs and writes one video frame per output frame."""
    from spkrecon.methods import auto
    from spkrecon.models.weights import find_weights

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(auto, "_cuda_available", lambda: False)
    res = run("video", "sample", "--end", "6")
    assert res.exit_code == 0, res.output
    expected = next(n for n in auto.CPU_PREFERENCE if find_weights(n) is not None)
    assert f"method auto: using {expected} (" in res.stderr
    assert "wrote sample.mp4 (6 frames, 400x250" in res.stderr
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "sample.mp4"))
    assert frames == 6


def test_frames_png_and_npy(rec: Path, tmp_path: Path) -> None:
    res = run("frames", str(rec), "--height", "24", "--width", "40", "-o",
              str(tmp_path / "png"), "-m", "tfi", "--bit-depth", "16", "--start", "30",
              "--end", "33", "-q")
    assert res.exit_code == 0, res.output
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:06d}.png" for i in (30, 31, 32)]
    assert iio.imread(pngs[0]).dtype == np.uint16
    meta = json.loads((tmp_path / "png" / "frames.json").read_text())
    assert meta["method"] == "tfi"
    res = run("frames", str(rec), "--height", "24", "--width", "40", "-o",
              str(tmp_path / "s.npy"), "-m", "tfp", "--tonemap", "alpha", "--stride", "10")
    assert res.exit_code == 0, res.output
    stack = np.load(tmp_path / "s.npy")
    assert stack.shape == (8, 24, 40) and stack.dtype == np.float32
    assert 0 <= stack.min() and stack.max() <= 1


def test_methods_lists_registry() -> None:
    res = run("methods", "--json")
    assert res.exit_code == 0
    names = {m["name"] for m in json.loads(res.stdout)}
    assert {"tfp", "tfi"} <= names


# -- bad input: one line, non-zero exit, nothing left behind --------------------------------
def test_missing_file(tmp_path: Path) -> None:
    msg = one_line_error(run("info", str(tmp_path / "nope.dat")), 2)
    assert "does not exist" in msg


def test_directory_input(tmp_path: Path) -> None:
    assert "directory" in one_line_error(run("video", str(tmp_path)), 2)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.dat").write_bytes(b"")
    assert "empty" in one_line_error(run("info", str(tmp_path / "e.dat")), 2)


def test_wrong_size_suggests_resolutions(tmp_path: Path) -> None:
    (tmp_path / "w.dat").write_bytes(bytes(250 * 416 // 8 * 2))
    msg = one_line_error(run("info", str(tmp_path / "w.dat")), 2)
    assert "250x416" in msg and "--height/--width" in msg


def test_non_binary_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "g.npy", np.full((5, 8, 8), 3, np.uint8))
    assert "not a binary" in one_line_error(run("video", str(tmp_path / "g.npy")), 2)


def test_window_longer_than_recording(rec: Path, tmp_path: Path) -> None:
    msg = one_line_error(run("video", str(rec), "--height", "24", "--width", "40", "-m", "tfp",
                             "-w", "200", "-o", str(tmp_path / "x.mp4")), 2)
    assert "window" in msg
    assert not (tmp_path / "x.mp4").exists()


def test_unknown_method_suggests(rec: Path) -> None:
    msg = one_line_error(run("video", str(rec), "--height", "24", "--width", "40", "-m", "tfpp"))
    assert "did you mean 'tfp'" in msg


def test_existing_output_needs_force(rec: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    args = ["video", str(rec), "--height", "24", "--width", "40", "-m", "tfp", "-o", str(out)]
    assert "--force" in one_line_error(run(*args), 3)
    assert out.read_bytes() == b"keep me"
    assert run(*args, "--force").exit_code == 0
    assert out.stat().st_size > 100


def test_unwritable_output(rec: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    msg = one_line_error(run("video", str(rec), "--height", "24", "--width", "40", "-m", "tfp",
                             "-o", str(tmp_path / "file" / "o.mp4")), 3)
    assert "cannot create folder" in msg


def test_interrupt_leaves_no_output(rec: Path, tmp_path: Path, monkeypatch) -> None:
    from spkrecon.export import VideoWriter

    real_write = VideoWriter.write

    def write_then_interrupt(self, frame):  # Ctrl-C arrives after 3 frames
        if self.frames_written == 3:
            raise KeyboardInterrupt
        real_write(self, frame)

    monkeypatch.setattr(VideoWriter, "write", write_then_interrupt)
    out = tmp_path / "o.mp4"
    res = run("video", str(rec), "--height", "24", "--width", "40", "-m", "tfp", "-o", str(out))
    assert res.exit_code == 130
    assert "interrupted" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.dat"]


def test_debug_shows_traceback(tmp_path: Path) -> None:
    res = runner.invoke(app, ["--debug", "info", str(tmp_path / "nope.dat")])
    assert res.exit_code == 2
    assert "Traceback" in res.stderr


def test_bad_param_syntax(rec: Path) -> None:
    assert "KEY=VALUE" in one_line_error(
        run("video", str(rec), "--height", "24", "--width", "40", "-m", "tfp", "-p", "window"))


def test_usage_errors_are_one_line_from_the_console_script() -> None:
    out = subprocess.run([sys.executable, "-m", "spkrecon", "video", "sample", "--bogus"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: No such option: --bogus")
    out = subprocess.run([sys.executable, "-m", "spkrecon", "frames", "sample", "-o", "x",
                          "--stride", "0"], capture_output=True, text=True)
    assert out.returncode == 2 and "--stride" in out.stderr and "Traceback" not in out.stderr


def test_truncated_recording_says_how_many_frames_fit(tmp_path: Path) -> None:
    (tmp_path / "t.dat").write_bytes(bytes(12500 * 2 + 5000))
    msg = one_line_error(run("video", str(tmp_path / "t.dat"), "-o", str(tmp_path / "t.mp4")), 2)
    assert "2 whole frames" in msg and "truncated" in msg
    assert not (tmp_path / "t.mp4").exists()
