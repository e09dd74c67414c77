from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spkrecon.errors import ParameterError, RecordingFormatError
from spkrecon.io import (
    DatRecording,
    decode,
    encode,
    fitting_resolutions,
    open_recording,
    write_dat,
)

shapes = st.tuples(st.integers(1, 6), st.integers(1, 12), st.integers(1, 5)).map(
    lambda s: (s[0], s[1], s[2] * 8 if s[1] % 2 else s[2] * 4))


@settings(max_examples=60, deadline=None)
@given(shapes.flatmap(lambda s: arrays(np.uint8, s, elements=st.integers(0, 1))))
def test_encode_decode_roundtrip(spikes: np.ndarray) -> None:
    t, h, w = spikes.shape
    out = decode(encode(spikes), h, w)
    assert out.shape == spikes.shape
    assert np.array_equal(out, spikes)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=5, max_size=5 * 7).filter(lambda b: len(b) % 5 == 0))
def test_decode_encode_roundtrip_bytes(raw: bytes) -> None:
    # 5 bytes = a 5x8 frame: any byte string is a valid recording and survives a round trip.
    assert encode(decode(raw, 5, 8)) == raw


def test_bit_order_is_lsb_first_and_rows_flipped() -> None:
    h, w = 4, 8
    raw = bytearray(h * w // 8)
    raw[0] = 0b0000_0001  # pixel p=0: stored row 0, column 0
    raw[1] = 0b1000_0000  # pixel p=15: stored row 1, column 7
    frame = decode(bytes(raw), h, w)[0]
    assert frame[h - 1, 0] == 1  # stored row 0 is the bottom row
    assert frame[h - 2, 7] == 1
    assert frame.sum() == 2


def test_decode_matches_reference_unpackbits_for_odd_width() -> None:
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=3 * 5 * 24 // 8, dtype=np.uint8)
    h, w = 5, 24
    ref = np.unpackbits(raw, bitorder="little").reshape(3, h, w)[:, ::-1]
    assert np.array_equal(decode(raw, h, w), ref)
    h, w = 8, 5  # width not a multiple of 8 takes the general path
    ref = np.unpackbits(raw[: 3 * 5], bitorder="little").reshape(3, h, w)[:, ::-1]
    assert np.array_equal(decode(raw[:15], h, w), ref)


def test_dat_recording_streams_chunks_windows_and_ranges(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    spikes = (rng.random((50, 16, 24)) < 0.3).astype(np.uint8)
    path = tmp_path / "x.dat"
    write_dat(path, spikes)
    with open_recording(path, 16, 24) as rec:
        assert rec.shape == (50, 16, 24)
        assert np.array_equal(rec.read(7, 19), spikes[7:19])
        assert np.array_equal(np.stack(list(rec.iter_frames(chunk=7))), spikes)
        starts = []
        for t0, win in rec.iter_windows(9, stride=4, start=3, stop=45, chunk=5):
            assert np.array_equal(win, spikes[t0:t0 + 9])
            starts.append(t0)
        assert starts == list(range(3, 45 - 9 + 1, 4))
        assert rec.frame_range(-10, None) == range(40, 50)
        with pytest.raises(ParameterError):
            rec.frame_range(60, None)
        with pytest.raises(ParameterError):
            rec.frame_range(10, 5)
        with pytest.raises(ParameterError):
            next(rec.iter_windows(60))


def test_crop_header_drops_the_right_16_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    spikes = (rng.random((4, 10, 416)) < 0.5).astype(np.uint8)
    path = tmp_path / "wide.dat"
    write_dat(path, spikes)
    rec = open_recording(path, height=10, crop_header=True)
    assert (rec.height, rec.width) == (10, 400)
    assert np.array_equal(rec.read(0, 4), spikes[:, :, :400])


def test_size_not_multiple_of_frame_names_fitting_resolutions(tmp_path: Path) -> None:
    path = tmp_path / "wide.dat"
    path.write_bytes(bytes(250 * 416 // 8 * 3))
    with pytest.raises(RecordingFormatError) as err:
        DatRecording(path)
    assert "250x416" in str(err.value)
    assert (250, 416) in fitting_resolutions(250 * 416 // 8 * 3)
    truncated = tmp_path / "trunc.dat"
    truncated.write_bytes(bytes(12500 * 2 + 7))
    with pytest.raises(RecordingFormatError, match="truncated"):
        DatRecording(truncated)


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "e.dat").write_bytes(b"")
    with pytest.raises(RecordingFormatError, match="empty"):
        open_recording(tmp_path / "e.dat")


def test_reading_releases_mapped_pages(tmp_path: Path) -> None:
    if not hasattr(mmap, "MADV_DONTNEED"):
        pytest.skip("no madvise on this platform")
    spikes = np.zeros((40, 250, 400), np.uint8)
    spikes[:, 0, 0] = 1
    write_dat(tmp_path / "z.dat", spikes)
    rec = open_recording(tmp_path / "z.dat")
    assert rec.read(0, 40).sum() == 40  # madvise after reading keeps the data intact
    assert rec.read(0, 40).sum() == 40


def test_reds_sample_decodes_upright(reds_dir: Path) -> None:
    import imageio.v3 as iio

    dat = reds_dir / "200_part1_key_id151.dat"
    rec = open_recording(dat)
    assert rec.shape == (301, 250, 400)
    rate = rec.read(130, 171).mean(axis=0)
    gt = iio.imread(dat.with_suffix(".png")).astype(np.float64)
    gt = gt if gt.ndim == 2 else gt[..., 0]
    upright = np.corrcoef(rate.ravel(), gt.ravel())[0, 1]
    flipped = np.corrcoef(rate[::-1].ravel(), gt.ravel())[0, 1]
    assert upright > 0.9 > flipped
