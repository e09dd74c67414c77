"""Compare reconstruction methods on recordings: run, score, tabulate, draw a grid.

A recording is a ``.dat``/``.npz``/``.npy`` spike file; a folder stands for every recording
in it. Ground truth is the image beside a recording with the same stem (``X.dat`` +
``X.png``). The key frame (0-based here, 1-based on the command line) comes from the caller,
else from ``key_idN`` in the file name, else 151 (1-based). A ground-truth image shows the
frame its name states (``key_idN``), else the first key frame; other key frames of that
recording get no-reference metrics only.

Tone mapping: ``alpha`` (divide by 0.6 and clip, the convention of the published tables)
where ground truth exists, ``auto`` for real recordings, unless the caller says otherwise.
Tables follow the layout of Tables 2 and 3 of Zhao et al. (Spk2ImgNet, CVPR 2021): methods
as columns, recordings as rows, the mean last.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from spkrecon.errors import (
    DeviceError,
    InputError,
    ParameterError,
    SpkreconError,
    WeightsError,
)
from spkrecon.scoring import (
    DEFAULT_KEY_FRAME,
    IMAGE_SUFFIXES,
    format_score,
    json_number,
    load_image,
    mean_score,
    natural_key,
    parse_key_frame,
    tonemap_mode,
)

RECORDING_SUFFIXES = (".dat", ".npz", ".npy")
#: Errors that make ``--methods all`` skip a method instead of stopping.
SKIPPABLE = (WeightsError, DeviceError, ImportError)
LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "niqe": "NIQE"}
#: Colours of the crop box on grid tiles (outer and inner line).
BOX_OUTER, BOX_INNER = (0, 0, 0), (255, 255, 255)


class ProgressHook(Protocol):
    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, n: int = 1) -> None: ...


# -- inputs ---------------------------------------------------------------------------
@dataclass
class RecordingSpec:
    """One recording to reconstruct at ``key_frames`` (0-based); ``truth_frame`` is the
    frame the ground-truth image ``truth`` shows."""

    path: Path
    name: str
    key_frames: list[int]
    truth: Path | None = None
    truth_frame: int | None = None


def _truth_for(rec: Path) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for cand in (rec.with_suffix(suffix), rec.with_suffix(suffix.upper())):
            if cand.is_file():
                return cand
    return None


def _display_name(path: Path) -> str:
    stem = path.stem
    for suffix in ("_key_id", "-key_id", "key_id"):
        i = stem.lower().find(suffix)
        if i > 0:
            return stem[:i]
    return stem


def find_recordings(paths: Sequence[str | os.PathLike],
                    key_frames: Sequence[int] | None = None) -> list[RecordingSpec]:
    """Recordings (with ground truth where an image sits beside them) from files/folders.

    ``key_frames`` are 0-based; by default each recording's ``key_idN`` or frame 151
    (1-based). Raises :class:`InputError` for missing paths or folders without recordings.
    """
    from spkrecon.io import SAMPLE_NAME, sample_path

    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if str(raw) == SAMPLE_NAME and not p.exists():
            files.append(sample_path())
            continue
        if not p.exists():
            raise InputError(f"{p} does not exist", "give .dat recordings or dataset folders")
        if p.is_dir():
            found = sorted((f for f in p.iterdir() if f.is_file()
                            and f.suffix.lower() in RECORDING_SUFFIXES),
                           key=lambda f: natural_key(f.name))
            if not found:
                raise InputError(f"{p} holds no recordings ({', '.join(RECORDING_SUFFIXES)})")
            files.extend(found)
        elif p.suffix.lower() in RECORDING_SUFFIXES:
            files.append(p)
        else:
            raise InputError(f"{p} is not a recording ({', '.join(RECORDING_SUFFIXES)}) "
                             "or a folder of them")
    specs = []
    seen: dict[str, int] = {}
    for f in files:
        named = parse_key_frame(f)
        keys = list(key_frames) if key_frames else [
            (named if named is not None else DEFAULT_KEY_FRAME) - 1]
        if any(k < 0 for k in keys):
            raise ParameterError("key frames are 1-based: the first frame is 1")
        truth = _truth_for(f)
        name = _display_name(f)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} ({seen[name]})"
        specs.append(RecordingSpec(f, name, sorted(dict.fromkeys(keys)), truth,
                                   None if truth is None else
                                   (named - 1 if named is not None else keys[0])))
    return specs


def resolve_methods(spec: str | Sequence[str]) -> tuple[list[str], bool]:
    """``"all"`` or ``"tfp,tfi"`` -> (registered names, explicitly named?)."""
    from spkrecon.methods import available, get_class

    items = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if not items:
        raise ParameterError("no methods given", "use --methods all or e.g. --methods tfp,tfi")
    if items == ["all"]:
        return available(), False
    if "all" in items:
        raise ParameterError("'all' cannot be combined with method names")
    if "auto" in items:
        raise ParameterError("compare runs named methods, not 'auto'",
                             "use --methods all, or name them, e.g. --methods tfp,spk2imgnet-lite")
    for m in items:
        get_class(m)  # UnknownNameError with a suggestion
    return list(dict.fromkeys(items)), True


# -- results --------------------------------------------------------------------------
@dataclass
class Row:
    """One table row: a recording at one key frame (0-based)."""

    recording: str
    key_frame: int
    path: str
    tonemap: str
    truth: np.ndarray | None = None
    truth_path: str | None = None

    def label(self, with_frame: bool) -> str:
        return f"{self.recording} #{self.key_frame + 1}" if with_frame else self.recording


@dataclass
class Cell:
    """A method's result on a row: scores, reconstruction seconds (a recording's time shared
    equally among its key frames) and the image."""

    scores: dict[str, float]
    seconds: float
    image: np.ndarray | None = None


@dataclass
class CompareResult:
    rows: list[Row]
    methods: list[str]
    metrics: list[str]
    cells: dict[tuple[int, str], Cell]
    skipped: dict[str, str] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str | None = None
    lower_better: dict[str, bool] = field(default_factory=dict)

    @property
    def several_frames(self) -> bool:
        names = [r.recording for r in self.rows]
        return len(names) != len(set(names))

    def value(self, row: int, method: str, metric: str) -> float:
        cell = self.cells.get((row, method))
        return math.nan if cell is None else cell.scores.get(metric, math.nan)

    def mean(self, method: str, metric: str) -> float:
        """Mean over the rows that have the metric (PSNR averaged in dB)."""
        return mean_score(self.value(i, method, metric) for i in range(len(self.rows)))

    def metrics_present(self) -> list[str]:
        return [m for m in self.metrics
                if any(not math.isnan(self.value(i, meth, m))
                       for i in range(len(self.rows)) for meth in self.methods)]

    # -- serialisations ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready results; frames 1-based, ``inf`` as ``"inf"``, missing as ``null``."""
        return {
            "metrics": self.metrics,
            "methods": self.methods,
            "skipped": self.skipped,
            "params": self.params,
            "device": self.device,
            "data_range": 1.0,
            "recordings": [
                {"name": r.recording, "path": r.path, "frame": r.key_frame + 1,
                 "ground_truth": r.truth_path, "tonemap": r.tonemap} for r in self.rows],
            "results": [
                {"recording": r.recording, "frame": r.key_frame + 1, "method": m,
                 **{k: json_number(self.value(i, m, k)) for k in self.metrics},
                 "seconds": round(self.cells[(i, m)].seconds, 4)}
                for i, r in enumerate(self.rows) for m in self.methods
                if (i, m) in self.cells],
            "mean": {m: {k: json_number(self.mean(m, k)) for k in self.metrics}
                     for m in self.methods},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_csv(self) -> str:
        """One line per (recording, frame, method), then one ``mean`` line per method."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["recording", "frame", "method", *self.metrics, "seconds"])

        def fmt(v: float) -> str:
            return "" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.6g}")

        for i, r in enumerate(self.rows):
            for m in self.methods:
                if (i, m) in self.cells:
                    w.writerow([r.recording, r.key_frame + 1, m,
                                *(fmt(self.value(i, m, k)) for k in self.metrics),
                                f"{self.cells[(i, m)].seconds:.4f}"])
        for m in self.methods:
            w.writerow(["mean", "", m, *(fmt(self.mean(m, k)) for k in self.metrics), ""])
        return buf.getvalue()

    def _table_rows(self, metric: str) -> tuple[list[str], list[list[str]], list[str]]:
        """(header, body rows, mean row) of one metric's table; best value per row in bold
        as ``**x**`` markers (stripped or rendered by the caller)."""
        lower = self.lower_better.get(metric, False)
        with_frame = self.several_frames
        header = ["Recording", *self.methods]
        body = []
        for i, r in enumerate(self.rows):
            vals = [self.value(i, m, metric) for m in self.methods]
            if all(math.isnan(v) for v in vals):
                continue
            body.append([r.label(with_frame), *_mark_best(metric, vals, lower)])
        means = [self.mean(m, metric) for m in self.methods]
        return header, body, ["Mean", *_mark_best(metric, means, lower)]

    def tables(self) -> list[Any]:
        """Rich tables, one per metric present."""
        from rich.table import Table

        out = []
        for metric in self.metrics_present():
            header, body, mean = self._table_rows(metric)
            arrow = "↓" if self.lower_better.get(metric) else "↑"
            t = Table(title=f"{LABELS.get(metric, metric.upper())} {arrow}")
            t.add_column(header[0])
            for h in header[1:]:
                t.add_column(h, justify="right")
            for row in body:
                t.add_row(*(_rich(c) for c in row))
            t.add_section()
            t.add_row(*(_rich(c) for c in mean), style="bold")
            out.append(t)
        return out

    def to_markdown(self) -> str:
        """GitHub markdown tables, one per metric present."""
        parts = []
        for metric in self.metrics_present():
            header, body, mean = self._table_rows(metric)
            arrow = "lower is better" if self.lower_better.get(metric) else "higher is better"
            lines = [f"**{LABELS.get(metric, metric.upper())}** ({arrow})", "",
                     "| " + " | ".join(header) + " |",
                     "|" + "---|" + "---:|" * (len(header) - 1)]
            for row in [*body, [f"**{mean[0]}**", *mean[1:]]]:
                lines.append("| " + " | ".join(row) + " |")
            parts.append("\n".join(lines))
        return "\n\n".join(parts) + "\n"


def _mark_best(metric: str, values: list[float], lower: bool) -> list[str]:
    finite = [v for v in values if not math.isnan(v)]
    best = (min(finite) if lower else max(finite)) if len(finite) > 1 else None
    return [f"**{format_score(metric, v)}**" if best is not None and v == best
            else format_score(metric, v) for v in values]


def _rich(cell: str) -> str:
    return f"[bold]{cell[2:-2]}[/bold]" if cell.startswith("**") else cell


# -- running ----------------------------------------------------------------------------
def run_compare(specs: Sequence[RecordingSpec], methods: Sequence[str], explicit: bool = False,
                params: dict[str, dict[str, Any]] | None = None, weights: str | None = None,
                device: str | None = None, tonemap: str | None = None,
                metrics: Sequence[str] | None = None, batch_size: int | None = None,
                keep_images: bool = True, progress: ProgressHook | None = None,
                open_options: dict[str, Any] | None = None) -> CompareResult:
    """Run ``methods`` on every recording's key frames and score the results.

    With ``explicit`` False (``--methods all``) a method that cannot run (missing weights,
    device or dependency) is recorded in ``skipped``; with ``explicit`` True its error is
    raised. ``metrics`` defaults to PSNR/SSIM (rows with ground truth) and NIQE.
    ``open_options`` go to :func:`spkrecon.io.open_recording`.
    """
    from spkrecon.io import open_recording
    from spkrecon.metrics import get_metric
    from spkrecon.pipeline import reconstruct
    from spkrecon.scoring import build_method
    from spkrecon.tonemap import ToneMapper

    if not specs:
        raise InputError("no recordings to compare")
    params = params or {}
    metric_names = list(dict.fromkeys(m.strip().lower()
                                      for m in (metrics or ["psnr", "ssim", "niqe"])))
    # Built first, so that a metric that cannot run stops before any reconstruction.
    built = [get_metric(n, device) for n in metric_names]
    rows: list[Row] = []
    for s in specs:
        truth = load_image(s.truth) if s.truth is not None else None
        for k in s.key_frames:
            has = truth is not None and k == s.truth_frame
            rows.append(Row(s.name, k, str(s.path), tonemap_mode(has, tonemap),
                            truth if has else None, str(s.truth) if has else None))
    sources = {}
    try:
        for s in specs:
            sources[str(s.path)] = open_recording(s.path, **(open_options or {}))
        for r in rows:
            n = sources[r.path].num_frames
            if not 0 <= r.key_frame < n:
                raise ParameterError(f"key frame {r.key_frame + 1} is outside {r.path} "
                                     f"(frames 1..{n})")
            if r.truth is not None and r.truth.shape != (sources[r.path].height,
                                                         sources[r.path].width):
                h, w = r.truth.shape
                raise InputError(f"ground truth {r.truth_path} is {h}x{w} but the recording "
                                 f"is {sources[r.path].height}x{sources[r.path].width}")
        cells: dict[tuple[int, str], Cell] = {}
        skipped: dict[str, str] = {}
        ran: list[str] = []
        if progress is not None:
            progress.start("reconstructing", len(rows) * len(methods))
        for m in methods:
            done: dict[tuple[int, str], Cell] = {}
            try:
                rec = build_method(m, params.get(m), weights, device)
                alpha = getattr(rec, "alpha", 0.6)
                # One pass per recording over its key frames (stateful methods stream once);
                # each frame is tone-mapped on its own.
                for path in dict.fromkeys(r.path for r in rows):
                    mine = {r.key_frame: i for i, r in enumerate(rows) if r.path == path}
                    t0 = time.perf_counter()
                    for k, rate in reconstruct(sources[path], rec, sorted(mine)):  # type: ignore[arg-type]
                        i = mine[k]
                        image = ToneMapper(rows[i].tonemap, alpha=alpha)(rate)
                        done[(i, m)] = Cell({}, 0.0, np.asarray(image, np.float32))
                        if progress is not None:
                            progress.advance(1)
                    for i in mine.values():
                        done[(i, m)].seconds = (time.perf_counter() - t0) / len(mine)
            except SKIPPABLE as exc:
                if explicit and isinstance(exc, ImportError):
                    raise SpkreconError(f"method '{m}' cannot run: {exc}",
                                        "check that its optional dependencies are "
                                        "installed") from exc
                if explicit:
                    raise
                skipped[m] = str(exc) or type(exc).__name__
                if progress is not None:
                    progress.advance(len(rows) - len(done))
                continue
            cells.update(done)
            ran.append(m)
    finally:
        for src in sources.values():
            src.close()
    result = CompareResult(rows, ran, [m.label for m in built], cells, skipped,
                           {m: dict(params.get(m, {})) for m in ran})
    _score(result, built, batch_size, progress)
    if not keep_images:
        for c in cells.values():
            c.image = None
    return result


def _score(result: CompareResult, metrics: Sequence[Any], batch_size: int | None,
           progress: ProgressHook | None) -> None:
    keys = list(result.cells)
    for metric in metrics:
        result.lower_better[metric.label] = bool(metric.lower_better)
        if getattr(metric, "device_name", "cpu") != "cpu":
            result.device = metric.device_name
        todo = [k for k in keys if not metric.full_reference
                or result.rows[k[0]].truth is not None]
        for k in keys:
            result.cells[k].scores[metric.label] = math.nan
        if progress is not None:
            progress.start(f"scoring {metric.label.upper()}", len(todo))
        # Batch frames of the same size together.
        by_size: dict[tuple[int, ...], list[tuple[int, str]]] = {}
        for k in todo:
            by_size.setdefault(result.cells[k].image.shape, []).append(k)  # type: ignore[union-attr]
        for group in by_size.values():
            imgs = np.stack([result.cells[k].image for k in group])  # type: ignore[misc]
            refs = (np.stack([result.rows[k[0]].truth for k in group])  # type: ignore[misc]
                    if metric.full_reference else None)
            vals = metric.score(imgs, refs, batch_size=batch_size,
                                progress=progress.advance if progress is not None else None)
            for k, v in zip(group, vals, strict=True):
                result.cells[k].scores[metric.label] = float(v)


# -- the image grid ---------------------------------------------------------------------
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, AttributeError):  # Pillow without FreeType
        return ImageFont.load_default()


def parse_crop(text: str | None) -> tuple[int, int, int, int] | None:
    """``"x,y,w,h"`` (pixels of the full-size image) -> tuple, or ``None``."""
    if not text:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ParameterError(f"--crop '{text}' is not x,y,w,h (four integers)") from None
    if x < 0 or y < 0 or w < 2 or h < 2:
        raise ParameterError(f"--crop '{text}' needs x, y >= 0 and w, h >= 2")
    return x, y, w, h


def render_grid(result: CompareResult, crop: tuple[int, int, int, int] | None = None,
                tile_width: int = 320, show_truth: bool = True) -> Any:
    """A labelled PIL image: one row per recording (and key frame), ground truth first,
    then each method, with its scores under each tile; with ``crop`` a black-and-white box
    marks the region on each tile and the region, enlarged (nearest neighbour), is drawn
    under it."""
    from PIL import Image, ImageDraw

    if not result.cells:
        raise ParameterError("nothing to draw: no method produced an image")
    truth_col = show_truth and any(r.truth is not None for r in result.rows)
    columns = (["Ground truth"] if truth_col else []) + result.methods
    sizes = [next(c.image.shape for (i, _), c in result.cells.items() if i == ri)
             for ri in range(len(result.rows))]
    if crop is not None:
        x, y, w, h = crop
        for (ih, iw), r in zip(sizes, result.rows, strict=True):
            if x + w > iw or y + h > ih:
                raise ParameterError(f"--crop {x},{y},{w},{h} lies outside {r.recording} "
                                     f"({iw}x{ih})")
    font = _font(max(11, tile_width // 22))
    small = _font(max(10, tile_width // 26))
    pad = max(4, tile_width // 50)
    line = int(font.size * 1.35) if hasattr(font, "size") else 14
    label_w = max(int(draw_width(r.label(result.several_frames), font)) for r in result.rows)
    label_w += 2 * pad
    tile_hs = [round(tile_width * ih / iw) for ih, iw in sizes]
    # The enlarged region spans the tile's width, or less when it would be taller than the
    # tiles (the width then shrinks to keep its aspect ratio).
    crop_h = min(round(tile_width * crop[3] / crop[2]), min(tile_hs)) if crop is not None else 0
    row_hs = [th + (crop_h + pad if crop else 0) + line + pad for th in tile_hs]
    width = label_w + len(columns) * (tile_width + pad) + pad
    height = line + pad + sum(row_hs) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(columns):
        cx = label_w + j * (tile_width + pad) + tile_width // 2
        draw.text((cx, pad), name, fill="black", font=font, anchor="mt")
    y0 = line + pad
    with_frame = result.several_frames
    for ri, row in enumerate(result.rows):
        th = tile_hs[ri]
        draw.text((pad, y0 + th // 2), row.label(with_frame), fill="black", font=font,
                  anchor="lm")
        for j, name in enumerate(columns):
            x0 = label_w + j * (tile_width + pad)
            if name == "Ground truth" and truth_col:
                img, caption = row.truth, ("ground truth" if row.truth is not None
                                           else "no ground truth")
            else:
                cell = result.cells.get((ri, name))
                img = None if cell is None else cell.image
                caption = "" if cell is None else _caption(cell.scores)
            if img is None:
                draw.rectangle([x0, y0, x0 + tile_width - 1, y0 + th - 1], fill=(235, 235, 235))
            else:
                _paste(canvas, img, (x0, y0), (tile_width, th), crop, crop_h, pad)
            draw.text((x0 + tile_width // 2, y0 + th + (crop_h + pad if crop else 0) + pad // 2),
                      caption, fill="black", font=small, anchor="mt")
        y0 += row_hs[ri]
    return canvas


def draw_width(text: str, font: Any) -> float:
    try:
        return float(font.getlength(text))
    except AttributeError:
        return 6.0 * len(text)


def _caption(scores: dict[str, float]) -> str:
    parts = []
    for k, v in scores.items():
        if math.isnan(v):
            continue
        if k == "psnr":
            parts.append(f"{format_score(k, v)} dB")
        elif k == "ssim":
            parts.append(f"{v:.3f}")
        else:
            parts.append(f"{k.upper()} {format_score(k, v)}")
    return " / ".join(parts)


def _paste(canvas: Any, img: np.ndarray, at: tuple[int, int], size: tuple[int, int],
           crop: tuple[int, int, int, int] | None, crop_h: int, pad: int) -> None:
    from PIL import Image, ImageDraw

    from spkrecon.tonemap import to_uint8

    full = Image.fromarray(to_uint8(img), "L")
    tile = full.resize(size, Image.Resampling.LANCZOS).convert("RGB")
    if crop is not None:
        x, y, w, h = crop
        sx = size[0] / img.shape[1]
        sy = size[1] / img.shape[0]
        # A black line outside a white one: visible on dark and bright regions alike.
        line = max(1, size[0] // 200)
        box = [round(x * sx), round(y * sy), round((x + w) * sx) - 1, round((y + h) * sy) - 1]
        draw = ImageDraw.Draw(tile)
        draw.rectangle(box, outline=BOX_OUTER, width=line)
        draw.rectangle([box[0] + line, box[1] + line, box[2] - line, box[3] - line],
                       outline=BOX_INNER, width=line)
        zoom_w = min(size[0], round(crop_h * w / h))
        zoom = full.crop((x, y, x + w, y + h)).resize((zoom_w, crop_h),
                                                      Image.Resampling.NEAREST)
        canvas.paste(zoom.convert("RGB"), (at[0] + (size[0] - zoom_w) // 2,
                                           at[1] + size[1] + pad))
    canvas.paste(tile, at)


# -- writing ----------------------------------------------------------------------------
def write_text(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    """Write ``text`` atomically; an existing file only with ``force``."""
    from spkrecon.export.atomic import atomic_file

    with atomic_file(path, force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def save_grid(image: Any, path: str | os.PathLike, force: bool = False) -> Path:
    """Save a PIL image as an optimised PNG (grey when it has no colour), atomically; an
    existing file only with ``force``."""
    return write_outputs({path: image}, force)[0]


def write_outputs(outputs: dict[str | os.PathLike, Any], force: bool = False) -> list[Path]:
    """Write several outputs (``str`` text, or a PIL image saved as PNG) all or none: each
    under a temporary name, renamed into place only when every one was written."""
    from spkrecon.export.atomic import atomic_files

    with atomic_files(list(outputs), force) as tmps:
        for tmp, value in zip(tmps, outputs.values(), strict=True):
            if isinstance(value, str):
                tmp.write_text(value, encoding="utf-8")
                continue
            if value.mode == "RGB" and _is_grey(value):
                value = value.convert("L")  # a third of the size, same pixels
            value.save(tmp, format="PNG", optimize=True)
    return [Path(p) for p in outputs]



def _is_grey(image: Any) -> bool:
    a = np.asarray(image)
    return bool(np.all((a[..., 0] == a[..., 1]) & (a[..., 1] == a[..., 2])))
