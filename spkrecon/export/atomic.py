"""Outputs appear under their final name only when complete.

Work goes to a hidden temporary name beside the target (``.NAME.partial-PID``) that is
renamed over the target at the end, and removed on any error, Ctrl-C or termination signal.

``force`` replaces only what spkrecon itself writes: a file output, or a folder that holds
nothing but spkrecon's own outputs (``foreign`` names what else a folder holds). A folder
with anything else in it, and the current folder, are never replaced.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from spkrecon.errors import OutputError

#: ``foreign(folder)`` -> names (relative, "sub/" for folders) of what spkrecon did not write.
Foreign = Callable[[Path], list[str]]


def foreign_entries(folder: Path, own: Callable[[PurePosixPath, bool], bool]) -> list[str]:
    """Everything below ``folder`` that ``own(relative_path, is_dir)`` does not claim,
    folders whose content is all claimed counting as claimed (sorted, "sub/" for folders)."""
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        base = PurePosixPath(Path(root).relative_to(folder).as_posix())
        for d in list(dirs):
            rel = base / d
            if Path(root, d).is_symlink() or not own(rel, True):
                out.append(f"{rel}/")
                dirs.remove(d)  # reported as a whole
        out.extend(str(base / f) for f in files
                   if Path(root, f).is_symlink() or not own(base / f, False))
    return sorted(out)


def _named(p: Path) -> Path:
    """``p`` with a real last component ("." and ".." have none to rename)."""
    return Path(os.path.abspath(p)) if p.name in ("", ".", "..") else p


def _holds_cwd(p: Path) -> bool:
    try:
        here, target = Path.cwd().resolve(), p.resolve()
    except OSError:  # the current folder was removed
        return False
    return here == target or target in here.parents


def check_output(path: str | os.PathLike, force: bool = False, kind: str = "file",
                 foreign: Foreign | None = None) -> Path:
    """Validate an output ``kind`` ("file" or "dir") path before any work: refuse an
    existing one without ``force`` (and one of the other kind always), create missing
    parent folders.

    An existing folder is replaced only when ``foreign(folder)`` (default: everything in
    it) is empty, and never when it is or holds the current folder. Raises
    :class:`OutputError` with what to do; returns the path to write (``.`` made absolute).
    """
    p = _named(Path(path))
    if p.exists() and p.is_dir() != (kind == "dir"):
        what = "a folder" if p.is_dir() else "a file"
        raise OutputError(f"{path} is {what}", f"choose another output path for the {kind}")
    if kind == "dir" and p.exists() and _holds_cwd(p):
        raise OutputError(f"{path} is the current folder (or holds it) and cannot be replaced",
                          "choose a new sub-folder as the output")
    if p.exists() and not force:
        raise OutputError(f"{path} already exists", "pass --force to overwrite it")
    if kind == "dir" and p.exists():
        other = (foreign or (lambda d: foreign_entries(d, lambda _r, _d: False)))(p)
        if other:
            more = f" and {len(other) - 3} more" if len(other) > 3 else ""
            raise OutputError(
                f"{path} holds files spkrecon did not write ({', '.join(other[:3])}{more}); "
                "--force replaces only spkrecon's own outputs",
                "move them away or choose another output folder")
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


def check_outputs(paths: Sequence[str | os.PathLike], force: bool = False) -> list[Path]:
    """:func:`check_output` for several output files, which must be different files."""
    seen: dict[Path, str] = {}
    for p in paths:
        key = Path(os.path.abspath(p))
        if key in seen:
            raise OutputError(f"{p} is given for two outputs", "give each output its own name")
        seen[key] = str(p)
    return [check_output(p, force) for p in paths]


def write_error(final: str | os.PathLike, exc: OSError) -> OutputError:
    """The :class:`OutputError` for an ``OSError`` met while writing ``final`` (named by its
    final name, not the hidden temporary one), with what to do."""
    where = Path(final).parent if str(Path(final).parent) else Path(".")
    hint = {errno.ENOSPC: f"free some space on the disk of {where} or write elsewhere",
            errno.EDQUOT: f"free some space on the disk of {where} or write elsewhere",
            errno.EACCES: f"check the permissions of {where} or write elsewhere",
            errno.EPERM: f"check the permissions of {where} or write elsewhere",
            errno.EROFS: f"{where} is read-only: write elsewhere",
            errno.ENAMETOOLONG: "choose a shorter output name"}.get(
                exc.errno or 0, "check the output folder or write elsewhere")
    return OutputError(f"cannot write {final}: {exc.strerror or exc}", hint)


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
        try:
            os.replace(self.tmp, self.final)
        except OSError as exc:
            raise write_error(self.final, exc) from None
        return self.final

    def discard(self) -> None:
        _remove(self.tmp)


@contextmanager
def atomic_file(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` when the block succeeds."""
    with atomic_files([path], force) as (tmp,):
        yield tmp


@contextmanager
def atomic_files(paths: Sequence[str | os.PathLike], force: bool = False
                 ) -> Iterator[list[Path]]:
    """Yield temporary paths for several files; all replace their targets when the block
    succeeds, and none does when it fails (no output is left half done or alone)."""
    check_outputs(paths, force)
    pending = [PendingFile(p, force) for p in paths]
    try:
        try:
            yield [q.tmp for q in pending]
        except OSError as exc:
            failed = next((q.final for q in pending if _within(exc, q.tmp)), None)
            if failed is None:
                raise
            raise write_error(failed, exc) from None
        for q in pending:
            q.commit()
    except BaseException:
        for q in pending:
            q.discard()
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False,
               foreign: Foreign | None = None) -> Iterator[Path]:
    """Yield a temporary folder to fill; it replaces folder ``path`` when the block succeeds.

    With ``force``, an existing folder is replaced only when ``foreign`` finds nothing in it
    that spkrecon did not write (see :func:`check_output`).
    """
    final = check_output(path, force, kind="dir", foreign=foreign)
    tmp = _partial(final)
    _remove(tmp)
    try:
        tmp.mkdir()
    except OSError as exc:
        raise write_error(final, exc) from None
    try:
        try:
            yield tmp
        except OSError as exc:
            if not _within(exc, tmp):
                raise
            raise write_error(final, exc) from None
        _swap_dir(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def _within(exc: OSError, tmp: Path) -> bool:
    """Whether ``exc`` is about ``tmp`` or something inside it."""
    name = getattr(exc, "filename", None)
    if not name:
        return False
    q = Path(os.fsdecode(name))
    return q == tmp or tmp in q.parents


def _swap_dir(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` over folder ``final``; the old folder is restored if that fails or is
    interrupted half way."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    _remove(old)
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if not final.exists():
            os.replace(old, final)
        raise
    _remove(old)
