"""Run a batch: plan against the manifest, reconstruct (in this process or ``jobs`` worker
processes), record every recording, stop cleanly on a signal, meet the other ranks.

One bad recording never stops the batch: its error is recorded and the others go on. Only
what makes every recording fail (an unknown method, missing weights, a missing device, a
manifest made with other settings) stops it, before any work, with that error.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spkrecon import __version__
from spkrecon.batch.inputs import Recording, collect
from spkrecon.batch.manifest import Manifest
from spkrecon.batch.render import (
    BatchSettings,
    build_method,
    error_line,
    expected_frames,
    identity_changes,
    input_stamp,
    now,
    remove_partials,
    render,
)
from spkrecon.batch.shard import Shard, shard_from_env
from spkrecon.errors import OutputError, ParameterError, SpkreconError

#: ``on_event(kind, data)``: "method" {why}, "plan" {todo, skipped, failed, frames},
#: "start" {name}, "frames" {name, n}, "end" {record}.
EventHook = Callable[[str, dict[str, Any]], None]
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                      if hasattr(signal, n))
#: Seconds the workers get to remove their partial outputs after a stop, before SIGKILL.
STOP_GRACE_S = 30.0


class Stopped(KeyboardInterrupt):
    """Raised in a process by the first SIGINT/SIGTERM/SIGHUP of a batch."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class BatchInterrupted(SpkreconError):
    """The batch stopped on a signal; finished outputs stay, the manifest is consistent."""

    def __init__(self, report: BatchReport, signum: int) -> None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        c = report.counts()
        super().__init__(
            f"interrupted by {name}: {c.get('done', 0) + c.get('skipped', 0)} recordings "
            f"finished, {c.get('interrupted', 0)} stopped with no output left",
            "run the same command again to resume")
        self.report = report
        self.signum = signum
        self.exit_code = 128 + signum


@dataclass
class Job:
    name: str
    input: Path
    output: str  # relative to the batch folder
    force: bool  # may replace an existing output (--force, or the manifest says it is ours)
    frames: int
    owned: bool = False  # an output this folder's batches wrote is there from before


@dataclass
class BatchReport:
    """What a batch did: one record per recording (manifest lines; ``skipped`` ones are
    those already done and unchanged)."""

    folder: Path
    records: list[dict[str, Any]]
    shard: Shard
    #: Whether ``records`` covers every rank's share (rank 0 after torchrun's barrier).
    whole: bool
    seconds: float
    method: str
    why: str | None = None
    interrupted: int | None = None
    threads: int | None = None
    jobs: int = 1

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    @property
    def failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.records)

    @property
    def frames(self) -> int:
        """Frames written by this run (skipped recordings not counted)."""
        return sum(int(r.get("frames") or 0) for r in self.records if r["status"] == "done")

    def to_json(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "method": self.method, "counts": self.counts(),
                "frames": self.frames, "seconds": round(self.seconds, 3),
                "shard": self.shard.label, "whole": self.whole, "jobs": self.jobs,
                "threads": self.threads, "interrupted": self.interrupted,
                "recordings": self.records}


