"""Spike recording input and output.

``open_recording`` accepts a ``.dat`` file, a ``.npy``/``.npz`` array or the reserved name
``sample`` (the recording bundled with the package) and returns a :class:`SpikeSource`.
"""

from __future__ import annotations

import os
from pathlib import Path

from spkrecon.errors import InputError, ParameterError, RecordingFormatError
from spkrecon.io.arrays import ArrayRecording, Layout
from spkrecon.io.dat import (
    COMMON_RESOLUTIONS,
    DatRecording,
    decode,
    encode,
    fitting_resolutions,
    frame_bytes,
    write_dat,
)
from spkrecon.io.sniff import kind_from_suffix, recording_hint, sniff_file
from spkrecon.io.source import ArraySource, SpikeSource

#: The reserved recording name that means "the sample bundled with spkrecon".
SAMPLE_NAME = "sample"
HEADER_COLUMNS = 16

__all__ = [
    "COMMON_RESOLUTIONS", "HEADER_COLUMNS", "SAMPLE_NAME", "ArrayRecording", "ArraySource",
    "DatRecording", "SpikeSource", "decode", "encode", "fitting_resolutions", "frame_bytes",
    "open_recording", "sample_path", "write_dat",
]


def sample_path() -> Path:
    """Path of the bundled sample recording (250x400 ``.dat``, simulated by spkrecon)."""
    return Path(__file__).resolve().parent.parent / "data" / "sample.dat"


def open_recording(path: str | os.PathLike, height: int = 250, width: int = 400,
                   crop_header: bool = False, layout: Layout = "auto",
                   flip: bool = False) -> SpikeSource:
    """Open a recording for streaming.

    ``height``/``width`` give the raw ``.dat`` frame size (for arrays they only help guess
    the layout). ``crop_header`` drops the 16 header columns on the right of 416-wide
    captures (``width=416`` is implied when ``width`` is left at 400).
    """
    if str(path) == SAMPLE_NAME and not Path(path).exists():
        unused = [flag for flag, used in (("--height", height != 250), ("--width", width != 400),
                                           ("--crop-header", crop_header),
                                           ("--layout", layout != "auto"), ("--flip", flip))
                  if used]
        if unused:
            raise ParameterError(f"{'/'.join(unused)} cannot apply to '{SAMPLE_NAME}'",
                                 "the bundled sample is a 250x400 .dat without header "
                                 "columns; drop the option")
        return DatRecording(sample_path(), 250, 400)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist",
                         f"give a .dat, .npy or .npz recording (or '{SAMPLE_NAME}')")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not a recording file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p} is not readable (permission denied)")
    suffix = p.suffix.lower()
    named = kind_from_suffix(p)
    if named is not None and suffix not in (".npy", ".npz"):
        kind = sniff_file(p) or named
        raise RecordingFormatError(f"{p} is {kind}, not a spike recording", recording_hint(kind))
    if suffix in (".npy", ".npz"):
        return ArrayRecording(p, layout=layout, flip=flip, height=height, width=width)
    if crop_header:
        raw_width = width + HEADER_COLUMNS if width == 400 else width
        return DatRecording(p, height, raw_width, crop_right=HEADER_COLUMNS)
    return DatRecording(p, height, width)
