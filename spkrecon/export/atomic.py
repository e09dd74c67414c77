"""Outputs appear under their final name only when complete.

Work goes to a hidden temporary name beside the target (``.NAME.partial-PID``) that is
renamed over the target at the end, and removed on any error or Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spkrecon.errors import OutputError


def check_output(path: str | os.PathLike, force: bool = False, kind: str = "file") -> Path:
    """Validate an output ``kind`` ("file" or "dir") path: refuse an existing one without
    ``force`` (and one of the other kind always), create missing parent folders.

    Raises :class:`OutputError` with what to do.
    """
    p = Path(path)
    if p.exists() and p.is_dir() != (kind == "dir"):
        what = "a folder" if p.is_dir() else "a file"
        raise OutputError(f"{p} is {what}", f"choose another output path for the {kind}")
    if p.exists() and not force:
        raise OutputError(f"{p} already exists", "pass --force to overwrite it")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot create folder {parent}: a file is in the way",
                          "choose another output path") from None
    except OSError as exc:
        raise OutputError(f"cannot create folder {parent}: {exc.strerror or exc}") from None
    if not parent.is_dir():
        raise OutputError(f"{parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"folder {parent} is not writable", "choose another output folder")
    return p


def _partial(p: Path) -> Path:
    return p.with_name(f".{p.stem}.partial-{os.getpid()}{p.suffix}")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


class PendingFile:
    """A temporary path beside ``final``: :meth:`commit` renames it over ``final``,
    :meth:`discard` removes it."""

    def __init__(self, path: str | os.PathLike, force: bool = False) -> None:
        self.final = check_output(path, force)
        self.tmp = _partial(self.final)
        _remove(self.tmp)

    def commit(self) -> Path:
        if not self.tmp.exists():
            raise OutputError(f"nothing was written to {self.final}")
        os.replace(self.tmp, self.final)
        return self.final

    def discard(self) -> None:
        _remove(self.tmp)


@contextmanager
def atomic_file(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` when the block succeeds."""
    pending = PendingFile(path, force)
    try:
        yield pending.tmp
        pending.commit()
    except BaseException:
        pending.discard()
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to fill; it replaces folder ``path`` when the block succeeds."""
    final = check_output(path, force, kind="dir")
    tmp = _partial(final)
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
