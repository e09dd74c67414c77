"""The ``spkrecon`` command line: parses, calls the library, renders, maps errors."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from spkrecon import __version__
from spkrecon.cli._common import (
    STATE,
    Alpha,
    Crf,
    CropHeader,
    Device,
    End,
    Flip,
    Force,
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
    fail,
    given,
    guarded,
    info,
    install_signal_handlers,
    out_console,
    progress,
)
from spkrecon.errors import Terminated

app = typer.Typer(
    name="spkrecon",
    help="Reconstruct images and video from spike-camera (Vidar) recordings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Recording = Annotated[str, typer.Argument(
    help="A .dat, .npy or .npz recording, or 'sample' for the bundled one.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spkrecon {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Reconstruct images and video from spike-camera (Vidar) recordings."""
    STATE["debug"] = debug or bool(os.environ.get("SPKRECON_DEBUG"))


def _open(recording: str, height: int, width: int, crop_header: bool, layout: str, flip: bool):
    from spkrecon.io import open_recording

    return open_recording(recording, height=height, width=width, crop_header=crop_header,
                          layout=layout, flip=flip)  # type: ignore[arg-type]


def _method(name: str, window: int | None, alpha: float, params: list[str] | None,
            weights: str | None, device: str | None, precision: str | None, quiet: bool):
    from spkrecon.methods import build

    extra = {key: val for key, val in (("window", window), ("weights", weights),
                                       ("device", device), ("precision", precision))
             if val is not None}
    method, why = build(name, params or [], alpha=alpha, **extra)
    if why and not quiet:
        info(why)
    return method


def _size_note(src: Any, quiet: bool) -> None:
    """Say so when a .dat's size fits a 416-wide capture too (it would decode silently as
    250x400 whenever its size happens to fit); ``info`` lists every size that fits."""
    fits = getattr(src, "fitting_resolutions", None)
    if quiet or fits is None:
        return
    others = fits()[1:]
    if any(w == 416 for _, w, _ in others):
        info(f"note: read as {src.height}x{src.width}; the size also fits "
             f"{_fits_text(others)}")


def _fits_text(fits: list[tuple[int, int, int]]) -> str:
    text = ", ".join(f"{h}x{w} ({n} frames)" for h, w, n in fits)
    if any(w == 416 for _, w, _ in fits):
        text += "; a 416-wide capture needs --crop-header"
    return text


def _default_output(recording: str, suffix: str) -> Path:
    return Path(Path(recording).stem + suffix)


