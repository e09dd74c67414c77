"""Network weights: spkrecon's checkpoint format, lookup, and import of the authors' release.

A spkrecon weights file is a ``torch.save`` of a plain dict (loadable with
``torch.load(..., weights_only=True)``)::

    {"format": "spkrecon-weights", "format_version": 1, "arch": "spk2imgnet",
     "config": {...Spk2ImgNetConfig fields...}, "alpha": 0.6,
     "state_dict": {name: tensor}, "meta": {"training_data": ..., "iterations": ...,
     "version": <spkrecon version>, "created": <ISO time>, ...}}

``config`` rebuilds the architecture (ablation switches, width, depth), so a checkpoint
always rebuilds its own model. ``alpha`` is the conversion rate of the training data.

Names such as ``spk2imgnet`` or ``spk2imgnet-lite`` resolve to ``<name>.pt`` in, in order:
``$SPKRECON_WEIGHTS`` (a folder, or a file that stands for the default name and its own
stem), ``spkrecon/weights/`` inside the package, the repository's ``weights/`` folder, and
``platformdirs.user_cache_dir("spkrecon")/weights``. An explicit path is used as it is.

torch is imported only by the functions that read or write tensors.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spkrecon.errors import OutputError, ParameterError, WeightsError

if TYPE_CHECKING:
    from torch import Tensor

    from spkrecon.models.spk2imgnet import Spk2ImgNet, Spk2ImgNetConfig

FORMAT = "spkrecon-weights"
FORMAT_VERSION = 1
ARCH = "spk2imgnet"
#: Architectures a spkrecon weights file may hold (``atsnet``: :mod:`spkrecon.models.atsnet`).
ARCHES = (ARCH, "atsnet")
ENV_VAR = "SPKRECON_WEIGHTS"
DEFAULT_NAME = "spk2imgnet"
LITE_NAME = "spk2imgnet-lite"
#: spkrecon's additions to the authors' architecture (config fields; off when 0/False).
ADDITIONS = ("raw_skip", "motion_input", "separate_encoders", "fusion_blocks", "flow_align")
SUFFIX = ".pt"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
GET_WEIGHTS_HINT = ("convert the authors' released checkpoint with 'spkrecon weights import "
                    "FILE', train one with 'spkrecon train', or pass --weights PATH")

__all__ = [
    "ARCH", "DEFAULT_NAME", "ENV_VAR", "FORMAT", "FORMAT_VERSION", "LITE_NAME", "Checkpoint",
    "WeightsEntry", "build_model", "cache_dir", "candidate_paths", "find_weights",
    "import_authors_checkpoint", "infer_config", "list_weights", "load_checkpoint",
    "load_model", "output_path", "resolve_weights", "save_checkpoint", "search_locations",
]


def additions_suffix(config: dict[str, Any]) -> str:
    """``" + raw_skip + ... + fusion_blocks 2"`` for the additions a config dict switches on."""
    return "".join(f" + {k}" + (f" {v}" if type(v) is int else "")
                   for k in ADDITIONS if (v := config.get(k)))


# -- where weights live ---------------------------------------------------------------------
def cache_dir() -> Path:
    """``<user cache>/spkrecon/weights`` (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("spkrecon")) / "weights"


def search_locations() -> list[tuple[str, Path]]:
    """``(label, path)`` in lookup order; ``env`` may be a file or a folder."""
    import spkrecon

    pkg = Path(spkrecon.__file__).resolve().parent
    locs: list[tuple[str, Path]] = []
    env = os.environ.get(ENV_VAR)
    if env:
        locs.append(("env", Path(env).expanduser()))
    locs.append(("package", pkg / "weights"))
    locs.append(("repo", pkg.parents[0] / "weights"))
    locs.append(("cache", cache_dir()))
    return locs


