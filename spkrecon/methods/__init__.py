"""Registry of reconstructors: ``name -> "module:attr"``, imported on first use.

>>> from spkrecon.methods import create
>>> tfp = create("tfp", window=21)
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from typing import Any

from spkrecon.errors import ParameterError, UnknownNameError
from spkrecon.methods.base import Reconstructor

_REGISTRY: dict[str, str] = {
    "tfp": "spkrecon.methods.tfp:TFP",
    "tfi": "spkrecon.methods.tfi:TFI",
    "spk2imgnet": "spkrecon.methods.spk2imgnet:Spk2ImgNet",
    "spk2imgnet-lite": "spkrecon.methods.spk2imgnet_lite:Spk2ImgNetLite",
    "atsnet": "spkrecon.methods.atsnet:ATSNetMethod",
    "tvs": "spkrecon.methods.tvs:TVS",
    "tfstp": "spkrecon.methods.tfstp:TFSTP",
}
_CACHE: dict[str, type[Reconstructor]] = {}

__all__ = ["Reconstructor", "available", "build", "create", "get_class", "register", "suggest"]


def register(name: str, target: str) -> None:
    """Register ``name`` as ``"package.module:ClassName"`` (lazy import)."""
    if ":" not in target:
        raise ValueError(f"target must look like 'module:attr', got {target!r}")
    _REGISTRY[name.lower()] = target
    _CACHE.pop(name.lower(), None)


def available() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)


def suggest(name: str, choices: list[str]) -> str:
    """A " Did you mean 'x'?" suffix, or an empty string."""
    close = difflib.get_close_matches(name.lower(), choices, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else ""


def get_class(name: str) -> type[Reconstructor]:
    """The reconstructor class registered as ``name`` (case-insensitive)."""
    key = name.lower()
    if key not in _REGISTRY:
        hint = suggest(key, available())
        raise UnknownNameError(f"unknown method '{name}' (known: {', '.join(available())})",
                               hint or "run 'spkrecon methods' to list them")
    if key not in _CACHE:
        module, attr = _REGISTRY[key].split(":")
        _CACHE[key] = getattr(importlib.import_module(module), attr)
    return _CACHE[key]


def create(name: str, **params: Any) -> Reconstructor:
    """Instantiate method ``name`` with keyword ``params``; ``None`` values are ignored.

    Values are checked and converted against the constructor's declared types (text such
    as ``"21"`` from a command line becomes 21); a mismatch is a :class:`ParameterError`.
    """
    from spkrecon.methods.params import convert_params

    cls = get_class(name)
    known = cls.parameter_names()
    params = {k: v for k, v in params.items() if v is not None}
    unknown = [k for k in params if k not in known]
    if unknown:
        raise ParameterError(
            f"method '{name}' has no parameter {', '.join(repr(u) for u in unknown)}",
            f"it takes {', '.join(known) or 'no parameters'}")
    params = {k: v for k, v in convert_params(name.lower(), params).items() if v is not None}
    return cls(**params)


def build(name: str, items: Iterable[str] = (), /, **params: Any
          ) -> tuple[Reconstructor, str | None]:
    """Like :func:`create`, and resolve ``"auto"``: returns ``(method, why)``.

    ``items`` are ``--param`` texts (``KEY=VALUE`` or ``METHOD.KEY=VALUE``, see
    :func:`spkrecon.methods.params.split_params`); they win over ``params``.

    With ``auto`` the best available method is picked (the full network on a GPU with its
    weights, else the CPU lite network when shipped, else TFP); parameters the chosen
    method does not take are dropped, and ``why`` says what was picked and why.
    """
    from spkrecon.methods.params import split_params

    items = list(items)
    if name.lower() != "auto":
        if name.lower() not in _REGISTRY:
            raise UnknownNameError(
                f"unknown method '{name}' (known: {', '.join(available())}, auto)",
                suggest(name, available() + ["auto"]) or "run 'spkrecon methods' to list them")
        given = split_params(items, [name.lower()])[name.lower()]
        return create(name, **{**params, **given}), None
    try:
        from spkrecon.methods.auto import choose_auto
    except ImportError:
        chosen, extra, why = "tfp", {}, "no network method is installed"
    else:
        chosen, extra, why = choose_auto(weights=params.get("weights"))
    given = split_params(items, [chosen], alias="auto", drop_unknown=True)[chosen]
    known = get_class(chosen).parameter_names()
    merged = {k: v for k, v in {**extra, **params, **given}.items() if k in known}
    return create(chosen, **merged), f"method auto: using {chosen} ({why})"
