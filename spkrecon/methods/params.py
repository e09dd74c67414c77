"""Method parameters: one ``METHOD.KEY=VALUE`` / ``KEY=VALUE`` syntax, checked and converted
against the types the constructors declare.

>>> split_params(["tfp.window=21", "alpha=0.5"], ["tfp", "tfi"])
{'tfp': {'window': '21', 'alpha': '0.5'}, 'tfi': {'alpha': '0.5'}}
>>> convert_params("tfp", {"window": "21"})
{'window': 21}
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Union

from spkrecon.errors import ParameterError

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null")


def split_item(item: str) -> tuple[str | None, str, str]:
    """``"tfp.window=21"`` -> ``("tfp", "window", "21")``; ``"window=21"`` -> ``(None, ...)``."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or key.endswith(".") or key.startswith("."):
        raise ParameterError(f"--param '{item}' is not KEY=VALUE or METHOD.KEY=VALUE",
                             "e.g. -p window=21 or -p tfp.window=21")
    method, dot, name = key.rpartition(".")
    return (method.lower() if dot else None), name.replace("-", "_"), value.strip()


def split_params(items: Iterable[str], methods: Sequence[str], *, alias: str | None = None,
                 drop_unknown: bool = False) -> dict[str, dict[str, Any]]:
    """Assign ``--param`` items to the ``methods`` being run (values stay as given).

    ``METHOD.KEY=VALUE`` applies to that method (which must be one of ``methods``, or
    ``alias``, e.g. ``auto`` for the method it chose); ``KEY=VALUE`` applies to every method
    in ``methods`` that takes ``KEY`` (and must fit one, unless ``drop_unknown``).
    """
    from spkrecon.methods import get_class

    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for item in items:
        method, key, value = split_item(item)
        if method is not None:
            if method == alias and len(methods) == 1:
                method = methods[0]
            if method not in out:
                running = ", ".join(methods) + (f", chosen by {alias}" if alias else "")
                raise ParameterError(f"--param '{item}' names method '{method}', which is not "
                                     f"being run ({running})",
                                     "name a method being run, or drop the METHOD. prefix")
            names = get_class(method).parameter_names()
            if key not in names:
                raise ParameterError(f"method '{method}' has no parameter '{key}'",
                                     f"it takes {', '.join(names) or 'none'}")
            out[method][key] = value
            continue
        takers = [m for m in methods if key in get_class(m).parameter_names()]
        if not takers and not drop_unknown:
            if len(methods) == 1:
                names = get_class(methods[0]).parameter_names()
                raise ParameterError(f"method '{methods[0]}' has no parameter '{key}'",
                                     f"it takes {', '.join(names) or 'none'}")
            raise ParameterError(f"no method being run takes parameter '{key}'",
                                 f"methods being run: {', '.join(methods)}")
        for m in takers:
            out[m][key] = value
    return out


def parameter_types(cls: type) -> dict[str, Any]:
    """Declared types of the constructor parameters over the class hierarchy (subclasses
    win); a parameter without a usable annotation maps to ``Any``."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - an annotation that does not evaluate
            hints = {}
        for p in inspect.signature(init).parameters.values():
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                out[p.name] = hints.get(p.name, Any)
    return out


def _options(hint: Any) -> list[Any]:
    origin = typing.get_origin(hint)
    if origin is Union or (hasattr(types, "UnionType") and isinstance(hint, types.UnionType)):
        return [o for a in typing.get_args(hint) for o in _options(a)]
    return [hint]


def describe_type(hint: Any) -> str:
    """A declared type in words: ``int | None`` -> "an integer or none"."""
    if hint is Any:
        return "any value"
    return " or ".join(dict.fromkeys(_describe(o) for o in _options(hint)))


def _describe(option: Any) -> str:
    if option is type(None):
        return "none"
    if option is bool:
        return "true or false"
    if option is int:
        return "an integer"
    if option is float:
        return "a number"
    if option is str:
        return "a text"
    if typing.get_origin(option) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(option))
    return getattr(option, "__name__", str(option))


def _convert_one(value: Any, option: Any) -> Any:
    """``value`` as ``option`` (a plain type), or raise ``ValueError``."""
    text = value.strip() if isinstance(value, str) else None
    if option is type(None):
        if value is None or (text is not None and text.lower() in _NONE):
            return None
    elif option is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
    elif option is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if text is not None:
            return int(text)
    elif option is float:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif text is not None:
            number = float(text)
        else:
            raise ValueError
        if math.isnan(number):
            raise ValueError
        return number
    elif option is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(option) is Literal:
        for choice in typing.get_args(option):
            if value == choice or (text is not None and text == str(choice)):
                return choice
    elif isinstance(option, type):
        if isinstance(value, option):
            return value
        if text is not None:
            return option(text)
    raise ValueError


def convert_value(method: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` (text from the command line, or a Python value) checked and converted to
    the declared ``hint``; :class:`ParameterError` naming the parameter, value and type."""
    if hint is Any:
        return value
    options = _options(hint)
    # None only for the words none/null; str last, so "21" for an int | str is the int
    order = sorted(options, key=lambda o: (o is not type(None), o is str))
    for option in order:
        try:
            return _convert_one(value, option)
        except (ValueError, TypeError):
            continue
    raise ParameterError(f"parameter {key}={value!s} of method '{method}' is not valid: "
                         f"{key} takes {describe_type(hint)}")


def convert_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every value of ``params`` converted to the type method ``method`` declares for it."""
    from spkrecon.methods import get_class

    hints = parameter_types(get_class(method))
    return {k: convert_value(method, k, v, hints.get(k, Any)) for k, v in params.items()}


__all__ = ["convert_params", "convert_value", "describe_type", "parameter_types", "split_item",
           "split_params"]
