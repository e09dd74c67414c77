"""``spkrecon batch``: many recordings into one folder, resumable, in parallel, on clusters.

Parses, calls :func:`spkrecon.batch.run_batch`, renders one progress bar and a summary;
nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from spkrecon.cli._common import (
    Alpha,
    Crf,
    CropHeader,
    Device,
    End,
    Flip,
    Fps,
    Gamma,
    Height,
    Layout,
    Method,
    Params,
    Precision,
    Preset,
    Quiet,
    Start,
    Stride,
    Tonemap,
    Weights,
    Width,
    Window,
    err_console,
    fail,
    guarded,
    info,
    out_console,
)

app = typer.Typer(
    name="batch",
    help="Reconstruct many recordings into one folder: resumes after a crash, runs in "
    "parallel (--jobs) and across GPUs and nodes (torchrun, SLURM). See docs/batch.md.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: Exit code of a batch in which some recordings failed (the others were written).
EXIT_SOME_FAILED = 1
#: Above this many recordings the summary table lists only those that did not succeed.
TABLE_ROWS = 30

Inputs = Annotated[list[str], typer.Argument(
    help="Recordings: .dat/.npy/.npz files, folders (searched below) and quoted glob "
    "patterns ('data/**/*.dat'); 'sample' is the bundled one.", show_default=False)]
OutDir = Annotated[Path, typer.Option(
    "--output", "-o", help="The output folder: one output per recording, named after it, "
    "and manifest.jsonl.", show_default=False)]
Jobs = Annotated[int, typer.Option(
    "--jobs", "-j", min=1, help="Worker processes on this machine (each rank under "
    "torchrun has its own).", rich_help_panel="Batch")]
Threads = Annotated[int | None, typer.Option(
    "--threads", min=1, help="Threads per worker (default: the cores / jobs, and / the ranks "
    "on this machine under torchrun).", rich_help_panel="Batch")]
ShardOpt = Annotated[str | None, typer.Option(
    "--shard", help="Take share K of N (0-based, K/N) of the recordings; default from "
    "torchrun (RANK/WORLD_SIZE) or SLURM (array task, task id).", rich_help_panel="Batch")]
BatchForce = Annotated[bool, typer.Option(
    "--force", "-f", help="Redo every recording (also those done and unchanged), and "
    "overwrite outputs that the manifest does not know.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")]


def _settings(kind: str, **kw: Any) -> Any:
    from spkrecon.batch import BatchSettings

    kw["params"] = list(kw.pop("param") or [])
    return BatchSettings(kind=kind, **kw)


class _Bar:
    """One rich progress bar (frames) over the whole batch, with the recordings' counts."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled and os.environ.get("SPKRECON_PROGRESS") != "0"
        self.label = label
        self.counts: dict[str, int] = {}
        self.running = 0
        self.todo = 0
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "method":
            if self.enabled:
                info(data["why"])
            return
        if kind == "plan":
            self.todo = data["todo"]
            self.counts["skipped"] = data["skipped"]
            if self.enabled and data["todo"]:
                self._start(data["frames"])
        elif kind == "start":
            self.running += 1
        elif kind == "frames" and self.bar is not None:
            self.bar.update(self.task, advance=data["n"])
        elif kind == "end":
            status = data["record"]["status"]
            self.counts[status] = self.counts.get(status, 0) + 1
            if status != "failed" or data["record"].get("pid") is not None:
                self.running = max(0, self.running - 1)
        if self.bar is not None:
            self.bar.update(self.task, description=self._text())

    def _text(self) -> str:
        c = self.counts
        parts = [f"{c.get('done', 0)}/{self.todo} done"]
        if c.get("failed"):
            parts.append(f"[red]{c['failed']} failed[/]")
        if c.get("skipped"):
            parts.append(f"{c['skipped']} skipped")
        if self.running:
            parts.append(f"{self.running} running")
        return f"[bold]{self.label}[/] " + ", ".join(parts)

    def _start(self, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("fr"), TaskProgressColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=err_console)
        self.bar.start()
        self.task = self.bar.add_task(self._text(), total=max(total, 1))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _summary(report: Any, status: bool = False) -> None:
    from rich.markup import escape
    from rich.table import Table

    rows = report.records
    if len(rows) > TABLE_ROWS:
        rows = [r for r in rows if r["status"] not in ("done", "skipped")]
    style = {"done": "green", "skipped": "dim", "failed": "red", "interrupted": "yellow",
             "running": "yellow"}
    if rows:
        table = Table(title=f"batch {report.folder}" + ("" if report.whole else
                                                        f" (share {report.shard.label})"))
        for col, just in (("recording", "left"), ("status", "left"), ("frames", "right"),
                          ("s", "right"), ("error", "left")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for r in rows:
            secs = r.get("seconds")
            table.add_row(escape(r["name"]), f"[{style.get(r['status'], '')}]{r['status']}[/]",
                          str(r.get("frames") or 0), "" if secs is None else f"{secs:.2f}",
                          escape(r.get("error") or ""))
        out_console.print(table)
    c = report.counts()
    order = ("done", "skipped", "failed", "interrupted", "running")
    text = ", ".join(f"{c[k]} {k}" for k in order if c.get(k))
    if status:
        out_console.print(f"{len(report.records)} recordings: {text}; {report.frames} frames "
                          f"in {report.seconds:.1f} s of work ({report.method})",
                          highlight=False, soft_wrap=True)
        return
    rate = f" ({report.frames / report.seconds:.1f} frames/s)" if report.seconds > 0 and \
        report.frames else ""
    out_console.print(f"{len(report.records)} recordings: {text}; {report.frames} frames "
                      f"written in {report.seconds:.1f} s{rate} with {report.method}, "
                      f"--jobs {report.jobs}" + (f" x {report.threads} threads"
                                                 if report.threads else ""),
                      highlight=False, soft_wrap=True)


def _run(kind: str, inputs: list[str], output: Path, jobs: int, threads: int | None,
         shard: str | None, force: bool, quiet: bool, as_json: bool, **options: Any) -> None:
    from spkrecon.batch import BatchInterrupted, parse_shard, run_batch, shard_from_env

    settings = _settings(kind, **options)
    where = parse_shard(shard) if shard else shard_from_env()
    lead = where.rank == 0 or where.source != "torchrun"  # torchrun: rank 0 speaks
    label = "video" if kind == "video" else "frames"
    bar = _Bar(not quiet and lead, f"batch {label}" + (f" {where.label}" if where.enabled
                                                        else ""))
    try:
        report = run_batch(inputs, output, settings, jobs=jobs, threads=threads, force=force,
                           shard=where, on_event=bar)
    except BatchInterrupted as exc:
        bar.close()
        if as_json and lead:
            typer.echo(json.dumps(exc.report.to_json(), indent=2, default=str))
        elif not quiet and lead:
            _summary(exc.report)
        raise fail(_escape(str(exc)), exc.exit_code) from None
    finally:
        bar.close()
    if not lead:
        return
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, default=str))
    elif not quiet:
        _summary(report)
    if report.failed:
        raise fail(f"{report.failed} of {len(report.records)} recordings failed (see "
                   f"{output / 'manifest.jsonl'})", EXIT_SOME_FAILED)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.command("video")
