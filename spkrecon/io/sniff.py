"""What a file is, from its first bytes and its name: to say "x.png is a PNG image" instead
of decoding it as spikes or passing on a library's confusing message."""

from __future__ import annotations

import os
from pathlib import Path

#: (magic bytes at offset 0, what the file is)
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x93NUMPY", "a numpy .npy array"),
    (b"PK\x03\x04", "a zip archive (or .npz / PyTorch checkpoint)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"),
    (b"%PDF", "a PDF document"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (b"\x7fELF", "an executable program"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"OggS", "an Ogg media file"),
    (b"fLaC", "a FLAC audio file"),
)
_KIND_BY_SUFFIX = {
    ".png": "a PNG image", ".jpg": "a JPEG image", ".jpeg": "a JPEG image",
    ".gif": "a GIF image", ".bmp": "a BMP image", ".tif": "a TIFF image",
    ".tiff": "a TIFF image", ".webp": "a WebP image", ".mp4": "a video", ".mkv": "a video",
    ".mov": "a video", ".avi": "a video", ".webm": "a video", ".m4v": "a video",
    ".txt": "a text file", ".md": "a text file", ".csv": "a text file", ".json": "a text file",
    ".zip": "a zip archive", ".pkl": "a Python pickle", ".pickle": "a Python pickle",
    ".pt": "a PyTorch checkpoint", ".pth": "a PyTorch checkpoint",
}


def sniff_bytes(head: bytes) -> str | None:
    """What ``head`` (a file's first bytes) shows the file to be, or ``None`` when it looks
    like no known format (raw data such as spikes)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:3] == b"\xff\xd8\xff" and head[3:4] in b"\xe0\xe1\xe2\xdb\xee\xc0\xc2\xfe\xed":
        return "a JPEG image"
    if head[:2] == b"BM" and head[6:10] == b"\x00\x00\x00\x00" and head[14:15] in b"\x0c(@l|":
        return "a BMP image"
    if head[:3] == b"\x1f\x8b\x08" and head[3] < 32:
        return "a gzip archive"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "a bzip2 archive"
    if head[:3] == b"ID3" and head[3:4] in b"\x02\x03\x04" and head[4:5] == b"\x00":
        return "an MP3 audio file"
    if head[4:8] == b"ftyp":
        return "an MP4/QuickTime video"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WEBP", b"WAVE"):
        return {b"AVI ": "an AVI video", b"WEBP": "a WebP image",
                b"WAVE": "a WAV audio file"}[head[8:12]]
    if _is_pickle(head):
        return "a Python pickle"
    if _is_text(head):
        return "a text file"
    return None


def _is_pickle(head: bytes) -> bool:
    """A pickle (protocol 2+) header followed by a run of valid pickle opcodes."""
    import io
    import pickletools

    if len(head) < 16 or head[:1] != b"\x80" or head[1] not in (2, 3, 4, 5):
        return False
    ops = 0
    try:
        for _ in pickletools.genops(io.BytesIO(head)):
            ops += 1
            if ops >= 8:
                return True
    except Exception:  # noqa: BLE001 - not (or no more) valid pickle opcodes
        return False
    return ops >= 3  # a short, complete pickle


def _is_text(head: bytes) -> bool:
    """Mostly printable UTF-8 with words and white space (spike bytes are neither)."""
    if len(head) < 8 or b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="ignore")
    if len(text.encode("utf-8")) < 0.97 * len(head):  # more than a cut-off character invalid
        return False
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return (printable >= 0.95 * len(text) and any(ch.isspace() for ch in text)
            and sum(ch.isalpha() for ch in text) >= 0.2 * len(text) and len(set(text)) >= 6)


def sniff_file(path: str | os.PathLike, size: int = 4096) -> str | None:
    """What the file at ``path`` is, from its first ``size`` bytes, or ``None``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(size)
    except OSError:
        return None
    return sniff_bytes(head)


def recording_hint(kind: str) -> str:
    """What to do when ``kind`` (an image, a video, text...) was given as a recording."""
    if "image" in kind or "video" in kind:
        return "'spkrecon simulate' turns images and videos into recordings"
    return "give a .dat, .npy or .npz recording"


def ffmpeg_reason(text: str) -> str:
    """The one line of ffmpeg's output worth showing (its last error line), or ""."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.lower().startswith(("ffmpeg version", "built with", "configuration:", "lib",
                                      "conversion failed")):
            return ln[:200]
    return lines[-1][:200] if lines else ""


def unreadable(path: str | os.PathLike, expected: str, exc: BaseException | None = None
               ) -> str:
    """One line on why ``path`` could not be read as an ``expected`` ("image", "video"):
    what the file really is when its content shows it, else the reader's one useful line
    (ffmpeg's last error; never imageio's install advice)."""
    kind = sniff_file(path)
    if kind is not None and expected not in kind:
        return f"{path} is {kind}, not a readable {expected}"
    first = (str(exc or "").strip().splitlines() or [""])[0]
    if "ffmpeg" in first.lower():
        reason = ffmpeg_reason(str(exc)).replace(str(path), "").strip(" :")
    elif first.startswith("Could not find a backend"):
        reason = "damaged, or a format spkrecon cannot read"
    else:
        reason = first[:160]
    return f"{path} is not a readable {expected}" + (f" ({reason})" if reason else "")


def kind_from_suffix(path: str | os.PathLike) -> str | None:
    """What a file's extension says it is (``x.png`` -> "a PNG image"), or ``None``."""
    return _KIND_BY_SUFFIX.get(Path(path).suffix.lower())


__all__ = ["ffmpeg_reason", "kind_from_suffix", "recording_hint", "sniff_bytes", "sniff_file",
           "unreadable"]
