"""What one batch makes of each recording: the settings, the method, one output.

:class:`BatchSettings` holds every option of the single-file ``video`` and ``frames``
commands. :meth:`BatchSettings.identity` is the part that decides what an output looks
like (the device and the thread count do not); the manifest keeps it with every recording,
so a later run with other settings is noticed.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spkrecon.errors import ParameterError, SpkreconError

KINDS = ("video", "png", "npy")
_SUFFIX = {"video": ".mp4", "png": "", "npy": ".npy"}


@dataclass
class BatchSettings:
    """The options of a batch; the defaults are the single-file commands' defaults."""

    kind: str = "video"  # video (MP4), png (a folder of PNGs) or npy (one float32 stack)
    method: str = "auto"
    alpha: float = 0.6
    window: int | None = None
    params: list[str] = field(default_factory=list)  # --param KEY=VALUE / METHOD.KEY=VALUE
    weights: str | None = None
    device: str | None = None
    precision: str | None = None
    tonemap: str = "auto"
    gamma: float | None = None
    start: int | None = None
    end: int | None = None
    stride: int = 1
    fps: float = 30.0
    crf: int = 18
    preset: str = "veryfast"
    bit_depth: int = 8
    height: int = 250
    width: int = 400
    crop_header: bool = False
    layout: str = "auto"
    flip: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ParameterError(f"unknown batch output kind {self.kind!r}",
                                 f"use one of {', '.join(KINDS)}")
        if self.stride < 1:
            raise ParameterError(f"stride must be at least 1, got {self.stride}")

    def output_name(self, name: str) -> str:
        """The output of recording ``name``, relative to the output folder."""
        return name + _SUFFIX[self.kind]

    def method_kwargs(self) -> dict[str, Any]:
        """Keyword arguments the options give (``--param`` items come on top, in resolve)."""
        kw: dict[str, Any] = {"alpha": self.alpha}
        for key in ("window", "weights", "device", "precision"):
            val = getattr(self, key)
            if val is not None:
                kw[key] = val
        return kw

    def resolve(self) -> tuple[str, dict[str, Any], str | None]:
        """``(method name, its keyword arguments, why)`` as :func:`spkrecon.methods.build`
        resolves them (``auto`` picked here, ``--param`` items over the options, values
        converted to the declared types), but nothing is loaded: every worker builds its own.
        Unknown names, parameters and values are a ParameterError."""
        from spkrecon.errors import UnknownNameError
        from spkrecon.methods import available, get_class, suggest
        from spkrecon.methods.params import convert_params, split_params

        kw = self.method_kwargs()
        name, why = self.method.lower(), None
        auto = name == "auto"
        if auto:
            try:
                from spkrecon.methods.auto import choose_auto
            except ImportError:
                name, extra, reason = "tfp", {}, "no network method is installed"
            else:
                name, extra, reason = choose_auto(weights=kw.get("weights"))
            kw = {**extra, **kw}
            why = f"method auto: using {name} ({reason})"
        elif name not in available():
            raise UnknownNameError(
                f"unknown method '{self.method}' (known: {', '.join(available())}, auto)",
                suggest(name, available() + ["auto"]) or "run 'spkrecon methods' to list them")
        given = split_params(self.params, [name], alias="auto" if auto else None,
                             drop_unknown=auto)[name]
        known = get_class(name).parameter_names()
        kw = {**kw, **given}
        if auto:
            kw = {k: v for k, v in kw.items() if k in known}
        unknown = [k for k in kw if k not in known]
        if unknown:
            raise ParameterError(
                f"method '{name}' has no parameter {', '.join(repr(u) for u in unknown)}",
                f"it takes {', '.join(known) or 'no parameters'}")
        return name, convert_params(name, kw), why

    def identity(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """What decides the outputs: everything but the device, as plain JSON values."""
        ident: dict[str, Any] = {
            "kind": self.kind, "method": method, "requested_method": self.method.lower(),
            "params": {k: v for k, v in sorted(kwargs.items()) if k != "device"},
            "alpha": kwargs.get("alpha", self.alpha), "tonemap": self.tonemap,
            "gamma": self.gamma, "frames": [self.start, self.end, self.stride],
            "recording": {k: getattr(self, k) for k in ("height", "width", "crop_header",
                                                        "layout", "flip")},
        }
        if self.kind == "video":
            ident["video"] = {"fps": self.fps, "crf": self.crf, "preset": self.preset}
        elif self.kind == "png":
            ident["bit_depth"] = self.bit_depth
        return json.loads(json.dumps(ident, default=str))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def identity_changes(old: dict[str, Any], new: dict[str, Any], most: int = 3) -> str:
    """``"method tfp -> tfi, params.window 21 -> 11"``: how two identities differ."""
    def flat(d: dict[str, Any], pre: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{pre}{k}."))
            else:
                out[pre + k] = v
        return out

    a, b = flat(old or {}), flat(new)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k, "-") != b.get(k, "-")]
    text = ", ".join(f"{k} {json.dumps(a.get(k))} -> {json.dumps(b.get(k))}"
                     for k in keys[:most])
    return text + (f" and {len(keys) - most} more" if len(keys) > most else "")


