"""What every command shares: error mapping, consoles, progress bars, option types."""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from spkrecon.errors import SpkreconError, Terminated

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)
F = TypeVar("F", bound=Callable[..., Any])

STATE = {"debug": bool(os.environ.get("SPKRECON_DEBUG"))}


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr (one line, whatever the message holds); return the
    Exit to raise."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()] or ["failed"]
    err_console.print(f"[bold red]error:[/] {lines[0]}", markup=True, highlight=False,
                      soft_wrap=True)
    return typer.Exit(code)


def _interrupted(exc: KeyboardInterrupt) -> typer.Exit:
    if isinstance(exc, Terminated):
        return fail(f"{exc}; unfinished output was removed", exc.exit_code)
    return fail("interrupted; unfinished output was removed", 130)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C (partial outputs are removed on the way) and
    exit 143 / 129. A second signal during that clean-up is ignored."""

    ours = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]

    def handler(signum: int, _frame: Any) -> None:
        for sig in (*ours, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated(signum)

    for sig in ours:
        signal.signal(sig, handler)


_PARTIAL = re.compile(r"\.(?P<stem>.+)\.partial-\d+(?P<suffix>\.[^./]*)?$")


def _public_name(filename: Any) -> str:
    """A file name with spkrecon's hidden ``.NAME.partial-PID`` replaced by ``NAME``."""
    p = Path(os.fsdecode(filename))
    m = _PARTIAL.match(p.name)
    return str(p.with_name(m["stem"] + (m["suffix"] or ""))) if m else str(p)


