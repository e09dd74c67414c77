"""``spkrecon batch`` end to end: the CLI, real signals to a real process, real torchrun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from spike_helpers import rate_spikes
from typer.testing import CliRunner

from spkrecon.cli import app
from spkrecon.io import sample_path, write_dat

runner = CliRunner()
H, W = 16, 24
SMALL = ["--height", str(H), "--width", str(W), "-m", "tfp", "-w", "5"]
ENV = {**os.environ, "SPKRECON_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def recs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    yy, xx = np.mgrid[0:H, 0:W]
    for i, name in enumerate(["a.dat", "b.dat", "sub/c.dat"]):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        write_dat(d / name, rate_spikes(0.2 + 0.6 * (xx / (W - 1)) * (yy / (H - 1)), 30, seed=i))
    return d


def test_batch_video_writes_resumes_and_reports(recs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run("batch", "video", str(recs), "-o", str(out), *SMALL, "--fps", "25", "-q")
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and res.stderr == ""  # -q: nothing at all on success
    for name in ("a", "b", "sub/c"):
        n, _ = imageio_ffmpeg.count_frames_and_secs(str(out / f"{name}.mp4"))
        assert n == 30
    res = run("batch", "video", str(recs), "-o", str(out), *SMALL, "--fps", "25", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["counts"] == {"skipped": 3} and report["whole"] is True
    assert [r["name"] for r in report["recordings"]] == ["a", "b", "sub/c"]
    res = run("batch", "status", str(out), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["counts"] == {"done": 3}
    # another frame rate is another setting: refused in one line, named, with the way out
    res = run("batch", "video", str(recs), "-o", str(out), *SMALL, "--fps", "30")
    assert res.exit_code == 3
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "video.fps 25.0 -> 30.0" in err and "--force" in err


def test_batch_frames_failure_exit_code_and_table(recs: Path, tmp_path: Path) -> None:
    (recs / "bad.dat").write_bytes(b"\0" * 7)
    out = tmp_path / "out"
    res = run("batch", "frames", str(recs), "-o", str(out), *SMALL, "--stride", "10")
    assert res.exit_code == 1, res.output
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: 1 of 4 recordings failed (see {out / 'manifest.jsonl'})")
    assert "bad" in res.stdout and "failed" in res.stdout and "not a whole number" in res.stdout
    assert "3 done, 1 failed" in res.stdout
    assert sorted(p.name for p in (out / "a").iterdir()) == [
        "frame_000000.png", "frame_000010.png", "frame_000020.png", "frames.json"]
    res = run("batch", "status", str(out))
    assert res.exit_code == 1 and "3 done, 1 failed" in res.stdout
    res = run("batch", "frames", str(recs), "-o", str(out), *SMALL, "--format", "tiff")
    assert res.exit_code == 2 and res.stderr.startswith("error: --format 'tiff'")


def test_batch_options_are_the_single_file_options() -> None:
    import typer.main

    group = typer.main.get_command(app)
    for single, batch in (("video", "video"), ("frames", "frames")):
        one = {p.name for p in group.commands[single].params}
        many = {p.name for p in group.commands["batch"].commands[batch].params}
        assert one - {"recording"} <= many, one - many
    assert "fmt" in {p.name for p in group.commands["batch"].commands["frames"].params}


def _wait_for(cond, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _statuses(out: Path) -> list[str]:
    return [x["status"] for x in _lines(out)]


def _partials(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if ".partial-" in p.name or ".old-" in p.name]


def _lines(out: Path) -> list[dict]:
    path = out / "manifest.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(x) for x in lines if x.endswith("}")]


def _copies(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        shutil.copy(sample_path(), folder / f"rec{i}.dat")
    return folder


def _batch_video_until(src: Path, out: Path, jobs: int, ready, act, *extra: str):
    """Run ``batch video`` (TFI, 120 frames of each copy of the sample) in a real process,
    call ``act(proc)`` once ``ready()`` holds; ``(proc, stdout, stderr, command)``."""
    cmd = [sys.executable, "-m", "spkrecon", "batch", "video", str(src), "-o", str(out),
           "-m", "tfi", "--end", "120", "--jobs", str(jobs), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)
    try:
        _wait_for(ready, 120, "the batch to be writing")
        act(proc)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc, stdout, stderr, cmd


@pytest.mark.slow
@pytest.mark.parametrize(("jobs", "sig", "code"), [(1, signal.SIGTERM, 143),
                                                    (2, signal.SIGINT, 130)])
def test_batch_signal_stops_cleanly_and_resumes(tmp_path: Path, jobs: int, sig: int,
                                                code: int) -> None:
    """A real signal in the middle of writing: finished outputs stay, nothing partial is
    left, the manifest says what happened, and the same command finishes the rest."""
    out = tmp_path / "out"

    def stop(proc: subprocess.Popen) -> None:
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # Ctrl-C reaches the whole process group
        else:
            proc.send_signal(sig)     # SIGTERM to the main process only

    # mid-write: one recording finished and another one's hidden partial file on disk
    proc, stdout, stderr, cmd = _batch_video_until(
        _copies(tmp_path / "in", 5), out, jobs,
        lambda: "done" in _statuses(out) and _partials(out), stop)
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted by SIG"), stderr
    assert "run the same command again to resume" in stderr
    assert _partials(out) == []
    latest = {x["name"]: x for x in _lines(out)}
    done = {n for n, r in latest.items() if r["status"] == "done"}
    assert done and {r["status"] for r in latest.values()} <= {"done", "interrupted"}
    assert "interrupted" in {r["status"] for r in latest.values()}
    assert {p.stem for p in out.glob("*.mp4")} == done  # finished outputs stay, no others
    for name in done:
        assert imageio_ffmpeg.count_frames_and_secs(str(out / f"{name}.mp4"))[0] == 120

    again = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=ENV,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["counts"] == {"done": 5 - len(done), "skipped": len(done)}
    assert len(list(out.glob("*.mp4"))) == 5 and _partials(out) == []


@pytest.mark.slow
def test_batch_torchrun_two_processes_share_one_manifest(recs: Path, tmp_path: Path) -> None:
    """Two ranks through torchrun (gloo on the CPU): each takes its share by RANK, rank 0
    reports the whole batch after the barrier, one manifest holds every recording."""
    write_dat(recs / "d.dat", np.zeros((30, H, W), np.uint8))
    (recs / "e.dat").write_bytes(b"\0" * 7)  # fails, on its rank only
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "spkrecon", "batch", "frames", str(recs), "-o", str(out), "--format",
           "npy", *SMALL, "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=ENV)
    assert r.returncode == 1, r.stderr[-3000:]  # rank 0 says that one recording failed
    report = json.loads(r.stdout[r.stdout.index("{"):])  # only rank 0 prints
    assert report["whole"] is True and report["shard"] == "0/2"
    names = ["a", "b", "d", "e", "sub/c"]
    assert [x["name"] for x in report["recordings"]] == names
    assert [x["rank"] for x in report["recordings"]] == [0, 1, 0, 1, 0]  # sorted, round robin
    assert report["counts"] == {"done": 4, "failed": 1}
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [x["name"] for x in lines] == names  # compacted, one line each
    assert {x["world"] for x in lines} == {2}
    assert sorted(p.name for p in out.rglob("*.npy")) == ["a.npy", "b.npy", "c.npy", "d.npy"]


@pytest.mark.slow
def test_batch_worker_killed_fails_only_its_recording(tmp_path: Path) -> None:
    """A worker process killed in the middle (as the OOM killer would) fails its recording,
    leaves no partial file, is replaced, and the others are written."""
    out = tmp_path / "out"

    def running() -> list[dict]:
        return [x for x in _lines(out) if x["status"] == "running"]

    victim: dict = {}

    def kill(proc: subprocess.Popen) -> None:
        victim.update(running()[0])
        os.kill(victim["pid"], signal.SIGKILL)

    proc, stdout, stderr, _ = _batch_video_until(
        _copies(tmp_path / "in", 4), out, 2, lambda: running() and _partials(out), kill,
        "--json")
    assert proc.returncode == 1, stderr
    report = json.loads(stdout)
    status = {r["name"]: r for r in report["recordings"]}
    assert status[victim["name"]]["status"] == "failed"
    assert "worker process died (killed by signal 9)" in status[victim["name"]]["error"]
    assert report["counts"] == {"done": 3, "failed": 1}
    assert _partials(out) == [] and len(list(out.glob("*.mp4"))) == 3


@pytest.mark.slow
def test_batch_parent_killed_takes_its_workers_along(tmp_path: Path) -> None:
    """SIGKILL of the batch process (no clean-up possible there): its workers get SIGTERM,
    remove their partial outputs and exit; the manifest says 'running', so the same command
    redoes those recordings."""
    out = tmp_path / "out"

    def running() -> list[dict]:
        return [x for x in _lines(out) if x["status"] == "running"]

    proc, _, _, cmd = _batch_video_until(
        _copies(tmp_path / "in", 3), out, 2, lambda: len(running()) == 2 and _partials(out),
        lambda p: os.kill(p.pid, signal.SIGKILL))
    assert proc.returncode == -signal.SIGKILL

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    _wait_for(lambda: all(gone(x["pid"]) for x in running()) and not _partials(out), 30,
              "the workers to stop")
    again = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=ENV,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"].get("done", 0) >= 2
    assert len(list(out.glob("*.mp4"))) == 3
