"""Batch reconstruction as a library: inputs, shares, manifest, resuming, isolation, workers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
from spike_helpers import rate_spikes

from spkrecon.batch import (
    BatchSettings,
    Manifest,
    Shard,
    collect,
    parse_shard,
    run_batch,
    shard_from_env,
)
from spkrecon.batch.render import identity_changes
from spkrecon.errors import InputError, OutputError, ParameterError
from spkrecon.io import open_recording, write_dat
from spkrecon.methods import create
from spkrecon.pipeline import output_indices, reconstruct
from spkrecon.tonemap import ToneMapper

H, W = 16, 24
TFP = dict(kind="npy", method="tfp", window=5, height=H, width=W)


def _rec(path: Path, seed: int, frames: int = 30) -> Path:
    yy, xx = np.mgrid[0:H, 0:W]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dat(path, rate_spikes(0.15 + 0.7 * (xx / (W - 1)) * (yy / (H - 1)), frames, seed=seed))
    return path


@pytest.fixture
def recs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    for i, name in enumerate(["a.dat", "b.dat", "sub/c.dat", "sub/deep/d.dat"]):
        _rec(d / name, i)
    (d / ".hidden.dat").write_bytes(b"\0" * 48)
    (d / "notes.txt").write_text("not a recording")
    return d


# -- inputs -----------------------------------------------------------------------------------
def test_collect_folders_files_and_globs(recs: Path, tmp_path: Path) -> None:
    names = [r.name for r in collect([str(recs)])]
    assert names == ["a", "b", "sub/c", "sub/deep/d"]  # hidden and non-recordings left out
    assert [r.name for r in collect([str(recs / "sub" / "c.dat")])] == ["c"]
    assert [r.name for r in collect([str(recs / "*" / "*.dat")])] == ["sub/c"]
    assert [r.name for r in collect([str(recs / "**" / "*.dat")])] == [
        "a", "b", "sub/c", "sub/deep/d"]
    # the same file reached twice counts once
    assert len(collect([str(recs), str(recs / "a.dat")])) == 4
    # the output folder inside an input folder is never an input
    out = recs / "out"
    _rec(out / "x.dat", 9)
    assert "out/x" not in [r.name for r in collect([str(recs)], exclude=out)]


def test_collect_errors(recs: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        collect([str(tmp_path / "nope.dat")])
    with pytest.raises(InputError, match="no recording matches"):
        collect([str(tmp_path / "*.xyz")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no recordings"):
        collect([str(tmp_path / "empty")])
    other = _rec(tmp_path / "other" / "a.dat", 5)
    with pytest.raises(ParameterError, match="both be named 'a'"):
        collect([str(recs / "a.dat"), str(other)])


# -- shares -----------------------------------------------------------------------------------
def test_shards_from_torchrun_and_slurm() -> None:
    assert shard_from_env({}) == Shard()
    s = shard_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (s.rank, s.world, s.local_rank, s.source) == (3, 4, 1, "torchrun")
    s = shard_from_env({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5",
                        "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_NTASKS": "1"})
    assert (s.rank, s.world, s.source) == (2, 4, "slurm-array")
    s = shard_from_env({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0",
                        "SLURM_ARRAY_TASK_MAX": "6", "SLURM_ARRAY_TASK_STEP": "2"})
    assert (s.rank, s.world) == (2, 4)
    s = shard_from_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"})
    assert (s.rank, s.world, s.local_rank, s.source) == (5, 8, 1, "slurm")
    s = shard_from_env({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3",
                        "SLURM_PROCID": "1", "SLURM_NTASKS": "2"})
    assert (s.rank, s.world, s.source) == (3, 6, "slurm-array+slurm")
    # torchrun's own variables win inside an allocation
    s = shard_from_env({"RANK": "0", "WORLD_SIZE": "2", "SLURM_PROCID": "1", "SLURM_NTASKS": "4"})
    assert (s.rank, s.world) == (0, 2)
    with pytest.raises(ParameterError):
        shard_from_env({"WORLD_SIZE": "two"})


def test_shares_are_disjoint_and_cover_everything() -> None:
    items = list(range(23))
    for world in (1, 2, 3, 7, 30):
        parts = [Shard(r, world).take(items) for r in range(world)]
        assert sorted(x for p in parts for x in p) == items
    assert parse_shard("1/3") == Shard(1, 3, None, "option")
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(ParameterError):
            parse_shard(bad)


# -- the manifest -----------------------------------------------------------------------------
def test_manifest_torn_line_and_compaction(tmp_path: Path) -> None:
    m = Manifest(tmp_path)
    m.append({"name": "a", "status": "running"})
    with open(m.path, "a") as f:
        f.write('{"name": "b", "stat')  # a hard crash in the middle of a line
    m.append({"name": "a", "status": "done"})
    m.append({"name": "b", "status": "failed"})
    assert {k: v["status"] for k, v in m.latest().items()} == {"a": "done", "b": "failed"}
    m.compact()
    lines = m.path.read_text().splitlines()
    assert [json.loads(x)["name"] for x in lines] == ["a", "b"]


def _append_many(folder: str, who: int) -> None:
    m = Manifest(folder)
    for i in range(40):
        m.append({"name": f"w{who}-{i}", "status": "done", "pad": "x" * 3000})
        if i % 10 == 9:
            m.compact()


def test_manifest_concurrent_writers(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    text = Manifest(tmp_path).path.read_text()
    assert all(json.loads(line) for line in text.splitlines())  # no torn or mixed lines
    assert len(Manifest(tmp_path).latest()) == 120


# -- running ----------------------------------------------------------------------------------
def _single(path: Path) -> np.ndarray:
    src = open_recording(path, H, W)
    tfp = create("tfp", window=5)
    out = [img for _, img in reconstruct(src, tfp, output_indices(src, tfp), ToneMapper("auto"))]
    return np.stack(out)


def test_batch_matches_single_file_and_resumes(recs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run_batch([str(recs)], out, BatchSettings(**TFP))
    assert report.counts() == {"done": 4} and report.frames == 120
    for name in ("a", "sub/deep/d"):
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"),
                                      _single(recs / f"{name}.dat"))
    lines = Manifest(out).path.read_text().splitlines()
    assert len(lines) == 4  # compacted: one line per recording
    rec = json.loads(lines[0])
    for key in ("name", "input", "output", "method", "params", "settings", "status", "frames",
                "seconds", "error", "input_size", "input_mtime_ns", "rank", "host", "time"):
        assert key in rec, key
    assert (rec["status"], rec["frames"], rec["method"], rec["params"]["window"]) == \
        ("done", 30, "tfp", 5)

    # unchanged: all skipped, nothing rewritten
    before = (out / "a.npy").stat().st_mtime_ns
    again = run_batch([str(recs)], out, BatchSettings(**TFP))
    assert again.counts() == {"skipped": 4} and again.frames == 0
    assert (out / "a.npy").stat().st_mtime_ns == before

    # a changed recording and a missing output are redone, the rest skipped
    _rec(recs / "b.dat", 42, frames=36)
    (out / "sub" / "c.npy").unlink()
    third = run_batch([str(recs)], out, BatchSettings(**TFP))
    done = sorted(r["name"] for r in third.records if r["status"] == "done")
    assert done == ["b", "sub/c"] and third.counts()["skipped"] == 2
    assert np.load(out / "b.npy").shape == (36, H, W)

    # --force redoes everything
    assert run_batch([str(recs)], out, BatchSettings(**TFP), force=True).counts() == {"done": 4}


def test_other_settings_are_refused_or_forced(recs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch([str(recs / "a.dat")], out, BatchSettings(**TFP))
    other = BatchSettings(**{**TFP, "window": 7})
    with pytest.raises(OutputError, match=r"other settings \(params.window 5 -> 7\).*--force"):
        run_batch([str(recs / "a.dat")], out, other)
    # the same value through --param is the same setting (converted to the declared type)
    same = BatchSettings(**{**TFP, "window": None, "params": ["window=5"]})
    assert run_batch([str(recs / "a.dat")], out, same).counts() == {"skipped": 1}
    assert run_batch([str(recs / "a.dat")], out, other, force=True).counts() == {"done": 1}
    rec = Manifest(out).latest()["a"]
    assert rec["params"]["window"] == 7 and rec["settings"]["params"]["window"] == 7
    assert "method \"tfp\" -> \"tfi\"" in identity_changes({"method": "tfp"}, {"method": "tfi"})


def test_setup_errors_stop_before_any_work(recs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ParameterError, match="unknown method 'tfq'"):
        run_batch([str(recs)], out, BatchSettings(**{**TFP, "method": "tfq"}))
    with pytest.raises(ParameterError, match="no parameter 'sigma'"):
        run_batch([str(recs)], out, BatchSettings(**{**TFP, "params": ["sigma=2"]}))
    with pytest.raises(ParameterError, match="window"):
        run_batch([str(recs)], out, BatchSettings(**{**TFP, "params": ["window=abc"]}))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        run_batch([str(recs)], tmp_path / "file", BatchSettings(**TFP))
    assert not out.exists() or not any(out.iterdir())


def test_failures_are_isolated(recs: Path, tmp_path: Path) -> None:
    (recs / "broken.dat").write_bytes(b"\1" * 7)           # not whole frames
    _rec(recs / "short.dat", 3, frames=3)                   # shorter than the window
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.npy").write_text("the user's own file")       # not ours: never overwritten
    report = run_batch([str(recs)], out, BatchSettings(**TFP))
    status = {r["name"]: r["status"] for r in report.records}
    assert status == {"a": "done", "b": "failed", "broken": "failed", "short": "failed",
                      "sub/c": "done", "sub/deep/d": "done"}
    errors = {r["name"]: r["error"] for r in report.records if r["error"]}
    assert "not a whole number" in errors["broken"]
    assert "fewer than the 5-frame window" in errors["short"]
    assert "already exists" in errors["b"] and "--force" in errors["b"]
    assert all("\n" not in e for e in errors.values())
    assert (out / "b.npy").read_text() == "the user's own file"
    assert not list(out.rglob(".*partial*"))
    # failed ones are tried again next time; done ones are skipped
    again = run_batch([str(recs)], out, BatchSettings(**TFP))
    assert again.counts() == {"skipped": 3, "failed": 3}


def test_worker_processes_match_one_process(recs: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    run_batch([str(recs)], one, BatchSettings(**TFP))
    report = run_batch([str(recs)], two, BatchSettings(**TFP), jobs=2)
    assert report.counts() == {"done": 4} and report.jobs == 2
    assert report.threads == max(1, len(os.sched_getaffinity(0)) // 2)
    for f in one.rglob("*.npy"):
        np.testing.assert_array_equal(np.load(f), np.load(two / f.relative_to(one)))
    pids = {r["pid"] for r in report.records}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_png_and_video_outputs(recs: Path, tmp_path: Path) -> None:
    import imageio_ffmpeg

    png = run_batch([str(recs / "sub")], tmp_path / "png",
                    BatchSettings(**{**TFP, "kind": "png", "bit_depth": 16, "stride": 10}))
    assert png.counts() == {"done": 2}
    frames = sorted(p.name for p in (tmp_path / "png" / "c").iterdir())
    assert frames == ["frame_000000.png", "frame_000010.png", "frame_000020.png", "frames.json"]
    vid = run_batch([str(recs / "a.dat")], tmp_path / "vid",
                    BatchSettings(**{**TFP, "kind": "video", "start": 2, "end": 22}))
    assert vid.records[0]["frames"] == 20
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "vid" / "a.mp4"))
    assert n == 20


@pytest.mark.slow
def test_worker_memory_stays_below_the_recording_size(tmp_path: Path) -> None:
    """A 200 MB recording streams through a worker whose peak memory stays far below it."""
    big = tmp_path / "in" / "big.dat"
    big.parent.mkdir()
    rng = np.random.default_rng(0)
    with open(big, "wb") as f:
        for _ in range(16):  # 16,000 frames of 250x400, written in pieces
            f.write(rng.integers(0, 256, 1000 * 12500, dtype=np.uint8).tobytes())
    write_dat(tmp_path / "in" / "small.dat", np.zeros((100, 250, 400), np.uint8))  # 2 jobs
    report = run_batch([str(big.parent)], tmp_path / "out",
                       BatchSettings(kind="npy", method="tfp", stride=400), jobs=2)
    rec = {r["name"]: r for r in report.records}
    assert rec["big"]["status"] == "done" and rec["big"]["frames"] == 40
    assert rec["small"]["status"] == "done" and rec["big"]["pid"] != os.getpid()
    assert rec["big"]["peak_rss_mb"] < 160, rec["big"]["peak_rss_mb"]  # the file is 200 MB


def test_leftovers_of_a_hard_kill_are_removed(recs: Path, tmp_path: Path) -> None:
    """A SIGKILLed run leaves 'running' lines and hidden partial files: the next run redoes
    those recordings and removes the leftovers first."""
    out = tmp_path / "out"
    run_batch([str(recs / "a.dat")], out, BatchSettings(**TFP))
    m = Manifest(out)
    m.append({**m.latest()["a"], "status": "running"})
    (out / ".a.partial-99999.npy").write_bytes(b"half")
    (out / ".a.partial-99998.npy").mkdir()
    report = run_batch([str(recs / "a.dat")], out, BatchSettings(**TFP))
    assert report.counts() == {"done": 1}
    assert sorted(p.name for p in out.iterdir()) == [".manifest.lock", "a.npy",
                                                     "manifest.jsonl"]


class FakeNet:
    """Stands in for a network method: takes a device, remembers it."""

    name = "fakenet"

    def __init__(self, device: str = "auto", alpha: float = 0.6) -> None:
        self.device, self.alpha = device, alpha

    @classmethod
    def parameter_names(cls) -> list[str]:
        return ["device", "alpha"]


def test_gpu_workers_take_their_own_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network on the default device goes to GPU slot % count (LOCAL_RANK under torchrun,
    the worker's number with --jobs); a named device, and a method without one, are kept."""
    torch = pytest.importorskip("torch")
    from spkrecon import methods
    from spkrecon.batch.render import build_method

    monkeypatch.setitem(methods._REGISTRY, "fakenet", f"{__name__}:FakeNet")
    monkeypatch.setattr(methods, "create", lambda name, **kw: FakeNet(**kw))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert build_method("fakenet", {}, gpu_slot=3).device == "cuda:1"
    assert build_method("fakenet", {"device": "cuda"}, gpu_slot=0).device == "cuda:0"
    assert build_method("fakenet", {"device": "cpu"}, gpu_slot=1).device == "cpu"
    assert build_method("fakenet", {}, gpu_slot=None).device == "auto"