def _is_path_like(spec: str) -> bool:
    return (os.sep in spec or "/" in spec or spec.endswith((".pt", ".pth", ".ckpt"))
            or spec.startswith("~"))


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ParameterError(f"invalid weights name {name!r}",
                             "names use letters, digits, '.', '-' and '_'; or give a path")


def candidate_paths(name: str) -> list[tuple[str, Path]]:
    """Files that would provide weights ``name``, in lookup order."""
    _check_name(name)
    out: list[tuple[str, Path]] = []
    for label, loc in search_locations():
        if label == "env" and loc.suffix and not loc.is_dir():
            if name == DEFAULT_NAME or loc.stem == name:
                out.append((label, loc))
            continue
        out.append((label, loc / f"{name}{SUFFIX}"))
    return out


def find_weights(name: str = DEFAULT_NAME) -> Path | None:
    """The first existing file for weights ``name``, or ``None`` (no torch import)."""
    for _, path in candidate_paths(name):
        if path.is_file():
            return path
    return None


def resolve_weights(spec: str | os.PathLike | None = None) -> Path:
    """An explicit path, or the file for a name (default ``spk2imgnet``); else WeightsError."""
    if spec is None:
        spec = DEFAULT_NAME
    text = os.fspath(spec)
    if isinstance(spec, os.PathLike) or _is_path_like(text) or Path(text).exists():
        path = Path(text).expanduser()
        if not path.is_file():
            what = "is a folder, not a weights file" if path.is_dir() else "does not exist"
            raise WeightsError(f"weights file {path} {what}", GET_WEIGHTS_HINT)
        return path
    found = find_weights(text)
    if found is None:
        tried = ", ".join(str(p) for _, p in candidate_paths(text))
        raise WeightsError(f"no '{text}' weights found (looked for {tried})", GET_WEIGHTS_HINT)
    return found


