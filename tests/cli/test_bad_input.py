"""A corpus of bad inputs across every subcommand (issue 16).

Each case runs the real console entry point (``spkrecon.cli.main``, so usage errors are
rendered as users see them) in a folder of small fixture files, and asserts:

- the exit code (the table in docs/errors.md);
- exactly one line on stderr, starting with ``error:``, holding the expected words;
- no traceback, and nothing of a library's advice that does not apply (``allow_pickle``,
  ``pip install``, ffmpeg's banner);
- that nothing in the folder was created, changed or removed (file hashes before and after).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from spkrecon.io import write_dat

H, W, T = 24, 40, 60
R = ("--height", str(H), "--width", str(W))  # the shape of rec.dat
TFP = ("-m", "tfp")


class _Evil:
    """Pickles as a call of os.system: a checkpoint holding code (never loaded)."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _make_fixtures(root: Path) -> None:
    import imageio.v3 as iio

    rng = np.random.default_rng(16)
    spikes = (rng.random((T, H, W)) < 0.3).astype(np.uint8)
    write_dat(root / "rec.dat", spikes)
    size = H * W // 8 * T
    words = b"spike camera notes: not a recording, only text.\n"
    (root / "text.dat").write_bytes((words * (size // len(words) + 1))[:size])
    (root / "empty.dat").write_bytes(b"")
    (root / "trunc.dat").write_bytes((root / "rec.dat").read_bytes() + bytes(7))
    img = (rng.random((H, W)) * 255).astype(np.uint8)
    iio.imwrite(root / "img.png", img)
    (root / "png.dat").write_bytes((root / "img.png").read_bytes())
    (root / "fake.png").write_text("this is not a picture, only some text\n")
    (root / "junk.mp4").write_text("junk junk junk, not a video at all\n")
    (root / "rnd.mp4").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    np.save(root / "nan.npy", np.full((8, H, W), np.nan, np.float32))
    np.save(root / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    (root / "garbage.npy").write_bytes(bytes(range(256)) * 4)
    np.save(root / "grey.npy", np.full((8, H, W), 3, np.uint8))
    np.save(root / "flat.npy", np.zeros((H, W), np.uint8))
    np.save(root / "ok.npy", spikes[:20])
    np.savez(root / "multi.npz", a=spikes[:4], b=spikes[:4])
    import zipfile

    with zipfile.ZipFile(root / "text.npz", "w") as z:
        z.writestr("spikes.npy", "a text file, zipped")
    (root / "existing.mp4").write_bytes(b"an old video")
    (root / "existing.dat").write_bytes(b"an old recording")
    (root / "blocker").write_text("a file where a folder would go")
    (root / "wdir").mkdir()
    (root / "stack.npy").mkdir()
    (root / "frames_out").mkdir()
    (root / "frames_out" / "frame_000001.png").write_bytes((root / "img.png").read_bytes())
    (root / "frames_out" / "notes.txt").write_text("the user's own notes")
    (root / "bad.json").write_text("{not json")
    with open(root / "evil.pt", "wb") as fh:
        pickle.dump({"state_dict": _Evil()}, fh, protocol=2)
    with open(root / "raw.pkl", "wb") as fh:
        pickle.dump({"a": 1, "b": [1, 2, 3]}, fh)
    (root / "text.pt").write_text("these are not network weights\n")


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def run_cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run ``spkrecon ARGS`` through the console entry point in ``cwd``:
    ``(exit code, stdout, stderr)``."""
    from spkrecon.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    old_handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    sys.argv = ["spkrecon", *args]
    os.chdir(cwd)
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        for s, h in old_handlers.items():
            signal.signal(s, h)
    return (code if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


# (id, arguments, exit code, words the one error line must hold)
CASES: list[tuple[str, tuple[str, ...], int, str]] = [
    # -- info ---------------------------------------------------------------------------
    ("info-missing", ("info", "missing.dat"), 2, "does not exist"),
    ("info-folder", ("info", "wdir"), 2, "directory"),
    ("info-empty", ("info", "empty.dat"), 2, "is empty"),
    ("info-text-right-size", ("info", "text.dat", *R), 2, "text.dat is a text file"),
    ("info-png-as-dat", ("info", "png.dat", *R), 2, "png.dat is a PNG image"),
    ("info-png", ("info", "img.png"), 2, "img.png is a PNG image"),
    ("info-video", ("info", "junk.mp4"), 2, "junk.mp4 is a text file"),
    ("info-truncated", ("info", "trunc.dat", *R), 2, "truncated"),
    ("info-rate-0", ("info", "rec.dat", *R, "--rate", "0"), 2,
     "readout rate must be a positive number"),
    ("info-rate-negative", ("info", "rec.dat", *R, "--rate", "-1"), 2, "got -1"),
    ("info-rate-nan", ("info", "rec.dat", *R, "--rate", "nan"), 2, "readout rate"),
    ("info-rate-text", ("info", "rec.dat", *R, "--rate", "fast"), 2, "--rate"),
    ("info-nan-array", ("info", "nan.npy"), 2, "holds NaN values"),
    ("info-object-array", ("info", "obj.npy"), 2, "Python objects"),
    ("info-garbage-npy", ("info", "garbage.npy"), 2, "is not a numpy .npy file"),
    ("info-non-binary", ("info", "grey.npy"), 2, "values from 3 to 3"),
    ("info-2d-array", ("info", "flat.npy"), 2, "3-D"),
    ("info-npz-no-spikes", ("info", "multi.npz"), 2, "save the spikes under the name"),
    ("info-npz-not-an-array", ("info", "text.npz"), 2, "holds 'spikes', which is not a numpy"),
    ("info-bad-layout", ("info", "ok.npy", "--layout", "xyz"), 2, "layout must be"),
    ("info-odd-resolution", ("info", "rec.dat", "--height", "7", "--width", "7"), 2,
     "multiple of 8"),
    ("info-no-argument", ("info",), 2, "Missing argument"),
    # -- video --------------------------------------------------------------------------
    ("video-param-text-for-int", ("video", "rec.dat", *R, *TFP, "-p", "window=abc"), 2,
     "window=abc of method 'tfp' is not valid: window takes an integer"),
    ("video-param-float-for-int", ("video", "rec.dat", *R, *TFP, "-p", "window=3.7"), 2,
     "window takes an integer"),
    ("video-param-bool-for-int", ("video", "rec.dat", *R, *TFP, "-p", "window=true"), 2,
     "window takes an integer"),
    ("video-param-qualified-text", ("video", "rec.dat", *R, "-m", "tfstp", "-p",
                                    "tfstp.u0=abc"), 2, "u0 takes a number"),
    ("video-param-other-method", ("video", "rec.dat", *R, *TFP, "-p", "tfi.window=5"), 2,
     "names method 'tfi', which is not being run"),
    ("video-param-unknown", ("video", "rec.dat", *R, *TFP, "-p", "bogus=1"), 2,
     "no parameter 'bogus'"),
    ("video-param-syntax", ("video", "rec.dat", *R, *TFP, "-p", "window"), 2, "KEY=VALUE"),
    ("video-param-alpha-range", ("video", "rec.dat", *R, *TFP, "-p", "alpha=0"), 2,
     "alpha (conversion rate) must be in (0, 1]"),
    ("video-wrong-extension", ("video", "rec.dat", *R, *TFP, "-o", "v.avi"), 3,
     "must end in .mp4"),
    ("video-exists", ("video", "rec.dat", *R, *TFP, "-o", "existing.mp4"), 3, "--force"),
    ("video-under-a-file", ("video", "rec.dat", *R, *TFP, "-o", "blocker/v.mp4"), 3,
     "a file is in the way"),
    ("video-folder-output", ("video", "rec.dat", *R, *TFP, "-o", "wdir"), 3,
     "must end in .mp4"),
    ("video-unknown-method", ("video", "rec.dat", *R, "-m", "tfpp"), 2, "did you mean 'tfp'"),
    ("video-window-too-long", ("video", "rec.dat", *R, *TFP, "-w", "200", "-o", "v.mp4"), 2,
     "window"),
    ("video-start-outside", ("video", "rec.dat", *R, *TFP, "--start", "100", "-o", "v.mp4"), 2,
     "start frame 100"),
    ("video-fps-0", ("video", "rec.dat", *R, *TFP, "--fps", "0", "-o", "v.mp4"), 2, "fps"),
    ("video-crf", ("video", "rec.dat", *R, *TFP, "--crf", "99", "-o", "v.mp4"), 2, "crf"),
    ("video-preset", ("video", "rec.dat", *R, *TFP, "--preset", "bogus", "-o", "v.mp4"), 2,
     "preset"),
    ("video-tonemap", ("video", "rec.dat", *R, *TFP, "--tonemap", "bogus", "-o", "v.mp4"), 2,
     "bogus"),
    ("video-stride-0", ("video", "rec.dat", *R, *TFP, "--stride", "0"), 2, "--stride"),
    ("video-unknown-option", ("video", "rec.dat", "--bogus"), 2, "No such option: --bogus"),
    ("video-png-input", ("video", "png.dat", *R, *TFP, "-o", "v.mp4"), 2, "is a PNG image"),
    ("video-weights-with-code", ("video", "rec.dat", *R, "-m", "spk2imgnet", "--weights",
                                 "evil.pt", "-o", "v.mp4"), 4, "refused for safety"),
    ("video-weights-folder", ("video", "rec.dat", *R, "-m", "spk2imgnet", "--weights", "wdir",
                              "-o", "v.mp4"), 4, "wdir is a folder, not a weights file"),
    ("video-weights-text", ("video", "rec.dat", *R, "-m", "spk2imgnet", "--weights",
                            "text.pt", "-o", "v.mp4"), 4, "text.pt is a text file"),
    # -- frames -------------------------------------------------------------------------
    ("frames-single-png", ("frames", "rec.dat", *R, *TFP, "-o", "single.png"), 3,
     "give a folder (single/) or a .npy file (single.npy)"),
    ("frames-mp4-name", ("frames", "rec.dat", *R, *TFP, "-o", "out.mp4"), 3,
     "'spkrecon video' writes a video"),
    ("frames-current-folder", ("frames", "rec.dat", *R, *TFP, "-o", ".", "--force"), 3,
     "is the current folder"),
    ("frames-parent-of-cwd", ("frames", "rec.dat", *R, *TFP, "-o", "..", "--force"), 3,
     "is the current folder (or holds it)"),
    ("frames-force-foreign", ("frames", "rec.dat", *R, *TFP, "-o", "frames_out", "--force"), 3,
     "holds files spkrecon did not write (notes.txt)"),
    ("frames-exists", ("frames", "rec.dat", *R, *TFP, "-o", "frames_out"), 3, "--force"),
    ("frames-npy-is-folder", ("frames", "rec.dat", *R, *TFP, "-o", "stack.npy"), 3,
     "is a folder"),
    ("frames-bit-depth", ("frames", "rec.dat", *R, *TFP, "-o", "f", "--bit-depth", "12"), 2,
     "bit depth must be 8 or 16"),
    ("frames-param-text", ("frames", "rec.dat", *R, *TFP, "-o", "f", "-p", "tfp.window=x"), 2,
     "window takes an integer"),
    ("frames-no-output", ("frames", "rec.dat"), 2, "Missing option"),
    # -- methods ------------------------------------------------------------------------
    ("methods-unknown-option", ("methods", "--bogus"), 2, "No such option"),
    ("methods-extra-argument", ("methods", "tfp"), 2, "unexpected extra argument"),
    ("unknown-command", ("bogus",), 2, "No such command"),
    # -- score --------------------------------------------------------------------------
    ("score-missing", ("score", "missing.png"), 2, "does not exist"),
    ("score-gt-not-an-image", ("score", "img.png", "--gt", "fake.png", "--metrics", "psnr"), 2,
     "fake.png is a text file, not a readable image"),
    ("score-empty-metrics", ("score", "img.png", "--metrics", ","), 2, "--metrics is empty"),
    ("score-unknown-metric", ("score", "img.png", "--metrics", "bogusmetric"), 2,
     "bogusmetric"),
    ("score-param-needs-method", ("score", "img.png", "-p", "window=3"), 2, "need --method"),
    ("score-param-type", ("score", "rec.dat", *R, *TFP, "-p", "tfp.window=abc", "--gt",
                          "img.png", "--metrics", "psnr"), 2, "window takes an integer"),
    ("score-csv-folder", ("score", "img.png", "--metrics", "psnr", "--gt", "img.png", "--csv",
                          "wdir"), 3, "is a folder"),
    ("score-auto-other-method", ("score", "rec.dat", *R, "-m", "auto", "-p", "tfi.window=5",
                                 "--metrics", "psnr", "--gt", "img.png"), 2, "not being run"),
    # -- compare ------------------------------------------------------------------------
    ("compare-auto", ("compare", "rec.dat", *R, "--methods", "auto"), 2,
     "compare runs named methods, not 'auto'"),
    ("compare-unknown-method", ("compare", "rec.dat", *R, "--methods", "tfpp"), 2,
     "did you mean 'tfp'"),
    ("compare-all-and-names", ("compare", "rec.dat", *R, "--methods", "all,tfp"), 2,
     "cannot be combined"),
    ("compare-same-output-twice", ("compare", "rec.dat", *R, "--methods", "tfp", "--grid",
                                   "g.png", "--csv", "g.png"), 3, "given for two outputs"),
    ("compare-csv-folder", ("compare", "rec.dat", *R, "--methods", "tfp", "--grid", "g.png",
                            "--csv", "wdir"), 3, "is a folder"),
    ("compare-crop-without-grid", ("compare", "rec.dat", *R, "--methods", "tfp", "--crop",
                                   "1,2,3,4"), 2, "--crop needs --grid"),
    ("compare-param-type", ("compare", "rec.dat", *R, "--methods", "tfp,tfi", "-p",
                            "tfp.window=abc"), 2, "window takes an integer"),
    ("compare-missing", ("compare", "missing.dat", "--methods", "tfp"), 2, "missing.dat"),
    # -- simulate -----------------------------------------------------------------------
    ("simulate-text-as-video", ("simulate", "junk.mp4", "-o", "j.dat"), 2,
     "junk.mp4 is a text file, not a readable video"),
    ("simulate-broken-video", ("simulate", "rnd.mp4", "-o", "j.dat", "--height", "16",
                               "--width", "16"), 2, "rnd.mp4 is not a readable video"),
    ("simulate-text-as-png", ("simulate", "fake.png", "-o", "j.dat"), 2,
     "fake.png is a text file, not a readable image"),
    ("simulate-wrong-extension", ("simulate", "img.png", "-o", "j.mp4"), 3,
     "j.mp4 must end in .dat"),
    ("simulate-current-folder", ("simulate", "img.png", "-o", "."), 3,
     ". is a folder, not a recording's name"),
    ("simulate-exists", ("simulate", "img.png", "-o", "existing.dat"), 3, "--force"),
    ("simulate-noise", ("simulate", "img.png", "-o", "j.dat", "--noise", "loud"), 2, "loud"),
    ("simulate-missing", ("simulate", "missing.png", "-o", "j.dat"), 2, "does not exist"),
    ("simulate-sprites-without-objects", ("simulate", "img.png", "-o", "j.dat", "--sprites",
                                          "img.png", "--objects", "0"), 2, "--objects N"),
    ("simulate-sprites-missing", ("simulate", "img.png", "-o", "j.dat", "--sprites",
                                  "nowhere", "--objects", "1"), 2, "no such file or folder"),
    ("simulate-bad-config", ("simulate", "--config", "bad.json"), 2,
     "not a readable JSON sidecar"),
    ("simulate-no-input", ("simulate",), 2, "no input given"),
    ("simulate-text-input", ("simulate", "text.dat", "-o", "j.dat"), 2,
     "neither an image"),
    # -- dataset ------------------------------------------------------------------------
    ("dataset-kind", ("dataset", "make", "ds", "--kind", "bogus"), 2, "bogus"),
    ("dataset-force-foreign", ("dataset", "make", "frames_out", "--force", "--images",
                               "wdir"), 3, "holds files spkrecon did not write"),
    ("dataset-missing-images", ("dataset", "make", "ds", "--images", "missing"), 2,
     "missing"),
    ("dataset-objects", ("dataset", "make", "ds", "--objects", "-1"), 2, "--objects"),
    # -- train --------------------------------------------------------------------------
    ("train-batch-size", ("train", "--images", "wdir", "--batch-size", "0", "-o", "run"), 2,
     "batch"),
    ("train-model", ("train", "--images", "wdir", "--model", "bogus", "-o", "run"), 2,
     "bogus"),
    ("train-no-data", ("train", "-o", "run"), 2, "--images"),
    # -- weights ------------------------------------------------------------------------
    ("weights-info-folder", ("weights", "info", "wdir"), 4,
     "wdir is a folder, not a weights file"),
    ("weights-info-code", ("weights", "info", "evil.pt"), 4,
     "refused for safety: loading it would import Python objects (posix.system)"),
    ("weights-info-raw-pickle", ("weights", "info", "raw.pkl"), 4,
     "not a PyTorch checkpoint"),
    ("weights-info-text", ("weights", "info", "text.pt"), 4,
     "text.pt is a text file, not a PyTorch checkpoint"),
    ("weights-info-unknown-name", ("weights", "info", "nothing-here"), 4,
     "no 'nothing-here' weights found"),
    ("weights-import-text", ("weights", "import", "text.pt", "-o", "x.pt"), 4,
     "not a PyTorch checkpoint"),
    ("weights-import-code", ("weights", "import", "evil.pt", "-o", "x.pt"), 4,
     "refused for safety"),
    ("weights-import-alpha", ("weights", "import", "text.pt", "--alpha", "2", "-o", "x.pt"), 2,
     "alpha must be in (0, 1]"),
    ("weights-no-command", ("weights", "bogus"), 2, "No such command"),
    # -- batch --------------------------------------------------------------------------
    ("batch-missing", ("batch", "video", "missing.dat", "-o", "bout"), 2, "does not exist"),
    ("batch-param-type", ("batch", "video", "rec.dat", *R, *TFP, "-p", "window=abc", "-o",
                          "bout"), 2, "window takes an integer"),
    ("batch-unknown-method", ("batch", "frames", "rec.dat", *R, "-m", "tfpp", "-o", "bout"),
     2, "did you mean 'tfp'"),
    ("batch-output-is-a-file", ("batch", "frames", "rec.dat", *R, *TFP, "-o", "existing.dat"),
     3, "must be a folder"),
]

#: Commands that take -q (the corpus asks for quiet runs where there is a choice).
_QUIET = {"info", "video", "frames", "score", "compare", "simulate", "train", "batch"}
_FORBIDDEN = ("Traceback", "allow_pickle", "pip install", "ffmpeg version", "FFMPEG COMMAND",
              "UserWarning", ".partial-", "with --key", "nan to nan", "internal error")


def test_the_corpus_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)
    commands = {c[1][0] for c in CASES}
    assert {"info", "video", "frames", "methods", "score", "compare", "simulate", "dataset",
            "train", "weights"} <= commands


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad_input_fixtures") / "w"
    root.mkdir()
    _make_fixtures(root)
    return root


@pytest.mark.parametrize(("args", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input(args: tuple[str, ...], code: int, words: str, template: Path,
                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setenv("SPKRECON_PROGRESS", "0")
    monkeypatch.delenv("SPKRECON_DEBUG", raising=False)
    root = tmp_path / "w"
    shutil.copytree(template, root)
    before = _tree(tmp_path)
    argv = list(args)
    if argv[0] in _QUIET and "--help" not in argv:
        argv.append("-q")
    got, out, err = run_cli(argv, root)
    lines = err.strip().splitlines()
    assert got == code, f"exit {got} (expected {code}): {err}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    assert words in lines[0], lines[0]
    for bad in _FORBIDDEN:
        assert bad not in err + out, f"{bad!r} in the output: {err}"
    assert _tree(tmp_path) == before, "files were created, changed or removed"


# -- the fixed cases, seen from the side of what must work --------------------------------
@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding rec.dat (H x W, T frames); no progress bars."""
    monkeypatch.setenv("SPKRECON_PROGRESS", "0")
    write_dat(tmp_path / "rec.dat", (np.random.default_rng(0).random((T, H, W)) < 0.3)
              .astype(np.uint8))
    return tmp_path


def test_force_replaces_only_spkrecons_own_frame_folder(root: Path) -> None:
    import json

    args = ["frames", "rec.dat", *R, *TFP, "-w", "9", "--start", "10", "--end", "14",
            "-o", "out", "-q"]
    assert run_cli(args, root)[0] == 0
    assert run_cli([*args, "--force", "-p", "alpha=0.5", "-p", "tfp.window=5"], root)[0] == 0
    meta = json.loads((root / "out" / "frames.json").read_text())
    assert meta["params"] == {"window": 5, "alpha": 0.5}  # -p wins over -w and --alpha
    assert sorted(p.name for p in (root / "out").iterdir()) == [
        "frame_000010.png", "frame_000011.png", "frame_000012.png", "frame_000013.png",
        "frames.json"]


def test_video_takes_alpha_and_qualified_params(root: Path) -> None:
    code, _, err = run_cli(["video", "rec.dat", *R, *TFP, "-p", "alpha=0.5", "-p",
                            "tfp.window=7", "-o", "v.mp4"], root)
    assert code == 0, err
    assert (root / "v.mp4").stat().st_size > 100


def test_info_lists_every_size_that_fits(tmp_path: Path, monkeypatch) -> None:
    import json

    monkeypatch.setenv("SPKRECON_PROGRESS", "0")
    (tmp_path / "cap.dat").write_bytes(bytes(250 * 400 // 8 * 26))  # also 25 x 250x416
    code, out, err = run_cli(["info", "cap.dat", "--json"], tmp_path)
    assert code == 0, err
    fits = json.loads(out)["fitting_resolutions"]
    assert fits[0] == [250, 400, 26] and [250, 416, 25] in fits
    code, out, _ = run_cli(["info", "cap.dat"], tmp_path)
    assert "250x416 (25 frames)" in out and "--crop-header" in out
    code, _, err = run_cli(["video", "cap.dat", *TFP, "-w", "3", "-o", "c.mp4"], tmp_path)
    assert code == 0 and "note: read as 250x400" in err and "--crop-header" in err


def test_write_errors_name_the_output_and_say_what_to_do(tmp_path: Path, monkeypatch) -> None:
    import errno

    from spkrecon.export import PngFolderWriter

    def disk_full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(fp))

    monkeypatch.setattr("PIL.Image.Image.save", disk_full)
    out = tmp_path / "frames"
    with pytest.raises(Exception) as err, PngFolderWriter(out) as w:
        w.write(3, np.zeros((4, 8), np.float32))
    msg = str(err.value)
    assert f"cannot write {out}/frame_000003.png: No space left on device" in msg
    assert "free some space" in msg and ".partial" not in msg
    assert list(tmp_path.iterdir()) == []


def test_compare_writes_all_outputs_or_none(root: Path, monkeypatch) -> None:
    import errno

    tmp_path = root
    real = Path.write_text

    def full_for_csv(self, *args, **kwargs):
        if self.suffix == ".csv":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_for_csv)
    before = _tree(tmp_path)
    code, _, err = run_cli(["compare", "rec.dat", *R, "--methods", "tfp", "-k", "30",
                            "--metrics", "psnr", "--grid", "g.png", "--csv", "c.csv", "-q"],
                           tmp_path)
    assert code == 3, err
    assert err.strip().splitlines() == [
        "error: cannot write c.csv: No space left on device; free some space on the disk of "
        ". or write elsewhere"]
    assert _tree(tmp_path) == before  # the grid was not left behind


def test_ffmpeg_failure_is_one_line(tmp_path: Path, monkeypatch) -> None:
    from spkrecon.errors import OutputError
    from spkrecon.export import VideoWriter

    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\ncat > /dev/null\necho 'ffmpeg version 9 Copyright' >&2\n"
                    "echo 'out.mp4: Invalid argument' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr("imageio_ffmpeg.get_ffmpeg_exe", lambda: str(fake))
    out = tmp_path / "out.mp4"
    with pytest.raises(OutputError) as err, VideoWriter(out) as vw:
        vw.write(np.zeros((8, 8), np.float32))
    assert str(err.value) == (f"ffmpeg could not finish {out}: out.mp4: Invalid argument; "
                              "check the output folder and its free space")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ffmpeg"]


def test_an_os_error_on_a_partial_file_is_named_by_its_output(tmp_path: Path,
                                                              monkeypatch) -> None:
    """A write error met anywhere (here the simulator's .dat stream) names the output, not
    the hidden temporary file, says what to do, and exits 3."""
    import errno

    import spkrecon.simulate.runner as runner

    def disk_full(scene, steps, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runner, "stream_to_dat", disk_full)
    monkeypatch.setenv("SPKRECON_PROGRESS", "0")
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "img.png", np.zeros((16, 16), np.uint8))
    before = _tree(tmp_path)
    code, _, err = run_cli(["simulate", "img.png", "-o", "s.dat", "--height", "16", "--width",
                            "16", "--steps", "5", "-q"], tmp_path)
    assert code == 3, err
    assert err.strip() == ("error: cannot write s.dat: No space left on device; free some "
                           "space on the disk of . or write elsewhere")
    assert _tree(tmp_path) == before