@guarded
def video_cmd(
    inputs: Inputs,
    output: OutDir,
    method: Method = "auto", window: Window = None, alpha: Alpha = 0.6, param: Params = None,
    weights: Weights = None, device: Device = None, precision: Precision = None,
    tonemap: Tonemap = "auto", gamma: Gamma = None,
    start: Start = None, end: End = None, stride: Stride = 1,
    fps: Fps = 30.0, crf: Crf = 18, preset: Preset = "veryfast",
    height: Height = 250, width: Width = 400, crop_header: CropHeader = False,
    layout: Layout = "auto", flip: Flip = False,
    jobs: Jobs = 1, threads: Threads = None, shard: ShardOpt = None,
    force: BatchForce = False, quiet: Quiet = False, as_json: AsJson = False,
) -> None:
    """Reconstruct many recordings into OUTPUT/NAME.mp4 each (the options of 'video')."""
    _run("video", inputs, output, jobs, threads, shard, force, quiet, as_json, method=method,
         window=window, alpha=alpha, param=param, weights=weights, device=device,
         precision=precision, tonemap=tonemap, gamma=gamma, start=start, end=end,
         stride=stride, fps=fps, crf=crf, preset=preset, height=height, width=width,
         crop_header=crop_header, layout=layout, flip=flip)


@app.command("frames")
@guarded
def frames_cmd(
    inputs: Inputs,
    output: OutDir,
    fmt: Annotated[str, typer.Option(
        "--format", help="png: a folder OUTPUT/NAME/ of PNG frames; npy: one float32 "
        "(N, H, W) stack OUTPUT/NAME.npy.")] = "png",
    bit_depth: Annotated[int, typer.Option("--bit-depth", help="PNG bit depth: 8 or 16.")] = 8,
    method: Method = "auto", window: Window = None, alpha: Alpha = 0.6, param: Params = None,
    weights: Weights = None, device: Device = None, precision: Precision = None,
    tonemap: Tonemap = "auto", gamma: Gamma = None,
    start: Start = None, end: End = None, stride: Stride = 1,
    height: Height = 250, width: Width = 400, crop_header: CropHeader = False,
    layout: Layout = "auto", flip: Flip = False,
    jobs: Jobs = 1, threads: Threads = None, shard: ShardOpt = None,
    force: BatchForce = False, quiet: Quiet = False, as_json: AsJson = False,
) -> None:
    """Reconstruct many recordings into PNG folders or .npy stacks (the options of 'frames')."""
    from spkrecon.errors import ParameterError

    kind = fmt.lower()
    if kind not in ("png", "npy"):
        raise ParameterError(f"--format {fmt!r} is not png or npy")
    if bit_depth not in (8, 16):
        raise ParameterError(f"PNG bit depth must be 8 or 16, got {bit_depth}")
    _run(kind, inputs, output, jobs, threads, shard, force, quiet, as_json, method=method,
         window=window, alpha=alpha, param=param, weights=weights, device=device,
         precision=precision, tonemap=tonemap, gamma=gamma, start=start, end=end,
         stride=stride, bit_depth=bit_depth, height=height, width=width,
         crop_header=crop_header, layout=layout, flip=flip)


@app.command("status")
@guarded
def status_cmd(
    folder: Annotated[Path, typer.Argument(help="A batch output folder.", show_default=False)],
    as_json: AsJson = False,
) -> None:
    """Where a batch folder stands, from its manifest (every rank's and task's work)."""
    from spkrecon.batch import MANIFEST, BatchReport, Manifest, Shard
    from spkrecon.errors import InputError

    manifest = Manifest(folder)
    if not manifest.path.is_file():
        raise InputError(f"{folder} has no {MANIFEST}", "is it a batch output folder?")
    latest = manifest.latest()
    records = [latest[n] for n in sorted(latest)]
    methods = sorted({r.get("method") or "?" for r in records})
    secs = sum(float(r.get("seconds") or 0) for r in records if r["status"] == "done")
    report = BatchReport(folder, records, Shard(), True, secs, ", ".join(methods))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, default=str))
    else:
        _summary(report, status=True)
    if report.failed:
        raise typer.Exit(EXIT_SOME_FAILED)
