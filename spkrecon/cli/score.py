"""``spkrecon score`` and ``spkrecon compare``: plain functions the app mounts as commands.

Heavy modules (torch, pyiqa, the methods) are imported inside the functions. JSON goes to
stdout alone; tables go to stdout (to stderr with ``--json``), progress bars to stderr.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from spkrecon.cli._common import (
    Alpha,
    CropHeader,
    Device,
    Flip,
    Force,
    Height,
    Layout,
    Quiet,
    Stride,
    Weights,
    Width,
    err_console,
    given,
    info,
    out_console,
)

Metrics = Annotated[str | None, typer.Option(
    "--metrics", help="Comma-separated metrics: psnr, ssim, niqe or any pyiqa metric "
    "(brisque, piqe, ...). Default: psnr,ssim,niqe where ground truth exists, else niqe.",
    rich_help_panel="Scoring")]
BatchSize = Annotated[int | None, typer.Option(
    "--batch-size", min=1, help="Frames scored at once by pyiqa metrics (default: 4 on the "
    "CPU, 32 on a GPU).", rich_help_panel="Scoring")]
KeyFrames = Annotated[list[int] | None, typer.Option(
    "--key-frame", "-k", min=1, help="Key frame to reconstruct, 1-based (repeatable). "
    "Default: key_idN in the file name, else 151.", rich_help_panel="Frames")]
ToneOpt = Annotated[str | None, typer.Option(
    "--tonemap", help="alpha (divide by alpha and clip), auto or linear. Default: alpha "
    "with ground truth (simulated data), auto without (real recordings).",
    rich_help_panel="Display")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", help="Method parameter METHOD.KEY=VALUE, or KEY=VALUE for every method "
    "that takes KEY (repeatable), e.g. tfp.window=21.", rich_help_panel="Method")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")]
CsvOut = Annotated[Path | None, typer.Option("--csv", help="Also write the results as CSV.")]

_PER_FRAME_ROWS = 20


class _Bars:
    """A :class:`spkrecon.compare.ProgressHook` drawing rich bars on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and os.environ.get("SPKRECON_PROGRESS") != "0"
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Bars:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=err_console)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._finish()
            self._progress.__exit__(*exc)

    def start(self, description: str, total: int | None) -> None:
        if self._progress is not None:
            self._finish()
            self._task = self._progress.add_task(description, total=total)

    def _finish(self) -> None:
        if self._task is not None:
            done = self._progress.tasks[self._task].completed
            self._progress.update(self._task, total=done, completed=done)
            self._progress.stop_task(self._task)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=n)


def _metric_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [m.strip().lower() for m in text.split(",") if m.strip()]
    if not items:
        from spkrecon.errors import ParameterError

        raise ParameterError("--metrics is empty")
    return items


def _open_options(height: int, width: int, crop_header: bool, layout: str,
                  flip: bool) -> dict[str, Any]:
    return {"height": height, "width": width, "crop_header": crop_header, "layout": layout,
            "flip": flip}


#: ``score``'s options that only act on a reconstruction (with ``--method``).
_METHOD_ONLY = ("param", "weights", "key_frame", "stride", "alpha", "tonemap", "height",
                "width", "crop_header", "layout", "flip")


