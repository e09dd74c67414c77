"""The batch manifest: ``OUT/manifest.jsonl``, one JSON object a line, appended under a lock.

Each line is one event for one recording (``name``): ``running`` when it starts, then
``done``, ``failed`` or ``interrupted``. The latest line for a name says where it stands; a
name whose latest line is ``running`` was cut short by a crash. At the end of a run the file
is compacted to the latest line per name, sorted by name.

Several processes (``--jobs`` workers report to their parent, which alone writes; torchrun
ranks and SLURM tasks each write) share the one file: every write takes an exclusive
``fcntl`` lock on ``OUT/.manifest.lock``, opens the manifest afresh in append mode, writes
whole lines and syncs them; compaction takes the same lock and replaces the file atomically.
A line cut short by a hard crash is ignored when read (the next write starts a new line).
Signals are held back while a line is written, so an interrupt never leaves half a line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spkrecon.errors import InputError, OutputError

MANIFEST = "manifest.jsonl"
LOCK = ".manifest.lock"
#: The statuses a line may carry; only ``done`` has an output.
STATUSES = ("running", "done", "failed", "interrupted")
_SIGNALS = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Delay SIGINT/SIGTERM/SIGHUP until the block is done (a no-op off the main thread)."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Manifest:
    """The manifest of batch output folder ``folder``."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST
        self.lock_path = self.folder / LOCK

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's manifest lock (best effort where the filesystem has no locks)."""
        import fcntl

        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
            except OSError as exc:  # pragma: no cover - e.g. NFS without lockd
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- reading -----------------------------------------------------------------------
    def lines(self) -> list[dict[str, Any]]:
        """Every well-formed line, in file order (a torn last line is skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise InputError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        out = []
        for raw in text.splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("name"), str):
                out.append(rec)
        return out

    def latest(self) -> dict[str, dict[str, Any]]:
        """``name -> latest line`` for every recording the manifest has seen."""
        out: dict[str, dict[str, Any]] = {}
        for rec in self.lines():
            out[rec["name"]] = rec
        return out

    # -- writing -----------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> None:
        """Append one line (under the lock, synced, with signals held back)."""
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with _signals_held(), self.locked():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
            try:
                if os.fstat(fd).st_size and not self._ends_with_newline():
                    line = "\n" + line  # after a torn line from a hard crash
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def compact(self) -> None:
        """Rewrite the file as the latest line per name, sorted by name (atomically)."""
        with _signals_held(), self.locked():
            latest = self.latest()
            if not latest:
                return
            tmp = self.path.with_name(f".{MANIFEST}.tmp-{os.getpid()}")
            with open(tmp, "w", encoding="utf-8") as f:
                for name in sorted(latest):
                    f.write(json.dumps(latest[name], sort_keys=True, default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