def guarded(fn: F) -> F:
    """Turn library errors into one line and an exit code (a traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except SpkreconError as exc:
            if STATE["debug"]:
                traceback.print_exc()
            raise fail(_escape(str(exc)), exc.exit_code) from None
        except KeyboardInterrupt as exc:
            raise _interrupted(exc) from None
        except MemoryError:
            raise fail("out of memory; try a smaller frame range (--start/--end) or, for a "
                       "network, -p batch_size=1", 1) from None
        except OSError as exc:
            if STATE["debug"]:
                traceback.print_exc()
            name = getattr(exc, "filename", None)
            if name and _PARTIAL.match(Path(os.fsdecode(name)).name):  # writing an output
                from spkrecon.export.atomic import write_error

                raise fail(_escape(str(write_error(_public_name(name), exc))), 3) from None
            where = f" ({_public_name(name)})" if name else ""
            raise fail(_escape(f"{exc.strerror or exc}{where}"), 1) from None
        except Exception as exc:  # noqa: BLE001 - last line of defence
            if STATE["debug"]:
                raise
            raise fail(_escape(f"internal error: {type(exc).__name__}: {exc}") +
                       " (run again with --debug for the traceback and report it)", 70) from None

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def info(message: str) -> None:
    """A status line on stderr (stdout stays clean for --json)."""
    err_console.print(message, markup=True, highlight=False, soft_wrap=True)


def progress(items: Iterable[Any], total: int, label: str, enabled: bool = True,
             unit: str = "fr") -> Iterator[Any]:
    """Iterate ``items`` while showing a rich progress bar on stderr."""
    if not enabled or os.environ.get("SPKRECON_PROGRESS") == "0":
        yield from items
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False,
                  disable=not enabled) as bar:
        task = bar.add_task(label, total=total, rate="")
        import time

        t0 = time.perf_counter()
        done = 0
        for item in items:
            yield item
            done += 1
            dt = time.perf_counter() - t0
            bar.update(task, advance=1, rate=f"{done / dt:.0f} {unit}/s" if dt > 0 else "")


# -- shared option types -----------------------------------------------------------------
Height = Annotated[int, typer.Option("--height", help="Frame height of a .dat recording.",
                                     rich_help_panel="Recording")]
Width = Annotated[int, typer.Option("--width", help="Frame width of a .dat recording.",
                                    rich_help_panel="Recording")]
CropHeader = Annotated[bool, typer.Option(
    "--crop-header", help="Drop the 16 header columns on the right of 416-wide captures.",
    rich_help_panel="Recording")]
Layout = Annotated[str, typer.Option(
    "--layout", help="Axis order of .npy/.npz input: auto, thw or hwt.",
    rich_help_panel="Recording")]
Flip = Annotated[bool, typer.Option("--flip", help="Flip .npy/.npz frames vertically.",
                                    rich_help_panel="Recording")]
Start = Annotated[int | None, typer.Option(
    "--start", help="First frame (0-based; negative counts from the end).",
    rich_help_panel="Frames")]
End = Annotated[int | None, typer.Option(
    "--end", help="Stop before this frame (exclusive; negative counts from the end).",
    rich_help_panel="Frames")]
Stride = Annotated[int, typer.Option("--stride", min=1, help="Reconstruct every N-th frame.",
                                     rich_help_panel="Frames")]
Method = Annotated[str, typer.Option(
    "--method", "-m", help="Reconstruction method (see 'spkrecon methods'); auto picks the "
    "best available.", rich_help_panel="Method")]
Window = Annotated[int | None, typer.Option(
    "--window", "-w", help="Temporal window in frames (methods that take one).",
    rich_help_panel="Method")]
Alpha = Annotated[float, typer.Option(
    "--alpha", help="Conversion rate: spikes per readout at full intensity (0.6 in "
    "simulated data).", rich_help_panel="Method")]
Params = Annotated[list[str] | None, typer.Option(
    "--param", "-p", help="Method parameter KEY=VALUE or METHOD.KEY=VALUE (repeatable; wins "
    "over --window/--alpha...), checked against the method's parameter types.",
    rich_help_panel="Method")]
Weights = Annotated[str | None, typer.Option(
    "--weights", help="Network weights: a file or a name (see 'spkrecon weights list'); "
    "with --method auto, the network they are for runs.",
    rich_help_panel="Method")]
Device = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu or cuda[:N] (network methods).", rich_help_panel="Method")]
Precision = Annotated[str | None, typer.Option(
    "--precision", help="auto, fp32, bf16 or fp16 (network methods; auto, atsnet's "
    "default: bf16 on a CPU with AMX, else fp32).", rich_help_panel="Method")]
Tonemap = Annotated[str, typer.Option(
    "--tonemap", help="auto (robust auto-exposure, real recordings), alpha (divide by alpha: "
    "simulated data) or linear.", rich_help_panel="Display")]
Gamma = Annotated[float | None, typer.Option(
    "--gamma", help="Display gamma (default 1/1.5 with auto, 1 otherwise).",
    rich_help_panel="Display")]
Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or status lines.")]
Fps = Annotated[float, typer.Option("--fps", help="Playback frames per second.")]
Crf = Annotated[int, typer.Option("--crf", help="H.264 quality: 0 lossless .. 51 worst.")]
Preset = Annotated[str, typer.Option("--preset", help="x264 speed/size preset "
                                     "(ultrafast .. veryslow).")]


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``--param`` items for ``--method auto``: ``["window=21", "auto.alpha=0.5"]`` ->
    ``{"window": "21", "alpha": "0.5"}``, values as given (``spkrecon.methods.create``
    converts them to the declared types)."""
    from spkrecon.errors import ParameterError
    from spkrecon.methods.params import split_item

    out: dict[str, Any] = {}
    for item in items or []:
        method, key, raw = split_item(item)
        if method not in (None, "auto"):
            raise ParameterError(f"--param '{item}' names method '{method}', which is not "
                                 "being run (auto)", "use KEY=VALUE or auto.KEY=VALUE")
        out[key] = raw
    return out


def stdout_is_clean() -> bool:
    return not sys.stdout.isatty()


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` (its parameter name) was given on the command line."""
    # Compared by name: typer may ship its own copy of click's ParameterSource.
    return getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"
