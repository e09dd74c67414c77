"""``spkrecon weights``: list, import and inspect network weights (torch imported on use)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from spkrecon.cli._common import Force, guarded, info, out_console

app = typer.Typer(
    name="weights",
    help="List, import and inspect network weights.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _short_error(error: str, path: Any) -> str:
    if "bare state dict" in error:
        return f"not converted: run 'spkrecon weights import {path}'"
    return "unusable: " + error.split(";")[0].replace(str(path), "").strip()


def _params(n: Any) -> str:
    return f"{n / 1e6:.2f}M" if isinstance(n, int) else "?"


@app.command("list")
@guarded
def list_cmd(
    describe: Annotated[bool, typer.Option(
        "--describe", "-d", help="Also show each file's metadata (training data, iterations, "
        "validation...).")] = False,
    as_json: AsJson = False,
) -> None:
    """Weights files found, in lookup order (the first of each name is the one used)."""
    from spkrecon.models.weights import ENV_VAR, GET_WEIGHTS_HINT, list_weights, search_locations

    entries = list_weights(describe=True)
    locations = [{"location": label, "path": str(path), "exists": path.exists()}
                 for label, path in search_locations()]
    if as_json:
        typer.echo(json.dumps({"locations": locations,
                               "weights": [e.to_dict() for e in entries]}, indent=2))
        return
    if entries:
        width = max(len(e.name) for e in entries)
        for e in entries:
            s = e.summary or {}
            shape = (f"ATSNet widths {'/'.join(map(str, s['config'].get('widths', [])))}"
                     if s.get("arch") == "atsnet" else
                     f"{s.get('variant') or 'custom'} width {s.get('features')} depth "
                     f"{s.get('num_blocks')}")
            what = (f"{shape}, {_params(s.get('parameters'))} parameters, alpha "
                    f"{s.get('alpha')}") if s else _short_error(e.error or "", e.path)
            used = " (used)" if e.active else ""
            out_console.print(f"{e.name:<{width}}  {what}{used}\n{'':<{width}}  "
                              f"[{e.location}] {e.path}", markup=False, highlight=False,
                              soft_wrap=True)
            if describe and s:
                for key, val in s.get("meta", {}).items():
                    if val is not None:
                        out_console.print(f"{'':<{width}}    {key}: {val}", markup=False,
                                          highlight=False, soft_wrap=True)
    else:
        info("no weights found; " + GET_WEIGHTS_HINT)
    info("searched, in order: " + "; ".join(
        f"{loc['location']}{' ($' + ENV_VAR + ')' if loc['location'] == 'env' else ''} "
        f"{loc['path']}" for loc in locations))


@app.command("import")
@guarded
def import_cmd(
    file: Annotated[str, typer.Argument(
        help="The authors' released Spk2ImgNet checkpoint (a state dict, keys 'module.'-"
             "prefixed).")],
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="A name (saved as NAME.pt in the user cache's weights folder) or "
        "a path. Default: the name 'spk2imgnet'.")] = None,
    alpha: Annotated[float, typer.Option(
        "--alpha", help="Conversion rate of the data the network was trained on.")] = 0.6,
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Convert the authors' checkpoint into a spkrecon weights file."""
    from spkrecon.errors import ParameterError
    from spkrecon.models.weights import import_authors_checkpoint

    if not 0 < alpha <= 1:
        raise ParameterError(f"alpha must be in (0, 1], got {alpha}")
    ckpt = import_authors_checkpoint(file, output, force=force, alpha=alpha)
    s = ckpt.summary()
    if as_json:
        typer.echo(json.dumps(s, indent=2))
    else:
        info(f"imported {file} -> {ckpt.path} (Spk2ImgNet {s['variant'] or 'custom'}, "
             f"{_params(s['parameters'])} parameters)")


@app.command("info")
@guarded
def info_cmd(
    file: Annotated[str, typer.Argument(help="A weights file or name.")],
    as_json: AsJson = False,
) -> None:
    """Architecture, alpha and training metadata of a weights file (validated)."""
    from spkrecon.models.weights import (
        additions_suffix,
        build_model,
        load_checkpoint,
        resolve_weights,
    )

    ckpt = load_checkpoint(resolve_weights(file))
    if ckpt.arch == "atsnet":
        from spkrecon.models.atsnet import load_atsnet

        load_atsnet(ckpt.path)  # validates
    else:
        build_model(ckpt)
    s = ckpt.summary()
    if as_json:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    cfg = s["config"]
    heads = [name for name in ("mixture", "motion") if cfg.get(name)]
    model = (f"ATSNet{' + ' + ' + '.join(heads) if heads else ''}, widths "
             f"{', '.join(map(str, cfg.get('widths', [])))}"
             if ckpt.arch == "atsnet" else
             f"Spk2ImgNet {s['variant'] or 'custom'}{additions_suffix(cfg)} (SALI {cfg['sali']}, "
             f"PDA {cfg['pda']}, RE {cfg['re']}), width {cfg['features']}, "
             f"depth {cfg['num_blocks']}")
    lines = [
        f"{'file':<13} {s['path']}",
        f"{'model':<13} {model}",
        f"{'parameters':<13} {s['parameters']:,}",
        f"{'alpha':<13} {s['alpha']}",
    ]
    lines += [f"{k:<13} {v}" for k, v in s["meta"].items() if v is not None]
    out_console.print("\n".join(lines), markup=False, highlight=False)