@app.command("info")
@guarded
def info_cmd(
    recording: Recording,
    rate: Annotated[float, typer.Option("--rate", help="Readout rate in Hz, for durations.")
                    ] = 40000.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    height: Height = 250, width: Width = 400, crop_header: CropHeader = False,
    layout: Layout = "auto", flip: Flip = False, quiet: Quiet = False,
) -> None:
    """Resolution, frame count, duration and firing-rate statistics of a recording."""
    from spkrecon.stats import recording_stats

    src = _open(recording, height, width, crop_header, layout, flip)
    chunks = max(1, -(-src.num_frames // 256))
    stats = recording_stats(
        src, rate, chunk=256,
        wrap=lambda it: progress(it, chunks, "scanning", enabled=not quiet and not as_json,
                                 unit="chunk"))
    stats["path"] = str(recording)
    fits = stats.get("fitting_resolutions", [])
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("recording", stats["path"]),
        ("resolution", f"{stats['height']} x {stats['width']} (H x W)"),
        ("frames", f"{stats['frames']}"),
        ("duration", f"{stats['duration_s'] * 1e3:.2f} ms at {rate:g} Hz"),
        ("mean firing rate", f"{stats['mean_rate']:.4f} spikes/frame"),
        ("per-pixel rate", f"min {stats['pixel_rate_min']:.3f}, p1 {stats['pixel_rate_p1']:.3f}, "
         f"median {stats['pixel_rate_median']:.3f}, p99 {stats['pixel_rate_p99']:.3f}, "
         f"max {stats['pixel_rate_max']:.3f}"),
        ("per-frame rate", f"min {stats['frame_rate_min']:.4f}, max {stats['frame_rate_max']:.4f}"),
        ("silent pixels", f"{stats['silent_pixels']} (never fire)"),
        ("saturated pixels", f"{stats['saturated_pixels']} (fire in every frame)"),
    ]
    if len(fits) > 1:
        rows.insert(2, ("size also fits", _fits_text([tuple(f) for f in fits[1:]])))
    for k, v in rows:
        table.add_row(k, v)
    out_console.print(table)


@app.command()
@guarded
def video(
    recording: Recording,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output .mp4 "
                      "(default: the recording's name with .mp4, here).")] = None,
    method: Method = "auto", window: Window = None, alpha: Alpha = 0.6, param: Params = None,
    weights: Weights = None, device: Device = None, precision: Precision = None,
    tonemap: Tonemap = "auto", gamma: Gamma = None,
    start: Start = None, end: End = None, stride: Stride = 1,
    fps: Fps = 30.0, crf: Crf = 18, preset: Preset = "veryfast",
    height: Height = 250, width: Width = 400, crop_header: CropHeader = False,
    layout: Layout = "auto", flip: Flip = False, force: Force = False, quiet: Quiet = False,
) -> None:
    """Reconstruct a recording into an H.264 MP4 video."""
    from spkrecon.export import VideoWriter
    from spkrecon.pipeline import output_indices, reconstruct
    from spkrecon.tonemap import ToneMapper

    src = _open(recording, height, width, crop_header, layout, flip)
    ToneMapper(tonemap, alpha=alpha, gamma=gamma)  # checks the options before slow work
    # The writer checks the output (exists, folder, name) before any slow model loading.
    with VideoWriter(output or _default_output(recording, ".mp4"), fps=fps, crf=crf,
                     force=force, preset=preset) as writer:
        _size_note(src, quiet)
        rec = _method(method, window, alpha, param, weights, device, precision, quiet)
        indices = output_indices(src, rec, start, end, stride)
        mapper = ToneMapper(tonemap, alpha=rec.alpha, gamma=gamma)  # -p alpha= counts too
        frames = reconstruct(src, rec, indices, mapper)
        for _, image in progress(frames, len(indices), rec.name, enabled=not quiet):
            writer.write(image)
    if not quiet:
        info(f"wrote {writer.path} ({writer.frames_written} frames, {src.width}x{src.height}, "
             f"{fps:g} fps, {rec.name})")


@app.command()
@guarded
def frames(
    ctx: typer.Context,
    recording: Recording,
    output: Annotated[Path, typer.Option("--output", "-o", help="A folder for PNG frames, or "
                      "a .npy file for one float32 (N, H, W) stack.")],
    bit_depth: Annotated[int, typer.Option("--bit-depth", help="PNG bit depth: 8 or 16.")] = 8,
    method: Method = "auto", window: Window = None, alpha: Alpha = 0.6, param: Params = None,
    weights: Weights = None, device: Device = None, precision: Precision = None,
    tonemap: Tonemap = "auto", gamma: Gamma = None,
    start: Start = None, end: End = None, stride: Stride = 1,
    height: Height = 250, width: Width = 400, crop_header: CropHeader = False,
    layout: Layout = "auto", flip: Flip = False, force: Force = False, quiet: Quiet = False,
) -> None:
    """Reconstruct frames into a folder of PNGs (8 or 16 bit) or a .npy stack."""
    from spkrecon.errors import ParameterError
    from spkrecon.export import NpyStackWriter, PngFolderWriter
    from spkrecon.export.frames import check_frames_output, frames_output_kind
    from spkrecon.pipeline import output_indices, reconstruct
    from spkrecon.tonemap import ToneMapper

    if frames_output_kind(output) == "npy" and given(ctx, "bit_depth"):
        raise ParameterError("--bit-depth applies to PNG frames, not to a .npy stack",
                             "a .npy stack is float32; drop --bit-depth or write a folder")
    src = _open(recording, height, width, crop_header, layout, flip)
    ToneMapper(tonemap, alpha=alpha, gamma=gamma)  # checks the options before slow work
    output = check_frames_output(output, force)  # before any slow model loading
    _size_note(src, quiet)
    rec = _method(method, window, alpha, param, weights, device, precision, quiet)
    indices = output_indices(src, rec, start, end, stride)
    mapper = ToneMapper(tonemap, alpha=rec.alpha, gamma=gamma)  # -p alpha= counts too
    meta: dict[str, Any] = {"recording": str(recording), "method": rec.name,
                            "params": rec.params(), "tonemap": tonemap, "gamma": mapper.gamma,
                            "indices": [indices.start, indices.stop, indices.step]}
    writer = (NpyStackWriter(output, len(indices), src.height, src.width, force=force)
              if frames_output_kind(output) == "npy"
              else PngFolderWriter(output, bit_depth=bit_depth, force=force, metadata=meta))
    with writer:
        for idx, image in progress(reconstruct(src, rec, indices, mapper), len(indices),
                                   rec.name, enabled=not quiet):
            writer.write(idx, image)
    if not quiet:
        info(f"wrote {len(indices)} frames to {output} ({rec.name})")