def build_method(name: str, kwargs: dict[str, Any], gpu_slot: int | None = None) -> Any:
    """Instantiate the resolved method; a network on a GPU machine gets GPU ``gpu_slot``
    (modulo the GPU count) unless a device was named."""
    from spkrecon.methods import create, get_class

    kw = dict(kwargs)
    if gpu_slot is not None and "device" in get_class(name).parameter_names() and \
            str(kw.get("device") or "auto").lower() in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            kw["device"] = f"cuda:{gpu_slot % torch.cuda.device_count()}"
    return create(name, **kw)


def error_line(exc: BaseException) -> str:
    """One line for a failed recording, as the CLI would print it (without ``error:``)."""
    if isinstance(exc, SpkreconError):
        text = str(exc)
    elif isinstance(exc, MemoryError):
        text = "out of memory; try a smaller frame range or fewer --jobs"
    elif isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        text = f"{exc.strerror or exc}{where}"
    else:
        text = f"internal error: {type(exc).__name__}: {exc}"
    return " ".join(text.split())


def partials(final: Path) -> list[Path]:
    """Leftovers of unfinished writes of ``final`` by any process (see export.atomic)."""
    if not final.parent.is_dir():
        return []
    pat = re.compile(rf"^\.(?:{re.escape(final.stem)}\.partial-\d+{re.escape(final.suffix)}"
                     rf"|{re.escape(final.name)}\.old-\d+)$")
    return [p for p in final.parent.iterdir() if pat.match(p.name)]


def remove_partials(final: Path) -> None:
    from spkrecon.export.atomic import _remove

    for p in partials(final):
        _remove(p)


def expected_frames(path: Path, settings: BatchSettings) -> int:
    """How many frames recording ``path`` gives (opens it; InputError when it cannot)."""
    src = open_source(path, settings)
    try:
        rng = src.frame_range(settings.start, settings.end)
        return len(range(rng.start, rng.stop, settings.stride))
    finally:
        src.close()


def open_source(path: Path, s: BatchSettings) -> Any:
    from spkrecon.io import open_recording

    return open_recording(path, height=s.height, width=s.width, crop_header=s.crop_header,
                          layout=s.layout, flip=s.flip)  # type: ignore[arg-type]


def render(path: Path, final: Path, method: Any, s: BatchSettings, force: bool,
           on_frame: Callable[[], None] = lambda: None) -> int:
    """Reconstruct recording ``path`` into ``final`` (atomically); returns frames written.

    The writers check the output before any work and leave nothing under its name (and no
    partial file) on an error or an interrupt.
    """
    from spkrecon.export import NpyStackWriter, PngFolderWriter, VideoWriter
    from spkrecon.pipeline import output_indices, reconstruct
    from spkrecon.tonemap import ToneMapper

    remove_partials(final)
    src = open_source(path, s)
    try:
        mapper = ToneMapper(s.tonemap, alpha=method.alpha, gamma=s.gamma)
        indices = output_indices(src, method, s.start, s.end, s.stride)
        if s.kind == "video":
            writer: Any = VideoWriter(final, fps=s.fps, crf=s.crf, force=force,
                                      preset=s.preset)
        elif s.kind == "npy":
            writer = NpyStackWriter(final, len(indices), src.height, src.width, force=force)
        else:
            meta = {"recording": str(path), "method": method.name, "params": method.params(),
                    "tonemap": s.tonemap, "gamma": mapper.gamma,
                    "indices": [indices.start, indices.stop, indices.step]}
            writer = PngFolderWriter(final, bit_depth=s.bit_depth, force=force, metadata=meta)
        count = 0
        with writer:
            for idx, image in reconstruct(src, method, indices, mapper):
                if s.kind == "video":
                    writer.write(image)
                else:
                    writer.write(idx, image)
                count += 1
                on_frame()
        return count
    finally:
        src.close()


def input_stamp(path: Path) -> dict[str, Any]:
    """What tells a changed input: size and modification time (nanoseconds)."""
    st = os.stat(path)
    return {"input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
