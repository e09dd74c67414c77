"""Real ffmpeg and real files: what is written can be read back."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

from spkrecon.errors import OutputError
from spkrecon.export import NpyStackWriter, PngFolderWriter, VideoWriter, atomic_file


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    return [((np.sin((xx + 4 * i) / 6.0) * np.cos(yy / 5.0) + 1) / 2).astype(np.float32)
            for i in range(n)]


def _read_video(path: Path) -> tuple[dict, list[np.ndarray]]:
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="gray", bpp=1)
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w) for f in reader]
    return meta, frames


def test_video_has_exact_size_and_content(tmp_path: Path) -> None:
    frames = _frames(12, 250, 400)
    out = tmp_path / "v.mp4"
    with VideoWriter(out, fps=25) as vw:
        for f in frames:
            vw.write(f)
    meta, back = _read_video(out)
    assert tuple(meta["size"]) == (400, 250)  # not padded to 256
    assert len(back) == 12
    err = np.abs(back[5].astype(np.float32) / 255 - frames[5]).mean()
    assert err < 0.03
    probe = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert probe[0] == 12
    assert not list(tmp_path.glob(".*partial*"))


def test_video_odd_size_is_padded_by_one(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "odd.mp4") as vw:
        for f in _frames(3, 25, 41):
            vw.write(f)
    meta, _ = _read_video(tmp_path / "odd.mp4")
    assert tuple(meta["size"]) == (42, 26)


def test_video_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out) as vw:
            for i, f in enumerate(_frames(5, 16, 16)):
                if i == 3:
                    raise KeyboardInterrupt
                vw.write(f)
    assert list(tmp_path.iterdir()) == []


def test_existing_outputs_need_force(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="--force"):
        VideoWriter(out)
    assert out.read_bytes() == b"precious"
    with VideoWriter(out, force=True) as vw:
        vw.write(_frames(1, 16, 16)[0])
    assert out.stat().st_size > 100
    with pytest.raises(OutputError, match="must end in .mp4"):  # an output problem: exit 3
        VideoWriter(tmp_path / "v.avi")


def test_unwritable_folder_is_refused(tmp_path: Path) -> None:
    """A folder this process may not write into: a read-only folder for an ordinary user;
    as root (who may write anywhere) a folder the kernel keeps read-only even for root,
    ``/proc/sys``, so that the check runs here too."""
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        folder = next((d for d in (ro, Path("/proc/sys"))
                       if d.is_dir() and not os.access(d, os.W_OK)), None)
        if folder is None:
            pytest.skip("no folder here is closed to this user")
        with pytest.raises(OutputError, match=f"folder {folder} is not writable"):
            VideoWriter(folder / "v.mp4")
        assert not (folder / "v.mp4").exists()
    finally:
        ro.chmod(0o700)


def test_a_file_where_a_folder_is_needed_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="a file is in the way"):
        VideoWriter(tmp_path / "file" / "sub" / "v.mp4")
    assert (tmp_path / "file").read_text() == "x"


def test_png_folder_8_and_16_bit(tmp_path: Path) -> None:
    frames = _frames(3, 20, 30)
    for depth, dtype in ((8, np.uint8), (16, np.uint16)):
        out = tmp_path / f"png{depth}"
        with PngFolderWriter(out, bit_depth=depth, metadata={"m": 1}) as w:
            for i, f in enumerate(frames):
                w.write(10 + i, f)
        files = sorted(out.glob("*.png"))
        assert [p.name for p in files] == ["frame_000010.png", "frame_000011.png",
                                           "frame_000012.png"]
        img = iio.imread(files[1])
        assert img.dtype == dtype and img.shape == (20, 30)
        scale = 255 if depth == 8 else 65535
        assert np.abs(img / scale - frames[1]).max() <= 0.5 / scale + 1e-6
        assert (out / "frames.json").exists()
    with pytest.raises(OutputError):
        PngFolderWriter(tmp_path / "png8")


def test_png_folder_interrupted_is_removed_and_old_kept(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    out.mkdir()
    (out / "frame_000005.png").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with PngFolderWriter(out, force=True) as w:
            w.write(0, _frames(1, 8, 8)[0])
            raise RuntimeError("boom")
    assert (out / "frame_000005.png").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_png_folder_force_replaces_only_spkrecons_own_files(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    (out / "sub").mkdir(parents=True)
    (out / "frame_000005.png").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="did not write .notes.txt, sub/"):
        PngFolderWriter(out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["frame_000005.png", "notes.txt", "sub"]
    (out / "notes.txt").unlink()
    (out / "sub").rmdir()
    with PngFolderWriter(out, force=True) as w:
        w.write(1, _frames(1, 8, 8)[0])
    assert sorted(p.name for p in out.iterdir()) == ["frame_000001.png"]


def test_npy_stack(tmp_path: Path) -> None:
    frames = _frames(4, 10, 12)
    with NpyStackWriter(tmp_path / "s.npy", 4, 10, 12) as w:
        for i, f in enumerate(frames):
            w.write(i, f)
    back = np.load(tmp_path / "s.npy")
    assert back.dtype == np.float32 and np.array_equal(back, np.stack(frames))


def test_atomic_file_refuses_a_folder(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        with atomic_file(tmp_path / "d", force=True):
            pass


def test_output_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="cannot create folder"):
        VideoWriter(tmp_path / "afile" / "v.mp4")
