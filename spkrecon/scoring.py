"""Score reconstructed frames: loading, pairing with ground truth, per-frame and mean results.

Frames are grey float32 ``(N, H, W)`` in [0, 1]. Sources:

- a folder of images (``.png .jpg .jpeg .bmp .tif .tiff``), in natural name order
  (``f2.png`` before ``f10.png``);
- a ``.npy`` stack ``(N, H, W)``, ``(H, W)``, or colour ``(N, H, W, 3|4)``;
- one image file;
- a recording and a method, reconstructed on the fly (:func:`reconstruct_frames`).

Values: ``uint8`` is divided by 255, ``uint16`` by 65535, ``bool`` is 0/1, floats must already
lie in [0, 1]. Colour is turned grey with the BT.601 luma weights (0.299, 0.587, 0.114), as
MATLAB's ``rgb2gray``.

Pairing rules (:func:`pair_frames`), checked before any metric runs:

1. as many ground-truth frames as reconstructed frames: paired in order;
2. frames reconstructed from a recording, and a ground-truth stack with one frame per
   recording frame: reconstructed frame ``k`` pairs with ground-truth frame ``k``;
3. anything else is an :class:`~spkrecon.errors.InputError` giving both counts. Every pair
   must have the same height and width (no resizing or cropping is ever done).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spkrecon.errors import InputError, ParameterError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
RECORDING_SUFFIXES = (".dat", ".npz")
LUMA = np.array([0.299, 0.587, 0.114])
KEY_ID = re.compile(r"key_id(\d+)", re.IGNORECASE)
DEFAULT_KEY_FRAME = 151  # 1-based, as the shared REDS samples' names say

Advance = Callable[[int], None]


# -- frames ---------------------------------------------------------------------------
@dataclass
class FrameSet:
    """Frames ``(N, H, W)`` float32 in [0, 1] with a label per frame.

    ``indices`` are the 0-based recording frames they were reconstructed at (``None`` for
    files); ``recording_frames`` is that recording's length.
    """

    frames: np.ndarray
    names: list[str]
    source: str
    indices: list[int] | None = None
    recording_frames: int | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])


def natural_key(name: str) -> list[Any]:
    """Sort key that orders ``f2`` before ``f10``."""
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", name)]


def to_grey(image: np.ndarray, what: str = "image") -> np.ndarray:
    """``(..., H, W)`` or colour ``(..., H, W, C)`` of any supported dtype -> float32 [0, 1]."""
    a = np.asarray(image)
    if a.dtype == np.bool_:
        a = a.astype(np.float32)
    elif a.dtype == np.uint8:
        a = a.astype(np.float32) / np.float32(255)
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / np.float32(65535)
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if a.size:
            lo, hi = float(np.min(a)), float(np.max(a))
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise InputError(f"{what} holds NaN or infinite values")
            if lo < -1e-4 or hi > 1 + 1e-4:
                raise InputError(
                    f"{what} is float with values in [{lo:.4g}, {hi:.4g}], not [0, 1]",
                    "save float frames in [0, 1] (or as uint8/uint16 images)")
            np.clip(a, 0, 1, out=a)
    else:
        raise InputError(f"{what} has dtype {a.dtype}; expected uint8, uint16, bool or float")
    return a


def _colour_to_grey(a: np.ndarray) -> np.ndarray:
    if a.shape[-1] in (3, 4):
        return (a[..., :3] @ LUMA.astype(np.float32)).astype(np.float32)
    return a[..., 0]  # grey (+ alpha)


def load_image(path: str | Path) -> np.ndarray:
    """One image file -> grey ``(H, W)`` float32 in [0, 1]."""
    import imageio.v3 as iio

    p = Path(path)
    try:
        img = np.asarray(iio.imread(p))
    except Exception as exc:  # imageio raises many kinds
        from spkrecon.io.sniff import unreadable

        raise InputError(unreadable(p, "image", exc)) from None
    if img.ndim == 3 and img.shape[-1] in (1, 2, 3, 4):
        return _colour_to_grey(to_grey(img, str(p)))
    if img.ndim != 2:
        raise InputError(f"{p} is not a single grey or colour image (shape {img.shape})")
    return to_grey(img, str(p))


def load_frames(path: str | Path) -> FrameSet:
    """A folder of images, a ``.npy`` stack or one image -> :class:`FrameSet`."""
    p = Path(path)
    if str(path) == "sample" and not p.exists():
        raise InputError("'sample' is a recording, not frames",
                         "pass --method to reconstruct it first (e.g. --method tfp)")
    if p.suffix.lower() == ".dat" and p.is_file():
        raise InputError(f"{p} is a recording, not frames",
                         "pass --method to reconstruct it first (e.g. --method tfp)")
    if not p.exists():
        raise InputError(f"{p} does not exist")
    if p.is_dir():
        files = sorted((f for f in p.iterdir()
                        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda f: natural_key(f.name))
        if not files:
            raise InputError(f"{p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        frames = [load_image(f) for f in files]
        first = frames[0].shape
        for f, a in zip(files, frames, strict=True):
            if a.shape != first:
                raise InputError(f"images in {p} differ in size: {files[0].name} is "
                                 f"{first[0]}x{first[1]}, {f.name} is {a.shape[0]}x{a.shape[1]}")
        return FrameSet(np.stack(frames), [f.name for f in files], str(p))
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            a = np.load(p, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise InputError(f"cannot read {p}: {exc}") from None
        if a.ndim == 4 and a.shape[-1] in (3, 4):
            stack = _colour_to_grey(to_grey(a, str(p)))
        elif a.ndim == 3:
            stack = to_grey(a, str(p))
        elif a.ndim == 2:
            stack = to_grey(a, str(p))[None]
        else:
            raise InputError(f"{p} has shape {a.shape}; expected (N, H, W), (H, W) or "
                             "(N, H, W, 3)")
        return FrameSet(np.ascontiguousarray(stack), [f"{p.name}[{i}]" for i in
                                                      range(len(stack))], str(p))
    if suffix in IMAGE_SUFFIXES:
        return FrameSet(load_image(p)[None], [p.name], str(p))
    if suffix in RECORDING_SUFFIXES:
        raise InputError(f"{p} looks like a spike recording",
                         "give --method to reconstruct it before scoring")
    raise InputError(f"cannot score {p}: expected a folder of images, a .npy stack or an image")


# -- pairing ----------------------------------------------------------------------------
def pair_frames(recon: FrameSet, truth: FrameSet) -> tuple[np.ndarray, list[str], str]:
    """Ground truth aligned to ``recon``: ``(frames (N, H, W), names, rule)``; see module doc."""
    n, m = len(recon), len(truth)
    if n == m:
        refs, names, rule = truth.frames, truth.names, "in order"
    elif recon.indices is not None and recon.recording_frames == m:
        refs = truth.frames[recon.indices]
        names = [truth.names[i] for i in recon.indices]
        rule = "by recording frame"
    else:
        extra = ""
        if recon.recording_frames is not None:
            extra = f" (or one per recording frame: {recon.recording_frames})"
        raise InputError(
            f"{n} reconstructed frame(s) but {m} ground-truth frame(s): counts must match"
            f"{extra}",
            "frames pair in order; with a recording, pick frames with --key-frame")
    if refs.shape[1:] != recon.frames.shape[1:]:
        (h, w), (gh, gw) = recon.size, refs.shape[1:]
        raise InputError(f"frame size {h}x{w} differs from ground truth {gh}x{gw} "
                         f"({recon.names[0]} vs {names[0]})", "images are never resized")
    return refs, list(names), rule


# -- results ------------------------------------------------------------------------------
def json_number(value: float | None) -> float | str | None:
    """A JSON-safe number: ``inf`` -> ``"inf"``, NaN -> ``None``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def mean_score(values: Iterable[float]) -> float:
    """Mean ignoring NaN; ``inf`` when any value is ``inf``; NaN when nothing is left."""
    v = np.asarray([x for x in values if not math.isnan(x)], np.float64)
    if v.size == 0:
        return math.nan
    if np.isinf(v).any():
        return float(v[np.isinf(v)][0])
    return float(v.mean())