# -- the checkpoint ------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """A loaded (or to-be-saved) weights file."""

    state_dict: dict[str, Tensor]
    config: dict[str, Any]
    alpha: float = 0.6
    meta: dict[str, Any] = field(default_factory=dict)
    arch: str = ARCH
    path: Path | None = None

    def model_config(self) -> Spk2ImgNetConfig:
        from spkrecon.models.spk2imgnet import Spk2ImgNetConfig

        if self.arch != ARCH:
            raise WeightsError(f"weights {self._where()} are for {self.arch}, not Spk2ImgNet",
                               f"use them with --method {self.arch}")
        try:
            return Spk2ImgNetConfig.from_dict(dict(self.config))
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"weights {self._where()} have an invalid architecture config: "
                               f"{exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": self.arch,
                "config": dict(self.config), "alpha": float(self.alpha),
                "meta": dict(self.meta), "state_dict": dict(self.state_dict)}

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description (no tensors)."""
        params = int(sum(t.numel() for t in self.state_dict.values()))
        if self.arch != ARCH:
            return {"path": str(self.path) if self.path else None, "arch": self.arch,
                    "variant": None, "parameters": params, "alpha": self.alpha,
                    "config": dict(self.config), "meta": self.meta}
        cfg = self.model_config()
        return {"path": str(self.path) if self.path else None, "arch": self.arch,
                "variant": cfg.variant, "features": cfg.features, "num_blocks": cfg.num_blocks,
                "parameters": int(sum(t.numel() for t in self.state_dict.values())),
                "alpha": self.alpha, "config": cfg.to_dict(), "meta": self.meta}

    def _where(self) -> str:
        return str(self.path) if self.path else "<in memory>"


def make_meta(**meta: Any) -> dict[str, Any]:
    """Metadata with ``version`` and ``created`` filled in."""
    import spkrecon

    base: dict[str, Any] = {"training_data": None, "iterations": None,
                            "version": spkrecon.__version__,
                            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    base.update(meta)
    return base


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike, force: bool = False) -> Path:
    """Write ``ckpt`` atomically (temporary name in the same folder, then rename)."""
    dest = Path(path).expanduser()
    if dest.exists() and not force:
        raise OutputError(f"{dest} already exists", "pass --force to overwrite it")
    data = ckpt.to_dict()
    data["state_dict"] = {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()}
    atomic_torch_save(data, dest)
    ckpt.path = dest
    return dest


def atomic_torch_save(obj: Any, dest: Path) -> None:
    """``torch.save`` under a temporary name in ``dest``'s folder, then rename: a crash
    never leaves half a file under ``dest``."""
    import torch

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; weights are meant to be shared
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pickle_globals(path: Path) -> list[str]:
    """The ``module.name`` globals a raw pickle file would import (read, never run)."""
    import pickletools

    names: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as fh:
            for op, arg, _ in pickletools.genops(fh):
                if op.name == "GLOBAL" and isinstance(arg, str):
                    names.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - a damaged pickle: report what was seen
        pass
    return list(dict.fromkeys(names))


def _refused(path: Path, names: list[str]) -> WeightsError:
    return WeightsError(
        f"{path} was refused for safety: loading it would import Python objects "
        f"({', '.join(names[:3])}), which can run code",
        "spkrecon loads only checkpoints of tensors and plain values (torch.save of a state "
        "dict)")


def _torch_load(path: Path) -> Any:
    import pickle
    import warnings
    import zipfile

    import torch

    from spkrecon.io.sniff import sniff_file

    if path.is_dir():
        raise WeightsError(f"{path} is a folder, not a weights file",
                           GET_WEIGHTS_HINT)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist", GET_WEIGHTS_HINT)
    kind = sniff_file(path, 64)
    if kind is not None and not kind.startswith(("a zip archive", "a Python pickle")):
        raise WeightsError(f"{path} is {kind}, not a PyTorch checkpoint",
                           "expected a spkrecon weights file (.pt)")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not for users
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        glob = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(exc))
        names = [glob.group(1)] if glob else _pickle_globals(path)
        if names:
            raise _refused(path, names) from None
        raise WeightsError(f"{path} is not a PyTorch checkpoint (a plain pickle or damaged "
                           "data)", "expected a spkrecon weights file (.pt)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            IndexError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path} is not a PyTorch checkpoint ({first})",
                           "expected a spkrecon weights file (.pt)") from None


def _looks_like_state_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a spkrecon weights file (``weights_only=True``)."""
    p = Path(path).expanduser()
    data = _torch_load(p)
    expected = ("expected a spkrecon weights file: a dict with format, arch, config, alpha, "
                "meta and state_dict")
    if not isinstance(data, dict):
        raise WeightsError(f"{p} holds a {type(data).__name__}, not a spkrecon weights file",
                           expected)
    if data.get("format") != FORMAT:
        if _looks_like_state_dict(data) or _looks_like_state_dict(data.get("state_dict")):
            raise WeightsError(
                f"{p} is a bare state dict (the authors' release?), not a spkrecon weights file",
                f"convert it once with 'spkrecon weights import {p}'")
        raise WeightsError(f"{p} is not a spkrecon weights file (keys: "
                           f"{', '.join(map(str, list(data)[:8]))})", expected)
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise WeightsError(f"{p} has weights format version {version!r}; this spkrecon reads "
                           f"up to {FORMAT_VERSION}", "upgrade spkrecon")
    if data.get("arch") not in ARCHES:
        raise WeightsError(f"{p} holds weights for '{data.get('arch')}', not "
                           f"{' or '.join(ARCHES)}")
    sd, cfg = data.get("state_dict"), data.get("config")
    if not _looks_like_state_dict(sd) or not isinstance(cfg, dict):
        raise WeightsError(f"{p} lacks a state_dict of tensors or an architecture config",
                           expected)
    alpha = data.get("alpha", 0.6)
    if not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise WeightsError(f"{p} has an invalid alpha {alpha!r}")
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    ckpt = Checkpoint(state_dict=sd, config=cfg, alpha=float(alpha), meta=meta,
                      arch=str(data["arch"]), path=p)
    if ckpt.arch == ARCH:
        ckpt.model_config()  # validates
    return ckpt


