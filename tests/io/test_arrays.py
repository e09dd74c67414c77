from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spkrecon.errors import InputError, RecordingFormatError
from spkrecon.io import open_recording, sample_path


@pytest.fixture
def spikes() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((30, 12, 20)) < 0.4).astype(np.uint8)


def test_npy_thw_and_hwt_layouts(tmp_path: Path, spikes: np.ndarray) -> None:
    np.save(tmp_path / "thw.npy", spikes)
    np.save(tmp_path / "hwt.npy", np.moveaxis(spikes, 0, 2).astype(bool))
    a = open_recording(tmp_path / "thw.npy", layout="thw")
    b = open_recording(tmp_path / "hwt.npy", layout="hwt")
    assert a.shape == b.shape == (30, 12, 20)
    assert np.array_equal(a.read(0, 30), spikes)
    assert np.array_equal(b.read(5, 25), spikes[5:25])


def test_layout_guess_uses_resolution(tmp_path: Path) -> None:
    arr = np.zeros((250, 400, 41), np.uint8)
    np.save(tmp_path / "a.npy", arr)
    assert open_recording(tmp_path / "a.npy").shape == (41, 250, 400)
    arr = np.zeros((41, 250, 400), np.uint8)
    np.save(tmp_path / "b.npy", arr)
    assert open_recording(tmp_path / "b.npy").shape == (41, 250, 400)


def test_npz_and_flip(tmp_path: Path, spikes: np.ndarray) -> None:
    np.savez_compressed(tmp_path / "s.npz", spikes=spikes)
    rec = open_recording(tmp_path / "s.npz", layout="thw", flip=True)
    assert np.array_equal(rec.read(0, 30), spikes[:, ::-1])


def test_non_binary_array_is_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "g.npy", np.full((4, 8, 8), 7, np.uint8))
    with pytest.raises(RecordingFormatError, match="not a binary"):
        open_recording(tmp_path / "g.npy")
    np.save(tmp_path / "f.npy", np.full((4, 8, 8), 0.5, np.float32))
    with pytest.raises(RecordingFormatError, match="not a binary"):
        open_recording(tmp_path / "f.npy")
    np.save(tmp_path / "two.npy", np.zeros((8, 8), np.uint8))
    with pytest.raises(RecordingFormatError, match="3-D"):
        open_recording(tmp_path / "two.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(RecordingFormatError, match="junk.npy is a text file, not a spike array"):
        open_recording(tmp_path / "junk.npy")
    (tmp_path / "bin.npy").write_bytes(bytes(range(256)))
    with pytest.raises(RecordingFormatError, match="is not a numpy .npy file") as err:
        open_recording(tmp_path / "bin.npy")
    assert "allow_pickle" not in str(err.value)
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(RecordingFormatError, match="Python objects") as err:
        open_recording(tmp_path / "obj.npy")
    assert "allow_pickle" not in str(err.value)
    np.save(tmp_path / "nan.npy", np.full((4, 8, 8), np.nan, np.float32))
    with pytest.raises(RecordingFormatError, match="NaN"):
        open_recording(tmp_path / "nan.npy")


def test_missing_and_directory_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_recording(tmp_path / "nope.dat")
    with pytest.raises(InputError, match="directory"):
        open_recording(tmp_path)


def test_bundled_sample_opens() -> None:
    assert sample_path().stat().st_size <= 4 * 1024 * 1024
    rec = open_recording("sample")
    assert (rec.height, rec.width) == (250, 400)
    assert rec.num_frames >= 100
    rate = rec.read(0, 64).mean()
    assert 0.02 < rate < 0.6
