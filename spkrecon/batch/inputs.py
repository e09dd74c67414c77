"""Many recordings from files, folders and glob patterns, each with the name of its output.

- a file: named by its stem (``car.dat`` -> ``car``); ``sample`` is the bundled recording;
- a folder: every ``.dat``/``.npy``/``.npz`` below it (hidden ones left out), named by its
  path below the folder without the suffix (``day1/cam2/rec.dat`` given ``day1`` -> ``cam2/rec``);
- a glob pattern (``*``, ``?``, ``[``; quote it from the shell; ``**`` reaches into
  subfolders): each match named by its path below the pattern's fixed leading folders
  (``data/*/rec.dat`` -> ``a/rec``, ``b/rec``); a matching folder counts as a folder.

The same file reached twice counts once. Two files that would share a name are an error
(before anything runs), as is an input that matches nothing.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from spkrecon.errors import InputError, ParameterError

SUFFIXES = (".dat", ".npy", ".npz")


@dataclass(frozen=True)
class Recording:
    """One input of a batch: output ``name`` (posix, no suffix) and the file ``path``."""

    name: str
    path: Path


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _is_recording(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in SUFFIXES


def _inside(p: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        p.resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def _walk(folder: Path, exclude: Path | None) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        base = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not _inside(base / d, exclude))
        found += [base / f for f in sorted(files)
                  if not f.startswith(".") and _is_recording(base / f)]
    return found


def _name(p: Path, base: Path | None) -> str:
    rel = p.relative_to(base) if base is not None else Path(p.name)
    return str(PurePosixPath(*rel.parts).with_suffix(""))


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _is_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def collect(inputs: list[str], exclude: str | os.PathLike | None = None) -> list[Recording]:
    """The recordings ``inputs`` name, sorted by name; files under ``exclude`` (the output
    folder) are never inputs. InputError/ParameterError as the module docstring says."""
    from spkrecon.io import SAMPLE_NAME, sample_path

    if not inputs:
        raise InputError("no recordings given", "name files, folders or glob patterns")
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[tuple[str, Path, str]] = []  # (name, path, given as)
    for item in inputs:
        p = Path(item).expanduser()
        if item == SAMPLE_NAME and not p.exists():
            found.append((SAMPLE_NAME, sample_path(), item))
        elif p.is_dir():
            files = _walk(p, skip)
            if not files:
                raise InputError(f"no recordings ({', '.join(SUFFIXES)}) in folder {p}")
            found += [(_name(f, p), f, item) for f in files]
        elif p.exists():
            if not p.is_file():
                raise InputError(f"{p} is not a file or a folder")
            found.append((_name(p, None), p, item))
        elif _is_glob(item):
            base = _glob_base(str(p))
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            hits: list[tuple[str, Path, str]] = []
            for m in matches:
                if m.is_dir():
                    hits += [(_name(f, base), f, item) for f in _walk(m, skip)]
                elif _is_recording(m) and not _inside(m, skip):
                    hits.append((_name(m, base), m, item))
            if not hits:
                raise InputError(f"no recording matches {item!r}",
                                 f"recordings end in {', '.join(SUFFIXES)}")
            found += hits
        else:
            raise InputError(f"{p} does not exist",
                             "give .dat/.npy/.npz files, folders or glob patterns")
    by_name: dict[str, Recording] = {}
    seen: dict[Path, str] = {}
    for name, path, given in found:
        real = path.resolve()
        if real in seen:
            continue
        if name in by_name:
            raise ParameterError(
                f"two recordings would both be named '{name}': {by_name[name].path} and "
                f"{path} (from {given})", "give them through their common parent folder")
        seen[real] = name
        by_name[name] = Recording(name, real)
    return [by_name[n] for n in sorted(by_name)]