def build_model(ckpt: Checkpoint) -> Spk2ImgNet:
    """The network ``ckpt`` describes, with its weights (CPU, eval mode)."""
    from spkrecon.models.spk2imgnet import Spk2ImgNet

    cfg = ckpt.model_config()
    model = Spk2ImgNet(cfg)
    check_state_dict(model, ckpt.state_dict, where=ckpt._where())
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.eval()


def _describe(cfg: Spk2ImgNetConfig) -> str:
    variant = cfg.variant or "custom"
    extras = additions_suffix(cfg.to_dict())
    return f"Spk2ImgNet {variant}{extras} (width {cfg.features}, depth {cfg.num_blocks})"


def check_state_dict(model: Spk2ImgNet, sd: dict[str, Tensor], where: str) -> None:
    """Raise WeightsError naming missing/unexpected keys and shape mismatches."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shapes = [f"{k} is {list(have[k])}, expected {list(want[k])}"
              for k in want if k in have and have[k] != want[k]]
    if not (missing or unexpected or shapes):
        return

    def few(items: list[str]) -> str:
        more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
        return ", ".join(items[:3]) + more

    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {few(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {few(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} wrong shapes: {few(shapes)}")
    raise WeightsError(
        f"weights {where} do not fit the {_describe(model.config)} their config describes "
        f"({len(want)} tensors expected): {'; '.join(problems)}",
        "re-create the file with 'spkrecon weights import' or 'spkrecon train'")


def load_model(spec: str | os.PathLike | None = None) -> tuple[Spk2ImgNet, Checkpoint]:
    """Resolve ``spec`` (path or name), load it and build the model."""
    ckpt = load_checkpoint(resolve_weights(spec))
    return build_model(ckpt), ckpt


# -- the authors' release -------------------------------------------------------------------
def strip_prefix(sd: dict[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """Drop ``nn.DataParallel``'s ``module.`` prefix where every key has it."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def infer_config(sd: dict[str, Tensor], block_step: int = 7) -> Spk2ImgNetConfig:
    """The architecture of a state dict with the authors' parameter names (from its shapes)."""
    from spkrecon.models.spk2imgnet import Spk2ImgNetConfig

    try:
        conv00 = sd["extractor.conv0_0.weight"]
        features = int(sd["extractor.conv.weight"].shape[0])
        blocks = {int(m.group(1)) for k in sd
                  if (m := re.match(r"extractor\.net\.(\d+)\.", k))}
        pda = any(k.startswith("pcd_align.") for k in sd)
        groups = (int(sd["pcd_align.pcd_align.L1_dcnpack_1.conv_offset_mask.weight"].shape[0])
                  // 27) if pda else 8
        sali = "extractor.conv0_1.weight" in sd
        return Spk2ImgNetConfig(
            raw_skip=int(sd["extractor.conv.weight"].shape[1]) > (4 if sali else 1),
            features=features, num_blocks=len(blocks),
            sali=sali, pda=pda,
            re=any(k.startswith("mask") for k in sd),
            sali_features=int(conv00.shape[0]), deform_groups=groups,
            block_radius=(int(conv00.shape[1]) - 1) // 2, block_step=block_step,
            num_temporal_blocks=int(sd["rec_conv0.weight"].shape[1]) // features,
            motion_input=int(sd["rec_conv0.weight"].shape[1]) % features == 2,
            separate_encoders=any(k.startswith("side_extractors.") for k in sd),
            fusion_blocks=len({int(m.group(1)) for k in sd
                               if (m := re.match(r"fusion_net\.(\d+)\.", k))}),
            flow_align=any(k.startswith("flow_heads.") for k in sd))
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as exc:
        raise WeightsError(
            f"the state dict does not have Spk2ImgNet's parameter names ({exc})",
            "expected keys such as extractor.conv0_0.weight, pcd_align.pcd_align.L1_dcnpack_1."
            "weight, rec_conv0.weight (optionally prefixed 'module.')") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_path(name_or_path: str | os.PathLike | None) -> Path:
    """Where ``weights import -o`` writes: a path as given, a name into the cache folder."""
    if name_or_path is None:
        return cache_dir() / f"{DEFAULT_NAME}{SUFFIX}"
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or _is_path_like(text):
        return Path(text).expanduser()
    _check_name(text)
    return cache_dir() / f"{text}{SUFFIX}"


def import_authors_checkpoint(src: str | os.PathLike, dest: str | os.PathLike | None = None,
                              force: bool = False, alpha: float = 0.6, save: bool = True,
                              **meta: Any) -> Checkpoint:
    """Convert the authors' checkpoint (state dict, keys ``module.``-prefixed) to our format.

    The result is validated by building the network and loading it strictly, then saved
    to :func:`output_path` of ``dest`` unless ``save`` is false.
    """
    p = Path(src).expanduser()
    data = _torch_load(p)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        raise WeightsError(f"{p} is already a spkrecon weights file",
                           "use it directly with --weights, or copy it into a weights folder")
    sd = data
    if isinstance(data, dict) and not _looks_like_state_dict(data):
        sd = next((data[k] for k in ("state_dict", "model", "net", "model_state_dict")
                   if _looks_like_state_dict(data.get(k))), None)
    if not _looks_like_state_dict(sd):
        raise WeightsError(f"{p} does not hold a state dict of tensors",
                           "expected the authors' Spk2ImgNet checkpoint (e.g. model_061.pth)")
    sd = strip_prefix(sd)  # type: ignore[arg-type]
    cfg = infer_config(sd)
    ckpt = Checkpoint(
        state_dict=sd, config=cfg.to_dict(), alpha=alpha,
        meta=make_meta(**{
            "source": "Spk2ImgNet authors' release (Zhao et al., CVPR 2021)",
            "source_file": p.name, "source_sha256": _sha256(p),
            "training_data": "the authors' simulated spike data (REDS-based, alpha 0.6)",
            **meta}))
    build_model(ckpt)
    if save:
        save_checkpoint(ckpt, output_path(dest), force=force)
    return ckpt


# -- listing ---------------------------------------------------------------------------------
@dataclass
class WeightsEntry:
    """One weights file found in a search location."""

    name: str
    path: Path
    location: str
    size: int
    active: bool = False
    summary: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "location": self.location,
                "size": self.size, "active": self.active, "summary": self.summary,
                "error": self.error}


def list_weights(describe: bool = False) -> list[WeightsEntry]:
    """Every ``*.pt`` in the search locations; ``active`` marks the one a name resolves to.

    ``describe`` loads each file to report its architecture (or why it does not load).
    """
    entries: list[WeightsEntry] = []
    seen: set[Path] = set()
    for label, loc in search_locations():
        if loc.is_file():
            files = [loc]
        elif loc.is_dir():
            files = sorted(q for q in loc.iterdir() if q.suffix in (SUFFIX, ".pth")
                           and q.is_file())
        else:
            continue
        for f in files:
            real = f.resolve()
            if real in seen:
                continue
            seen.add(real)
            entries.append(WeightsEntry(name=f.stem, path=f, location=label,
                                        size=f.stat().st_size))
    names = {e.name for e in entries} | {DEFAULT_NAME}
    active = {n: find_weights(n) for n in names if _NAME_RE.match(n)}
    for e in entries:
        e.active = any(p is not None and p.resolve() == e.path.resolve()
                       for p in active.values())
        if describe:
            try:
                e.summary = load_checkpoint(e.path).summary()
            except WeightsError as exc:
                e.error = str(exc)
    return entries