# -- signals -------------------------------------------------------------------------------
@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, the first SIGINT/SIGTERM/SIGHUP raises :class:`Stopped` and
    later ones are ignored (so cleaning up is never cut short). Main thread only."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        for s in _STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)

    old = {s: signal.signal(s, handler) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _ignore_signals() -> None:
    for s in _STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def _signum(exc: KeyboardInterrupt) -> int:
    return exc.signum if isinstance(exc, Stopped) else int(signal.SIGINT)


# -- threads -------------------------------------------------------------------------------
def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


def default_threads(jobs: int, shard: Shard) -> int:
    """Cores per worker: this machine's cores, shared by the ranks on it and the workers."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) \
        if shard.source == "torchrun" else 1
    return max(1, available_cores() // max(1, local_world) // max(1, jobs))


def _set_torch_threads(threads: int | None) -> None:
    if threads is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@contextlib.contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    old = {n: os.environ.get(n) for n in names}
    os.environ.update({n: str(threads) for n in names})
    try:
        yield
    finally:
        for n, v in old.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


# -- one recording -----------------------------------------------------------------------------
def _base(job: Job, settings: BatchSettings, ident: dict[str, Any], method: str,
          params: dict[str, Any], shard: Shard) -> dict[str, Any]:
    return {"name": job.name, "input": str(job.input), "output": job.output,
            "owned": job.owned, "kind": settings.kind, "method": method, "params": params,
            "settings": ident,
            "rank": shard.rank, "world": shard.world, "host": socket.gethostname(),
            "spkrecon": __version__}


def run_job(job: Job, folder: Path, method: Any, settings: BatchSettings,
            on_frame: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Reconstruct one recording: ``{status, frames, seconds, error, method, params, ...}``.

    Any error becomes ``status: failed`` with its one-line ``error``; an interrupt removes
    the partial output and propagates (after the caller has what it needs from ``job``).
    """
    t0 = time.perf_counter()
    out: dict[str, Any] = {"method": method.name, "params": method.params(), "pid": os.getpid()}
    try:
        out.update(input_stamp(job.input))
        frames = render(job.input, folder / job.output, method, settings, job.force, on_frame)
        out.update(status="done", frames=frames, error=None, owned=True)
    except KeyboardInterrupt:
        remove_partials(folder / job.output)
        raise
    except Exception as exc:  # noqa: BLE001 - isolated: recorded, the batch goes on
        remove_partials(folder / job.output)
        out.update(status="failed", frames=0, error=error_line(exc))
    out["seconds"] = round(time.perf_counter() - t0, 4)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MB (None where unknown).

    Linux: ``VmHWM``, the peak of this program's own address space (``ru_maxrss`` would
    count the parent that a spawned worker was forked from before it ran Python afresh).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


# -- the batch -------------------------------------------------------------------------------
class _Group:
    """torchrun's ranks, joined on the gloo backend (CPU only: a barrier and small gathers)."""

    def __init__(self, shard: Shard) -> None:
        from datetime import timedelta

        import torch.distributed as dist

        self.dist = dist
        self.own = not dist.is_initialized()
        if self.own:
            hours = float(os.environ.get("SPKRECON_BATCH_BARRIER_HOURS", "72"))
            dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world,
                                    timeout=timedelta(hours=hours))
        self.world = shard.world

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.own and self.dist.is_initialized():
            self.dist.destroy_process_group()


def _group_for(shard: Shard) -> _Group | None:
    if shard.source == "torchrun" and os.environ.get("MASTER_ADDR") and \
            os.environ.get("MASTER_PORT"):
        return _Group(shard)
    return None


def _prepare_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file", "the batch output (-o) must be a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"folder {folder} is not writable", "choose another output folder")


def _check_settings(latest: dict[str, dict[str, Any]], ident: dict[str, Any],
                    folder: Path) -> None:
    other = [r for r in latest.values() if r.get("status") == "done"
             and r.get("settings") != ident]
    if other:
        raise OutputError(
            f"{folder} holds {len(other)} recording(s) made with other settings "
            f"({identity_changes(other[0].get('settings') or {}, ident)})",
            "pass --force to redo them with these settings, or choose another output folder")


def plan(recordings: Sequence[Recording], folder: Path, settings: BatchSettings,
         latest: dict[str, dict[str, Any]], force: bool
         ) -> tuple[list[Job], list[dict[str, Any]], list[tuple[Job, str]]]:
    """``(to do, skipped records, (job, error) that cannot even be opened)``."""
    todo: list[Job] = []
    skipped: list[dict[str, Any]] = []
    broken: list[tuple[Job, str]] = []
    for rec in recordings:
        output = settings.output_name(rec.name)
        old = latest.get(rec.name)
        owned = old is not None and old.get("output") == output and (
            old.get("status") == "done" or bool(old.get("owned")))
        job = Job(rec.name, rec.path, output, force or owned, 0, owned)
        try:
            stamp = input_stamp(rec.path)
        except OSError as exc:
            broken.append((job, error_line(exc)))
            continue
        if (not force and old is not None and old.get("status") == "done"
                and old.get("input") == str(rec.path) and old.get("output") == output
                and old.get("input_size") == stamp["input_size"]
                and old.get("input_mtime_ns") == stamp["input_mtime_ns"]
                and (folder / output).exists()):
            skipped.append({**old, "status": "skipped"})
            continue
        try:
            job.frames = expected_frames(rec.path, settings)
        except Exception as exc:  # noqa: BLE001 - recorded as this recording's failure
            broken.append((job, error_line(exc)))
            continue
        todo.append(job)
    return todo, skipped, broken