def score(
    ctx: typer.Context,
    frames: Annotated[str, typer.Argument(
        help="Reconstructed frames: a folder of images, a .npy stack (N, H, W) or one image; "
        "or a recording (.dat/.npz/.npy, 'sample') with --method.")],
    gt: Annotated[Path | None, typer.Option(
        "--gt", "-g", help="Ground truth: an image, a folder of images or a .npy stack.")
    ] = None,
    method: Annotated[str | None, typer.Option(
        "--method", "-m", help="Reconstruct FRAMES (a recording) with this method first.",
        rich_help_panel="Method")] = None,
    metrics: Metrics = None,
    key_frame: Annotated[list[int] | None, typer.Option(
        "--key-frame", "-k", min=1, help="With --method: frame(s) to reconstruct, 1-based "
        "(repeatable). Default: key_idN in the recording's or ground truth's name when --gt "
        "is a single image, else every frame with a full window.",
        rich_help_panel="Frames")] = None,
    stride: Stride = 1,
    param: ParamOpt = None, weights: Weights = None, device: Device = None,
    alpha: Alpha = 0.6, tonemap: ToneOpt = None,
    batch_size: BatchSize = None,
    as_json: AsJson = False, csv_out: CsvOut = None, force: Force = False,
    quiet: Quiet = False,
    height: Height = 250, width: Width = 400, crop_header: CropHeader = False,
    layout: Layout = "auto", flip: Flip = False,
) -> None:
    """Score frames: NIQE, and PSNR/SSIM against ground truth; per frame and mean."""
    from spkrecon.errors import ParameterError
    from spkrecon.export.atomic import check_output
    from spkrecon.scoring import (
        build_metrics,
        default_metrics,
        describe_method,
        load_frames,
        parse_key_frame,
        parse_params,
        reconstruct_frames,
        score_frames,
        tonemap_mode,
    )

    if csv_out is not None:
        check_output(csv_out, force)
    truth = load_frames(gt) if gt is not None else None
    names = _metric_list(metrics) or default_metrics(truth is not None)
    built = build_metrics(names, device)  # fails fast, before any reconstruction
    method_info = None
    with _Bars(not quiet) as bars:
        if method is not None:
            params = parse_params(param or [], [method.lower()])[method.lower()] \
                if method.lower() != "auto" else _plain_params(param)
            params.setdefault("alpha", alpha)
            keys = [k - 1 for k in key_frame] if key_frame else None
            if keys is None and truth is not None and len(truth) == 1:
                named = parse_key_frame(frames) or parse_key_frame(gt or "")
                keys = [named - 1] if named is not None else None
            mode = tonemap_mode(truth is not None, tonemap)
            bars.start(f"reconstructing ({method})", len(keys) if keys is not None else None)
            recon = reconstruct_frames(frames, method, params, keys, stride, mode, alpha,
                                       weights, device, bars.advance,
                                       _open_options(height, width, crop_header, layout, flip))
            method_info = describe_method(method, params, mode)
        else:
            named = [f"--{k.replace('_', '-')}" for k in _METHOD_ONLY if given(ctx, k)]
            if named:
                raise ParameterError(f"options that need --method: {', '.join(named)} "
                                     "(without it FRAMES are scored as they are)",
                                     "add --method NAME to reconstruct a recording first")
            recon = load_frames(frames)
        bars.start("scoring", len(recon) * len(built))
        report = score_frames(recon, truth, built, device, batch_size, bars.advance)
    report.method = method_info
    if csv_out is not None:
        from spkrecon.compare import write_text

        write_text(csv_out, _score_csv(report), force)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    _print_score(report, err_console if as_json else out_console)
    if not quiet:
        from rich.markup import escape

        for note in report.notes:
            info(f"[yellow]note:[/] {escape(note)}")
        if csv_out is not None:
            info(f"wrote {csv_out}")


def _plain_params(items: list[str] | None) -> dict[str, Any]:
    from spkrecon.cli._common import parse_params

    return parse_params(items)


def _score_csv(report: Any) -> str:
    import csv
    import io
    import math

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "frame", "reference", *report.metrics])

    def fmt(v: float) -> str:
        return "" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.6g}")

    for f in report.frames:
        w.writerow([f.name, "" if f.index is None else f.index + 1, f.reference or "",
                    *(fmt(f.scores[m]) for m in report.metrics)])
    w.writerow(["mean", "", "", *(fmt(report.mean[m]) for m in report.metrics)])
    return buf.getvalue()