def format_score(metric: str, value: float | None) -> str:
    """``31.60`` (dB), ``0.8934``, ``inf``, ``-``."""
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4f}" if metric.endswith("ssim") else f"{value:.2f}"


@dataclass
class FrameScore:
    """Scores of one frame; ``index`` is its 0-based recording frame when reconstructed."""

    name: str
    scores: dict[str, float]
    index: int | None = None
    reference: str | None = None


@dataclass
class ScoreReport:
    """Per-frame scores and their means (PSNR averaged in dB, as the field does)."""

    source: str
    reference: str | None
    metrics: list[str]
    frames: list[FrameScore]
    mean: dict[str, float]
    pairing: str | None = None
    data_range: float = 1.0
    device: str | None = None
    method: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``inf`` as ``"inf"``, NaN as ``null``; frame numbers 1-based."""
        return {
            "source": self.source,
            "reference": self.reference,
            "pairing": self.pairing,
            "data_range": self.data_range,
            "device": self.device,
            "method": self.method,
            "metrics": self.metrics,
            "frames": [
                {"name": f.name,
                 "frame": None if f.index is None else f.index + 1,
                 "reference": f.reference,
                 **{k: json_number(v) for k, v in f.scores.items()}}
                for f in self.frames],
            "mean": {k: json_number(v) for k, v in self.mean.items()},
            "notes": self.notes,
        }


def default_metrics(with_reference: bool) -> list[str]:
    return ["psnr", "ssim", "niqe"] if with_reference else ["niqe"]


def build_metrics(names: Sequence[str], device: str | None = None) -> list[Any]:
    """Metric objects for ``names`` (duplicates dropped), via ``metrics.get_metric``."""
    from spkrecon.metrics import get_metric

    keys = list(dict.fromkeys(n.strip().lower() for n in names))
    if not keys:
        raise ParameterError("no metrics asked for")
    return [get_metric(n, device) for n in keys]


def score_frames(recon: FrameSet, truth: FrameSet | None = None,
                 metrics: Sequence[Any] | None = None, device: str | None = None,
                 batch_size: int | None = None, advance: Advance | None = None
                 ) -> ScoreReport:
    """Score ``recon`` (against ``truth`` for full-reference metrics).

    ``metrics`` are names or objects from :func:`build_metrics`; by default PSNR, SSIM, NIQE
    with ground truth and NIQE without. ``advance(n)`` is called as frames are scored
    (``len(recon) * len(metrics)`` in all).
    """
    items = list(metrics) if metrics is not None else default_metrics(truth is not None)
    if not items:
        raise ParameterError("no metrics asked for")
    names = [m for m in items if isinstance(m, str)]
    built = [m for m in items if not isinstance(m, str)]
    built += build_metrics(names, device) if names else []
    refs, ref_names, rule = (None, None, None)
    if truth is not None:
        refs, ref_names, rule = pair_frames(recon, truth)
    for m in built:
        if m.full_reference and refs is None:
            raise ParameterError(f"{m.label.upper()} needs ground truth", "give --gt")
    results: dict[str, np.ndarray] = {}
    for m in built:
        results[m.label] = m.score(recon.frames, refs if m.full_reference else None,
                                   batch_size=batch_size, progress=advance)
    dev = next((m.device_name for m in built if m.device_name != "cpu"), "cpu")
    labels = list(results)
    frames = [FrameScore(recon.names[i], {k: float(results[k][i]) for k in labels},
                         None if recon.indices is None else recon.indices[i],
                         None if ref_names is None else ref_names[i])
              for i in range(len(recon))]
    notes = []
    for k in labels:
        if np.isinf(results[k]).any():
            notes.append(f"{k}: {int(np.isinf(results[k]).sum())} frame(s) identical to the "
                         "ground truth (infinite PSNR)")
        if np.isnan(results[k]).any():
            notes.append(f"{k}: {int(np.isnan(results[k]).sum())} frame(s) could not be scored "
                         "(NaN, e.g. a flat image); left out of the mean")
    return ScoreReport(recon.source, truth.source if truth is not None else None, labels,
                       frames, {k: mean_score(results[k]) for k in labels}, rule,
                       device=dev, notes=notes)


# -- reconstruction on the fly ------------------------------------------------------------
def parse_key_frame(path: str | Path) -> int | None:
    """The 1-based key frame a file name states (``..._key_id151.dat`` -> 151), if any."""
    m = KEY_ID.search(Path(path).name)
    return int(m.group(1)) if m else None


def parse_value(text: str) -> Any:
    """``"21"`` -> 21, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"none"`` -> None, else text."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_params(items: Iterable[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["tfp.window=21", "alpha=0.5"]`` -> per-method keyword dicts, values converted to
    the types the methods declare.

    ``method.key=value`` applies to that method (which must be one of ``methods``);
    ``key=value`` applies to every method in ``methods`` that takes ``key`` (and must fit one).
    """
    from spkrecon.methods.params import convert_params, split_params

    split = split_params(items, methods)
    return {m: convert_params(m, p) for m, p in split.items()}


def build_method(name: str, params: dict[str, Any] | None = None,
                 weights: str | None = None, device: str | None = None) -> Any:
    """``spkrecon.methods.create`` plus ``weights``/``device`` for methods that take them."""
    from spkrecon.methods import build, create, get_class

    kwargs = dict(params or {})
    if name.lower() == "auto":
        kwargs.update({k: v for k, v in (("weights", weights), ("device", device)) if v})
        return build(name, **kwargs)[0]
    accepted = get_class(name).parameter_names()
    if weights is not None and "weights" in accepted:
        kwargs.setdefault("weights", weights)
    if device is not None and "device" in accepted:
        kwargs.setdefault("device", device)
    return create(name, **kwargs)


def tonemap_mode(has_truth: bool, override: str | None = None) -> str:
    """``alpha`` for simulated data with ground truth, ``auto`` otherwise, unless overridden."""
    return override or ("alpha" if has_truth else "auto")


def reconstruct_frames(recording: str | Path, method: str, params: dict[str, Any] | None = None,
                       frames: Sequence[int] | None = None, stride: int = 1,
                       tonemap: str = "auto", alpha: float = 0.6, weights: str | None = None,
                       device: str | None = None, advance: Advance | None = None,
                       open_options: dict[str, Any] | None = None) -> FrameSet:
    """Reconstruct ``recording`` with ``method`` at 0-based ``frames`` into a :class:`FrameSet`.

    Without ``frames``: every frame whose whole window lies inside the recording, every
    ``stride`` frames. Images are tone-mapped with ``tonemap`` (one mapper for the stream).
    ``open_options`` go to :func:`spkrecon.io.open_recording` (``height``, ``width``, ...).
    """
    from spkrecon.io import open_recording
    from spkrecon.pipeline import reconstruct
    from spkrecon.tonemap import ToneMapper

    rec = build_method(method, params, weights, device)
    src = open_recording(recording, **(open_options or {}))
    try:
        n = src.num_frames
        if frames is None:
            if n < rec.min_frames:
                raise ParameterError(f"{recording} has {n} frames, fewer than the "
                                     f"{rec.min_frames}-frame window of {method}")
            if stride < 1:
                raise ParameterError(f"stride must be at least 1, got {stride}")
            idx = list(range(rec.past, n - rec.future, stride))
        else:
            idx = sorted(set(int(f) for f in frames))
            bad = [f + 1 for f in idx if not 0 <= f < n]
            if bad:
                raise ParameterError(f"frame {bad[0]} is outside {recording} (frames 1..{n})")
        mapper = ToneMapper(tonemap, alpha=alpha)
        out = np.empty((len(idx), src.height, src.width), np.float32)
        for i, (_, image) in enumerate(reconstruct(src, rec, idx, mapper)):  # type: ignore[arg-type]
            out[i] = image
            if advance is not None:
                advance(1)
    finally:
        src.close()
    stem = Path(str(recording)).stem
    return FrameSet(out, [f"{stem}#{i + 1}" for i in idx], str(recording), idx, n)


def describe_method(method: str, params: dict[str, Any] | None, tonemap: str) -> dict[str, Any]:
    return {"name": method, "params": dict(params or {}), "tonemap": tonemap}


__all__ = [
    "DEFAULT_KEY_FRAME", "FrameScore", "FrameSet", "ScoreReport", "build_metrics",
    "build_method", "default_metrics", "format_score", "json_number", "load_frames",
    "load_image", "mean_score", "natural_key", "pair_frames", "parse_key_frame",
    "parse_params", "parse_value", "reconstruct_frames", "score_frames", "to_grey",
]
