"""Options that cannot apply are usage errors (exit 2, one line saying why), not ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from spkrecon.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def usage_error(result) -> str:
    assert result.exit_code == 2, result.output
    text = result.stderr.strip()
    assert text.startswith("error:") and len(text.splitlines()) == 1, text
    return text


def test_bit_depth_with_a_npy_stack(tmp_path: Path) -> None:
    out = tmp_path / "x.npy"
    msg = usage_error(run("frames", "sample", "-o", str(out), "--bit-depth", "12", "-m", "tfp"))
    assert "--bit-depth applies to PNG frames" in msg
    assert not out.exists()
    res = run("frames", "sample", "-o", str(out), "-m", "tfp", "--end", "45", "-q")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("option", [
    ("--stride", "5"), ("--alpha", "0.5"), ("--tonemap", "alpha"), ("--height", "100"),
    ("--width", "100"), ("--layout", "thw"), ("--flip",), ("--crop-header",),
    ("--param", "window=3"), ("--key-frame", "3"),
])
def test_score_without_method_refuses_reconstruction_options(option: tuple[str, ...]) -> None:
    gt = Path(__file__).resolve().parents[2] / "spkrecon" / "data" / "sample_gt.png"
    msg = usage_error(run("score", str(gt), "--metrics", "psnr", "--gt", str(gt), *option))
    assert f"options that need --method: {option[0]}" in msg


def test_score_without_method_still_scores() -> None:
    gt = Path(__file__).resolve().parents[2] / "spkrecon" / "data" / "sample_gt.png"
    res = run("score", str(gt), "--metrics", "psnr", "--gt", str(gt), "--json", "-q")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("option", [("--height", "200"), ("--width", "300"), ("--crop-header",),
                                    ("--layout", "thw"), ("--flip",)])
def test_sample_refuses_recording_options(option: tuple[str, ...]) -> None:
    msg = usage_error(run("info", "sample", *option))
    assert f"{option[0]} cannot apply to 'sample'" in msg


def test_sample_accepts_its_own_size() -> None:
    assert run("info", "sample", "--height", "250", "--width", "400").exit_code == 0
