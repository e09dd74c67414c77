"""compare: runs, skipped methods, tables, CSV/JSON/Markdown and the image grid."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio
from spike_helpers import rate_spikes

from spkrecon import methods as registry
from spkrecon.compare import (
    find_recordings,
    parse_crop,
    render_grid,
    resolve_methods,
    run_compare,
    save_grid,
)
from spkrecon.errors import OutputError, ParameterError, UnknownNameError, WeightsError
from spkrecon.io import write_dat
from spkrecon.methods.tfp import TFP

H, W, T = 104, 200, 60
OPEN = {"height": H, "width": W}


def _scene(seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.clip(0.5 + 0.4 * np.sin(xx / 6.0 + seed) * np.cos(yy / 9.0), 0.02, 0.98)


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """``a_key_id30.dat`` + ``.png`` (ground truth) and ``b_key_id30.dat`` without."""
    d = tmp_path / "data"
    d.mkdir()
    spikes = rate_spikes(_scene(0), T, seed=1)
    write_dat(d / "a_key_id30.dat", spikes)
    iio.imwrite(d / "a_key_id30.png", (_scene(0) * 255).round().astype(np.uint8))
    write_dat(d / "b_key_id30.dat", rate_spikes(_scene(1), T, seed=2))
    return d, spikes


class Broken(TFP):
    name = "broken"

    def __init__(self, alpha: float = 0.6) -> None:
        raise WeightsError("no weights installed for broken", "install them")


@pytest.fixture
def broken_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._REGISTRY, "broken", "tests:Broken")
    monkeypatch.setitem(registry._CACHE, "broken", Broken)


def test_find_recordings_pairs_truth_and_key_frames(dataset: tuple[Path, np.ndarray]) -> None:
    d, _ = dataset
    specs = find_recordings([d])
    assert [s.name for s in specs] == ["a", "b"]
    assert specs[0].truth == d / "a_key_id30.png" and specs[1].truth is None
    assert specs[0].key_frames == [29] and specs[0].truth_frame == 29
    two = find_recordings([d / "a_key_id30.dat"], key_frames=[19, 29])
    assert two[0].key_frames == [19, 29] and two[0].truth_frame == 29
    with pytest.raises(Exception, match="does not exist"):
        find_recordings([d / "nope.dat"])


def test_run_scores_against_independent_psnr(dataset: tuple[Path, np.ndarray]) -> None:
    d, spikes = dataset
    result = run_compare(find_recordings([d]), ["tfp", "tfi"], explicit=True,
                         open_options=OPEN)
    assert result.methods == ["tfp", "tfi"] and not result.skipped
    assert [r.tonemap for r in result.rows] == ["alpha", "auto"]
    # TFP, 41 frames centred on frame 29 (0-based), divided by 0.6 and clipped.
    tfp = np.clip(spikes[9:50].mean(axis=0) / 0.6, 0, 1)
    truth = (_scene(0) * 255).round() / 255
    expected = peak_signal_noise_ratio(truth, tfp, data_range=1.0)
    assert result.value(0, "tfp", "psnr") == pytest.approx(expected, abs=1e-4)
    assert math.isnan(result.value(1, "tfp", "psnr"))
    assert all(math.isfinite(result.value(i, m, "niqe")) for i in (0, 1) for m in ("tfp", "tfi"))
    assert result.mean("tfp", "psnr") == pytest.approx(expected, abs=1e-4)
    assert result.mean("tfi", "niqe") == pytest.approx(
        (result.value(0, "tfi", "niqe") + result.value(1, "tfi", "niqe")) / 2)
    assert result.lower_better == {"psnr": False, "ssim": False, "niqe": True}


def test_outputs_layout(dataset: tuple[Path, np.ndarray]) -> None:
    d, _ = dataset
    result = run_compare(find_recordings([d]), ["tfp", "tfi"], metrics=["psnr", "niqe"],
                         open_options=OPEN)
    rows = list(csv.reader(io.StringIO(result.to_csv())))
    assert rows[0] == ["recording", "frame", "method", "psnr", "niqe", "seconds"]
    assert [r[:3] for r in rows[1:]] == [["a", "30", "tfp"], ["a", "30", "tfi"],
                                         ["b", "30", "tfp"], ["b", "30", "tfi"],
                                         ["mean", "", "tfp"], ["mean", "", "tfi"]]
    assert rows[3][3] == ""  # no ground truth for b
    data = json.loads(result.to_json())
    assert data["mean"]["tfp"]["psnr"] == pytest.approx(result.mean("tfp", "psnr"))
    assert data["results"][2]["psnr"] is None and data["recordings"][0]["frame"] == 30
    md = result.to_markdown()
    psnr_table, niqe_table = md.split("\n\n**")
    assert psnr_table.splitlines()[2] == "| Recording | tfp | tfi |"
    assert psnr_table.strip().splitlines()[-1].startswith("| **Mean** |")
    assert [ln.split("|")[1].strip() for ln in niqe_table.strip().splitlines()[4:]] == [
        "a", "b", "**Mean**"]
    from rich.console import Console

    console = Console(file=io.StringIO(), width=120)
    for t in result.tables():
        console.print(t)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.index("Mean") > text.index(" a ") and "NIQE" in text


def test_all_skips_a_method_that_cannot_run(dataset: tuple[Path, np.ndarray],
                                            broken_method: None) -> None:
    d, _ = dataset
    specs = find_recordings([d / "a_key_id30.dat"])
    result = run_compare(specs, ["tfp", "broken"], explicit=False, metrics=["psnr"],
                         open_options=OPEN)
    assert result.methods == ["tfp"]
    assert "no weights installed" in result.skipped["broken"]
    with pytest.raises(WeightsError):
        run_compare(specs, ["tfp", "broken"], explicit=True, metrics=["psnr"],
                    open_options=OPEN)


def test_resolve_methods(broken_method: None) -> None:
    names, explicit = resolve_methods("all")
    assert names == registry.available() and not explicit
    assert resolve_methods("TFI, tfp") == (["tfi", "tfp"], True)
    with pytest.raises(UnknownNameError, match="did you mean 'tfp'"):
        resolve_methods("tfpp")
    with pytest.raises(ParameterError):
        resolve_methods("all,tfp")


def test_key_frame_rules(dataset: tuple[Path, np.ndarray]) -> None:
    d, _ = dataset
    result = run_compare(find_recordings([d / "a_key_id30.dat"], key_frames=[19, 29]),
                         ["tfp"], metrics=["psnr"], open_options=OPEN)
    assert [r.key_frame for r in result.rows] == [19, 29]
    assert math.isnan(result.value(0, "tfp", "psnr"))
    assert math.isfinite(result.value(1, "tfp", "psnr"))
    assert result.rows[1].label(result.several_frames) == "a #30"
    unnamed = d / "c.dat"
    unnamed.write_bytes((d / "b_key_id30.dat").read_bytes())
    with pytest.raises(ParameterError, match="key frame 151 is outside"):
        run_compare(find_recordings([unnamed]), ["tfp"], open_options=OPEN)


def test_grid_with_crop(dataset: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    d, _ = dataset
    result = run_compare(find_recordings([d]), ["tfp", "tfi"], metrics=["psnr"],
                         open_options=OPEN)
    plain = render_grid(result, tile_width=100)
    zoomed = render_grid(result, crop=parse_crop("20,10,40,30"), tile_width=100)
    assert zoomed.width == plain.width and zoomed.height > plain.height + 2 * 52
    # Within the first row of tiles (same place in both) only the box differs: black and
    # white lines, 20x15 pixels at this scale, on each of the 3 tiles.
    top_plain = np.asarray(plain.convert("L"))[:45]
    top_zoomed = np.asarray(zoomed.convert("L"))[:45]
    changed = top_plain != top_zoomed
    assert 3 * 40 < changed.sum() < 3 * 2 * (20 + 15) * 2
    assert set(np.unique(top_zoomed[changed])) <= {0, 255}
    with pytest.raises(ParameterError, match="outside"):
        render_grid(result, crop=(190, 0, 40, 30))
    with pytest.raises(ParameterError, match="x,y,w,h"):
        parse_crop("1,2,3")
    out = tmp_path / "grid.png"
    save_grid(zoomed, out)
    assert iio.imread(out).shape[:2] == (zoomed.height, zoomed.width)
    with pytest.raises(OutputError, match="exists"):
        save_grid(zoomed, out)
    save_grid(plain, out, force=True)
    assert iio.imread(out).shape[0] == plain.height
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "grid.png"]


def test_reds_cross_check(reds_dir: Path) -> None:
    result = run_compare(find_recordings([reds_dir]), ["tfp"], metrics=["psnr"])
    assert [r.recording for r in result.rows][0] == "200_part1"
    assert round(result.value(0, "tfp", "psnr"), 2) == 31.60
    assert round(result.mean("tfp", "psnr"), 2) == 26.24
