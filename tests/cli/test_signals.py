"""Real signals to a real ``spkrecon`` process while it writes (issue 16).

SIGINT, SIGTERM and SIGHUP arrive in the middle of writing a video, a PNG folder and a
``.npy`` stack, with and without ``--force`` over an existing output: the process exits
130 / 143 / 129 with one line on stderr, nothing partial is left, and the old output is
intact (the run did not finish).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spkrecon.io import write_dat

H, W, T = 100, 160, 3000
SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
OUTPUTS = {"video": ("video", "out.mp4"), "png": ("frames", "out"), "npy": ("frames", "out.npy")}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signals") / "long.dat"
    rng = np.random.default_rng(0)
    write_dat(path, (rng.random((T, H, W)) < 0.3).astype(np.uint8))
    return path


def _old_output(path: Path, kind: str) -> None:
    if kind == "png":
        path.mkdir()
        (path / "frame_000007.png").write_bytes(b"an old frame")
        (path / "frames.json").write_text("{}")
    else:
        path.write_bytes(b"an old output")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


def _partial(root: Path) -> Path | None:
    return next((p for p in root.iterdir() if ".partial-" in p.name), None)


def _signal_when(proc: subprocess.Popen, ready, signum: int, settle: float = 0.0) -> str:
    """Send ``signum`` to ``proc`` once ``ready()`` holds (it must still be running), then
    return its stderr."""
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        time.sleep(settle)
        proc.send_signal(signum)
        return proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _busy(partial: Path) -> bool:
    """The run is under way: frames are being written into the partial output."""
    if partial.is_dir():
        return len(list(partial.iterdir())) >= 2
    return partial.exists() and partial.stat().st_size > 0


@pytest.mark.parametrize("force", [False, True], ids=["fresh", "force-over-old"])
@pytest.mark.parametrize("kind", list(OUTPUTS))
@pytest.mark.parametrize(("signum", "code"), SIGNALS, ids=[s.name for s, _ in SIGNALS])
def test_signal_leaves_nothing_partial(recording: Path, tmp_path: Path, kind: str,
                                       force: bool, signum: int, code: int) -> None:
    command, name = OUTPUTS[kind]
    out = tmp_path / name
    if force:
        _old_output(out, kind)
    before = _snapshot(tmp_path)
    args = [sys.executable, "-m", "spkrecon", command, str(recording), "--height", str(H),
            "--width", str(W), "-m", "tfp", "-w", "5", "-o", str(out), "-q"]
    if force:
        args.append("--force")
    env = {**os.environ, "SPKRECON_PROGRESS": "0"}
    env.pop("SPKRECON_DEBUG", None)
    # As a user's foreground command gets it: a test runner started in the background (or
    # under nohup) passes SIGINT on ignored, and the CLI rightly keeps an inherited SIG_IGN.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=_default_sigint)

    def ready() -> bool:
        partial = _partial(tmp_path)
        return partial is not None and _busy(partial)

    err = _signal_when(proc, ready, signum, settle=0.2)  # well inside the writing loop
    lines = err.strip().splitlines()
    assert proc.returncode == code, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "unfinished output was removed" in lines[0] and "Traceback" not in err
    assert _partial(tmp_path) is None
    assert _snapshot(tmp_path) == before  # the old output (if any) intact, nothing new


@pytest.mark.parametrize(("signum", "code"), SIGNALS[1:], ids=[s.name for s, _ in SIGNALS[1:]])
def test_train_stops_cleanly_on_a_signal(tmp_path: Path, signum: int, code: int) -> None:
    """``train`` finishes its step, writes last.pt and the weights, and exits 128 + signal."""
    import imageio.v3 as iio

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        iio.imwrite(tmp_path / "imgs" / f"{i}.png",
                    (np.random.default_rng(i).random((48, 48)) * 255).astype(np.uint8))
    run = tmp_path / "run"
    env = {**os.environ, "SPKRECON_PROGRESS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "spkrecon", "train", "--images", str(tmp_path / "imgs"),
         "--model", "lite", "--features", "4", "--blocks", "1", "--patch", "16",
         "--batch-size", "1", "--steps", "100000", "--val-dir", "none", "--threads", "1",
         "--log-every", "1", "-o", str(run), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log = run / "log.jsonl"
    err = _signal_when(proc, lambda: log.is_file() and '"step"' in log.read_text(), signum)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert (run / "last.pt").is_file() and (run / "weights.pt").is_file()
    assert not [p.name for p in run.iterdir() if ".partial" in p.name]