def run_batch(inputs: Sequence[str], folder: str | os.PathLike, settings: BatchSettings, *,
              jobs: int = 1, threads: int | None = None, force: bool = False,
              shard: Shard | None = None, on_event: EventHook | None = None) -> BatchReport:
    """Reconstruct every recording ``inputs`` names into ``folder`` (see docs/batch.md).

    Returns the report; raises :class:`BatchInterrupted` (with the report) on a signal, and
    the setup's error (unknown method, other settings in the manifest...) before any work.
    """
    if jobs < 1:
        raise ParameterError(f"--jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ParameterError(f"--threads must be at least 1, got {threads}")
    emit = on_event or (lambda kind, data: None)
    t0 = time.perf_counter()
    folder = Path(folder)
    shard = shard or shard_from_env()
    recordings = collect(list(inputs), exclude=folder)
    method, kwargs, why = settings.resolve()
    ident = settings.identity(method, kwargs)
    if why:
        emit("method", {"why": why})
    _prepare_folder(folder)
    if threads is None and (jobs > 1 or shard.enabled):
        threads = default_threads(jobs, shard)
    group = _group_for(shard)
    try:
        if group is not None:
            methods = group.gather([method, ident])
            if any(m != methods[0] for m in methods):
                names = ", ".join(f"rank {i}: {m[0]}" for i, m in enumerate(methods))
                raise ParameterError(f"the ranks resolved different settings ({names})",
                                     "name the method and its parameters explicitly")
        manifest = Manifest(folder)
        latest = manifest.latest()
        if not force:
            _check_settings(latest, ident, folder)
        todo, skipped, broken = plan(shard.take(recordings), folder, settings, latest, force)
        emit("plan", {"todo": len(todo), "skipped": len(skipped), "failed": len(broken),
                      "frames": sum(j.frames for j in todo)})
        records: list[dict[str, Any]] = list(skipped)
        for job, err in broken:
            rec = {**_base(job, settings, ident, method, kwargs, shard), "status": "failed",
                   "frames": 0, "seconds": 0.0, "error": err, "time": now()}
            manifest.append(rec)
            records.append(rec)
            emit("end", {"record": rec})
        report = BatchReport(folder, records, shard, not shard.enabled, 0.0, method, why,
                             threads=threads, jobs=jobs)
        ctx = _Context(folder, settings, ident, method, kwargs, shard, manifest, emit, report)
        gpu_base = (shard.local_rank or 0) * jobs if (jobs > 1 or shard.enabled) else None
        try:
            with stop_on_signals():
                if jobs == 1 or len(todo) <= 1:
                    _run_inline(ctx, todo, threads, gpu_base)
                else:
                    _run_pool(ctx, todo, min(jobs, len(todo)), threads, gpu_base or 0)
        except KeyboardInterrupt as exc:
            report.interrupted = _signum(exc)
            report.seconds = time.perf_counter() - t0
            manifest.compact()
            raise BatchInterrupted(report, report.interrupted) from None
        if group is not None:
            every = group.gather(report.records)
            if shard.rank == 0:
                report.records = sorted((r for part in every for r in part),
                                        key=lambda r: r["name"])
                report.whole = True
        manifest.compact()
        report.records.sort(key=lambda r: r["name"])
        report.seconds = time.perf_counter() - t0
        return report
    finally:
        if group is not None:
            group.close()


@dataclass
class _Context:
    folder: Path
    settings: BatchSettings
    ident: dict[str, Any]
    method: str
    kwargs: dict[str, Any]
    shard: Shard
    manifest: Manifest
    emit: EventHook
    report: BatchReport
    running: dict[str, dict[str, Any]] = field(default_factory=dict)

    def started(self, job: Job, pid: int) -> None:
        rec = {**_base(job, self.settings, self.ident, self.method, self.kwargs, self.shard),
               "status": "running", "pid": pid, "frames": 0, "seconds": None, "error": None,
               "time": now()}
        self.manifest.append(rec)
        self.running[job.name] = rec
        self.emit("start", {"name": job.name})

    def ended(self, job: Job, result: dict[str, Any]) -> None:
        begun = self.running.pop(job.name, None)
        if begun is None:  # a signal cut its "started" short: the record starts here
            begun = {**_base(job, self.settings, self.ident, self.method, self.kwargs,
                             self.shard), "pid": None}
        rec = {**begun, **result, "time": now()}
        self.manifest.append(rec)
        self.report.records.append(rec)
        self.emit("end", {"record": rec})

    def stop_all(self, jobs: dict[str, Job], why: str = "interrupted") -> None:
        """Record every job still running as interrupted (its partial output removed)."""
        for name in list(self.running):
            job = jobs[name]
            remove_partials(self.folder / job.output)
            self.ended(job, {"status": why, "frames": 0, "error": None,
                             "seconds": None})


def _run_inline(ctx: _Context, todo: list[Job], threads: int | None,
                gpu_slot: int | None) -> None:
    if not todo:
        return
    method = build_method(ctx.method, ctx.kwargs, gpu_slot)
    _set_torch_threads(threads)
    by_name = {j.name: j for j in todo}
    for job in todo:
        ctx.started(job, os.getpid())

        def frame(name: str = job.name) -> None:
            ctx.emit("frames", {"name": name, "n": 1})

        try:
            result = run_job(job, ctx.folder, method, ctx.settings, frame)
        except KeyboardInterrupt:
            _ignore_signals()
            ctx.stop_all(by_name)
            raise
        ctx.ended(job, result)


# -- worker processes ---------------------------------------------------------------------------
class _FrameCounter:
    """A worker's frame callback: tells the parent how many frames it wrote, at most every
    0.1 s (a message a frame would cost more than fast methods take)."""

    def __init__(self, results: Any, index: int, name: str) -> None:
        self.results, self.index, self.name = results, index, name
        self.last, self.count = time.monotonic(), 0

    def __call__(self) -> None:
        self.count += 1
        if time.monotonic() - self.last >= 0.1:
            self.flush()

    def flush(self) -> None:
        if self.count:
            self.results.put(("frames", self.index, self.name, self.count))
        self.last, self.count = time.monotonic(), 0


def _worker(index: int, method: str, kwargs: dict[str, Any], settings: BatchSettings,
            folder: Path, threads: int | None, gpu_slot: int | None, tasks: Any,
            results: Any) -> None:
    """A worker process: builds the method once, then reconstructs jobs from ``tasks``.

    Ctrl-C reaches the whole process group: workers ignore SIGINT/SIGHUP and stop on the
    parent's SIGTERM (the first one raises, then signals are ignored while cleaning up).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def on_term(signum: int, frame: Any) -> None:
        _ignore_signals()
        raise Stopped(signum)

    signal.signal(signal.SIGTERM, on_term)
    _term_with_parent()
    parent = os.getppid()
    try:
        try:
            rec = build_method(method, kwargs, gpu_slot)
            _set_torch_threads(threads)
        except Exception as exc:  # noqa: BLE001 - the parent stops the batch with it
            code = exc.exit_code if isinstance(exc, SpkreconError) else 70
            results.put(("fatal", index, error_line(exc), code))
            return
        while True:
            try:
                job = tasks.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:  # the parent died: nobody records our work
                    break
                continue
            if job is None:
                break
            results.put(("start", index, job.name, os.getpid()))
            frames = _FrameCounter(results, index, job.name)
            try:
                result = run_job(job, folder, rec, settings, frames)
            except KeyboardInterrupt:
                frames.flush()
                results.put(("stopped", index, job.name))
                break
            frames.flush()
            results.put(("end", index, job.name, result))
    except KeyboardInterrupt:
        pass
    finally:
        results.put(("exit", index))


@contextlib.contextmanager
def _plain_main() -> Iterator[None]:
    """Start workers without re-running the parent's ``__main__`` in them (spawn would
    import it: a script, ``python -m spkrecon``, stdin or a notebook); they need only this
    module."""
    import types

    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _term_with_parent() -> None:
    """Linux: SIGTERM this worker when its parent dies (so a killed parent leaves no
    workers behind, and they remove their partial outputs)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _run_pool(ctx: _Context, todo: list[Job], jobs: int, threads: int | None,
              gpu_base: int) -> None:
    import multiprocessing as mp

    # The queues' semaphores are registered with multiprocessing's resource tracker, a process
    # that starts with the first of them and takes this interpreter's -W options. When Ctrl-C
    # stops the batch while a worker holds one, the tracker frees it at exit and warns about a
    # "leaked semaphore" on stderr, after the batch's one-line message (seen in CI): the
    # tracker's cleanup is what should happen, so its warning is silenced.
    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
    if quiet not in sys.warnoptions:
        sys.warnoptions.append(quiet)
    spawn = mp.get_context("spawn")
    tasks, results = spawn.Queue(), spawn.Queue()
    by_name = {j.name: j for j in todo}
    for job in todo:
        tasks.put(job)
    for _ in range(jobs):
        tasks.put(None)
    procs: dict[int, Any] = {}
    where: dict[int, str] = {}  # worker -> the job it runs
    started = [0]
    heard: set[int] = set()  # workers that have reported at least once
    next_index = 0

    def start_worker() -> None:
        nonlocal next_index
        i = next_index
        next_index += 1
        p = spawn.Process(target=_worker, name=f"spkrecon-batch-{i}", daemon=True,
                          args=(i, ctx.method, ctx.kwargs, ctx.settings, ctx.folder, threads,
                                gpu_base + i % jobs, tasks, results))
        with _thread_env(threads or 1), _plain_main():
            p.start()
        procs[i] = p

    def handle(msg: tuple[Any, ...]) -> None:
        kind, i = msg[0], msg[1]
        heard.add(i)
        if kind == "start":
            started[0] += 1
            where[i] = msg[2]
            ctx.started(by_name[msg[2]], msg[3])
        elif kind == "frames":
            ctx.emit("frames", {"name": msg[2], "n": msg[3]})
        elif kind == "end":
            where.pop(i, None)
            ctx.ended(by_name[msg[2]], msg[3])
        elif kind == "stopped":
            where.pop(i, None)
            remove_partials(ctx.folder / by_name[msg[2]].output)
            ctx.ended(by_name[msg[2]], {"status": "interrupted", "frames": 0, "error": None,
                                        "seconds": None})
        elif kind == "exit":
            p = procs.pop(i, None)
            if p is not None:
                p.join(timeout=5)
        elif kind == "fatal":
            err = SpkreconError(msg[2])
            err.exit_code = msg[3]
            raise err

    def drain(fatal: bool = True) -> None:
        while True:
            try:
                msg = results.get_nowait()
            except queue.Empty:
                return
            if fatal or msg[0] != "fatal":
                handle(msg)

    def reap() -> None:
        """Workers that died without saying so (killed, out of memory): fail their job, and
        start another worker while jobs wait (the dead one left its end marker queued)."""
        dead = [i for i, p in procs.items() if not p.is_alive()]
        if not dead:
            return
        drain()  # what they said before they died
        for i in dead:
            p = procs.pop(i, None)
            if p is None:  # it said goodbye
                continue
            if i not in heard:
                raise SpkreconError(f"a batch worker process failed to start "
                                    f"(exit code {p.exitcode})", "run with --jobs 1 to see why")
            name = where.pop(i, None)
            if name is not None:
                remove_partials(ctx.folder / by_name[name].output)
                code = p.exitcode
                how = (f"killed by signal {-code}" if code is not None and code < 0
                       else f"exit code {code}")
                ctx.ended(by_name[name], {"status": "failed", "frames": 0, "seconds": None,
                                          "error": f"the worker process died ({how}); "
                                          "out of memory?"})
            if p.exitcode != 0 and started[0] < len(todo):
                tasks.put(None)  # the new worker's own end marker
                start_worker()

    for _ in range(jobs):
        start_worker()
    try:
        last_reap = time.monotonic()
        while procs:
            try:
                handle(results.get(timeout=0.5))
            except queue.Empty:
                pass
            if time.monotonic() - last_reap >= 1.0:
                reap()
                last_reap = time.monotonic()
    except BaseException:
        _ignore_signals()
        for p in procs.values():
            if p.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and any(p.is_alive() for p in procs.values()):
            try:
                msg = results.get(timeout=0.2)
            except queue.Empty:
                continue
            if msg[0] != "fatal":
                handle(msg)
        for p in list(procs.values()):
            if p.is_alive():
                p.kill()
            p.join(timeout=5)
        drain(fatal=False)
        ctx.stop_all(by_name)
        raise
    finally:
        tasks.cancel_join_thread()
        results.cancel_join_thread()
