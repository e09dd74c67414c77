"""``dataset make``: the Spike40/REDS test layout and the Spk2ImgNet training layout."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from spkrecon.datasets import DatasetConfig, collect_sources, make_dataset, plan
from spkrecon.errors import InputError, OutputError, ParameterError
from spkrecon.io import open_recording
from spkrecon.methods.tfp import TFP
from spkrecon.simulate.motion import MotionConfig
from spkrecon.simulate.synthetic import street_scene


@pytest.fixture(scope="module")
def sources_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src")
    (root / "images" / "sub").mkdir(parents=True)
    for i in range(3):
        img = street_scene(70, 100, i).numpy()
        where = root / "images" / ("sub" if i == 2 else "") / f"pic {i}.png"
        iio.imwrite(where, (img * 255 + 0.5).astype(np.uint8))
    (root / "images" / "notes.txt").write_text("not an image")
    clip = root / "videos" / "clip_a"
    clip.mkdir(parents=True)
    big = street_scene(60, 140, 9).numpy()
    for i in range(5):
        iio.imwrite(clip / f"f{i}.png", (big[:, 4 * i:4 * i + 80] * 255).astype(np.uint8))
    return root


def cfg(**kw: object) -> DatasetConfig:
    base: dict[str, object] = {"height": 32, "width": 48, "count": 4, "interp": "linear",
                               "motion": MotionConfig(objects=(1, 2)).to_dict()}
    base.update(kw)
    return DatasetConfig(**base)  # type: ignore[arg-type]


def test_sources_are_found(sources_dir: Path) -> None:
    src = collect_sources([sources_dir / "images"], [sources_dir / "videos"])
    assert len(src.images) == 3 and [c.name for c in src.clips] == ["clip_a"]
    with pytest.raises(InputError):
        collect_sources([sources_dir / "nothing"], [])
    with pytest.raises(InputError):
        collect_sources([], [])


def test_test_set_layout(tmp_path: Path, sources_dir: Path) -> None:
    src = collect_sources([sources_dir / "images"], [sources_dir / "videos"])
    out = tmp_path / "test"
    done: list[str] = []
    manifest = make_dataset(out, cfg(), src, on_sample=done.append)
    names = [s["name"] for s in manifest["samples"]]
    assert len(names) == 4 == len(done) and len(set(names)) == 4
    assert all(n.endswith("_key_id151") and "_part" in n for n in names)
    assert sum(s["kind"] == "clip" for s in manifest["samples"]) == 2  # video share 0.5
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"{n}.dat" for n in names] + [f"{n}.png" for n in names]
                           + ["dataset.json"])
    for n in names:
        rec = open_recording(out / f"{n}.dat", 32, 48)
        assert rec.num_frames == 301
        gt = iio.imread(out / f"{n}.png")
        assert gt.shape == (32, 48) and gt.dtype == np.uint8
        # The key frame's ground truth is what the spikes around step 150 say (short window:
        # objects may move fast).
        rate = TFP(window=9)(rec.read(130, 171), [20])[0]
        err = np.abs(np.clip(rate / 0.6, 0, 1) - gt / 255.0)
        assert np.median(err) < 0.12
    saved = json.loads((out / "dataset.json").read_text())
    assert saved["layout"] == "test" and saved["steps"] == 301
    assert saved["gt_steps_0based"] == [150]


def test_train_set_layout_and_determinism(tmp_path: Path, sources_dir: Path) -> None:
    src = collect_sources([sources_dir / "images"], [])
    a = make_dataset(tmp_path / "a", cfg(kind="train", count=3, seed=3), src)
    b = make_dataset(tmp_path / "b", cfg(kind="train", count=3, seed=3), src)
    names = [s["name"] for s in a["samples"]]
    assert names == [s["name"] for s in b["samples"]]
    for n in names:
        dat = tmp_path / "a" / "input" / f"{n}.dat"
        assert open_recording(dat, 32, 48).num_frames == 41
        assert dat.read_bytes() == (tmp_path / "b" / "input" / f"{n}.dat").read_bytes()
        for c in (7, 14, 21, 28, 35):
            assert (tmp_path / "a" / "gt" / f"{n}_{c}.png").is_file()
    assert len(list((tmp_path / "a" / "gt").iterdir())) == 15
    other = plan(cfg(kind="train", count=3, seed=4), src)
    assert [s.seed for s in other] != [s["seed"] for s in a["samples"]]


def test_refuses_existing_output_and_bad_config(tmp_path: Path, sources_dir: Path) -> None:
    src = collect_sources([sources_dir / "images"], [])
    out = tmp_path / "d"
    out.mkdir()
    with pytest.raises(OutputError):
        make_dataset(out, cfg(count=1), src)
    make_dataset(out, cfg(count=1, kind="train"), src, force=True)
    assert (out / "input").is_dir()
    with pytest.raises(ParameterError):
        make_dataset(tmp_path / "e", cfg(kind="valid"), src)
    with pytest.raises(ParameterError):
        make_dataset(tmp_path / "e", cfg(height=3, width=3), src)


@pytest.mark.slow
def test_from_shared_images_and_videos(tmp_path: Path, shared_dir: Path) -> None:
    images = shared_dir / "data" / "images"
    videos = shared_dir / "data" / "videos"
    if not images.is_dir() or not videos.is_dir():
        pytest.skip("shared images or videos are not present")
    src = collect_sources([images], [videos])
    assert len(src.images) > 100 and len(src.clips) >= 10
    manifest = make_dataset(tmp_path / "t", cfg(count=2, height=64, width=96, interp="flow"),
                            src)
    kinds = sorted(s["kind"] for s in manifest["samples"])
    assert kinds == ["clip", "image"]
    for s in manifest["samples"]:
        assert 0.02 < s["mean_rate"] < 0.6