@app.command()
@guarded
def methods(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """List the reconstruction methods and their parameters."""
    import inspect

    from spkrecon.methods import available, get_class
    from spkrecon.methods.params import describe_type, parameter_types

    rows = []
    for name in available():
        try:
            cls = get_class(name)
        except ImportError as exc:  # a method whose optional dependency is missing
            rows.append({"name": name, "summary": f"unavailable: {exc}", "params": {}})
            continue
        params: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.default is not p.empty:
                    params[p.name] = p.default
        declared = parameter_types(cls)
        rows.append({"name": name, "summary": cls.summary, "params": params,
                     "types": {k: describe_type(declared.get(k, Any)) for k in params}})
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title="Reconstruction methods (--method NAME; 'auto' picks the best "
                  "available)")
    table.add_column("name", style="bold cyan")
    table.add_column("what it does")
    table.add_column("parameters (defaults)")
    for r in rows:
        table.add_row(r["name"], r["summary"],
                      ", ".join(f"{k}={v}" for k, v in r["params"].items()))
    out_console.print(table)


# Commands that live in their own modules (which import nothing heavy at module level).
_EXTERNAL: list[tuple[str, str, str]] = [
    # (kind, name, "module:attr"); kind "command" or "group"
    ("command", "score", "spkrecon.cli.score:score"),
    ("command", "compare", "spkrecon.cli.score:compare"),
    ("command", "simulate", "spkrecon.cli.simulate:simulate"),
    ("group", "dataset", "spkrecon.cli.simulate:dataset_app"),
    ("group", "weights", "spkrecon.cli.weights:app"),
    ("command", "train", "spkrecon.cli.train:train"),
    ("group", "batch", "spkrecon.cli.batch:app"),
]


def _mount() -> None:
    for kind, name, target in _EXTERNAL:
        module, attr = target.split(":")
        obj = getattr(importlib.import_module(module), attr)
        if kind == "group":
            app.add_typer(obj, name=name)
        else:
            app.command(name)(guarded(obj))


_mount()


def main() -> None:
    """Console-script entry point: usage errors are one line too."""
    usage_error = typer.BadParameter.__mro__[1]  # typer's (vendored) click UsageError
    install_signal_handlers()
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was shown
            raise SystemExit(0) from None
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        err = fail(f"{_markup_escape(exc.format_message())}{hint}", exc.exit_code)
        raise SystemExit(err.exit_code) from None
    except (typer.Abort, KeyboardInterrupt) as exc:
        cause = exc if isinstance(exc, Terminated) else exc.__cause__ or exc.__context__
        code = cause.exit_code if isinstance(cause, Terminated) else 130
        raise SystemExit(fail(str(cause) if isinstance(cause, Terminated) else "interrupted",
                              code).exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def _markup_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