def _print_score(report: Any, console: Any) -> None:
    from rich.table import Table

    from spkrecon.compare import LABELS
    from spkrecon.scoring import format_score

    title = Path(report.source).name
    if report.reference:
        title += f" vs {Path(report.reference).name}"
    table = Table(title=title)
    table.add_column("frame")
    for m in report.metrics:
        table.add_column(LABELS.get(m, m.upper()), justify="right")
    rows = report.frames
    if len(rows) > _PER_FRAME_ROWS:
        rows = []
    for f in rows:
        table.add_row(f.name, *(format_score(m, f.scores[m]) for m in report.metrics))
    table.add_section()
    table.add_row(f"mean of {len(report.frames)}",
                  *(format_score(m, report.mean[m]) for m in report.metrics), style="bold")
    console.print(table)
    if len(report.frames) > _PER_FRAME_ROWS:
        console.print("per-frame scores: use --json or --csv", style="dim")


def compare(
    inputs: Annotated[list[str], typer.Argument(
        help="Recordings (.dat/.npz/.npy) or dataset folders of X.dat + X.png pairs; an "
        "image beside a recording with the same name is its ground truth.")],
    methods: Annotated[str, typer.Option(
        "--methods", help="'all' (every registered method that can run; the others are "
        "reported as skipped) or a comma list such as tfp,tfi.",
        rich_help_panel="Method")] = "all",
    key_frame: KeyFrames = None,
    metrics: Metrics = None,
    param: ParamOpt = None, weights: Weights = None, device: Device = None,
    tonemap: ToneOpt = None, batch_size: BatchSize = None,
    grid: Annotated[Path | None, typer.Option(
        "--grid", help="Write a labelled side-by-side image grid (PNG).",
        rich_help_panel="Output")] = None,
    crop: Annotated[str | None, typer.Option(
        "--crop", help="x,y,w,h in image pixels: boxed on every tile of --grid and shown "
        "enlarged under it.", rich_help_panel="Output")] = None,
    tile_width: Annotated[int, typer.Option(
        "--tile-width", min=64, help="Width of each --grid tile in pixels.",
        rich_help_panel="Output")] = 320,
    as_json: AsJson = False, csv_out: CsvOut = None,
    markdown: Annotated[Path | None, typer.Option(
        "--markdown", help="Also write the tables as Markdown.", rich_help_panel="Output")
    ] = None,
    force: Force = False, quiet: Quiet = False,
    height: Height = 250, width: Width = 400, crop_header: CropHeader = False,
    layout: Layout = "auto", flip: Flip = False,
) -> None:
    """Run methods on recordings at their key frame; tables, JSON/CSV and an image grid."""
    from spkrecon.compare import (
        find_recordings,
        parse_crop,
        render_grid,
        resolve_methods,
        run_compare,
        write_outputs,
    )
    from spkrecon.errors import ParameterError
    from spkrecon.export.atomic import check_outputs
    from spkrecon.scoring import parse_params

    check_outputs([out for out in (grid, csv_out, markdown) if out is not None], force)
    if crop is not None and grid is None:
        raise ParameterError("--crop needs --grid")
    box = parse_crop(crop)
    names, explicit = resolve_methods(methods)
    specs = find_recordings(inputs, [k - 1 for k in key_frame] if key_frame else None)
    params = parse_params(param or [], names)
    with _Bars(not quiet) as bars:
        result = run_compare(specs, names, explicit, params, weights, device, tonemap,
                             _metric_list(metrics), batch_size, keep_images=grid is not None,
                             progress=bars,
                             open_options=_open_options(height, width, crop_header, layout,
                                                        flip))
    if not result.methods:
        raise ParameterError("no method could run: " + "; ".join(
            f"{m}: {why}" for m, why in result.skipped.items()))
    outputs: dict[Path, Any] = {}
    if grid is not None:
        outputs[grid] = render_grid(result, box, tile_width)
    if csv_out is not None:
        outputs[csv_out] = result.to_csv()
    if markdown is not None:
        outputs[markdown] = result.to_markdown()
    written = write_outputs(outputs, force)  # all of them, or none
    if as_json:
        typer.echo(result.to_json())
    console = err_console if as_json else out_console
    for table in result.tables():
        console.print(table)
    from rich.markup import escape

    for m, why in result.skipped.items():
        err_console.print(f"[yellow]skipped {m}:[/] {escape(why)}", highlight=False,
                          soft_wrap=True, markup=True)
    if not quiet:
        for p in written:
            info(f"wrote {p}")
