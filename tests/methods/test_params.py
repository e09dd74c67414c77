"""Method parameters: one syntax, checked and converted against the declared types."""

from __future__ import annotations

from typing import Literal

import pytest

from spkrecon.errors import ParameterError
from spkrecon.methods import build, create
from spkrecon.methods.params import convert_value, parameter_types, split_params


@pytest.mark.parametrize(("value", "hint", "expected"), [
    ("21", int, 21), (21, int, 21), (21.0, int, 21), ("0.5", float, 0.5), (1, float, 1.0),
    ("yes", bool, True), ("off", bool, False), (True, bool, True), ("mean", str, "mean"),
    ("none", int | None, None), ("7", int | None, 7), ("none", str | None, None),
    ("x.pt", str | None, "x.pt"), ("r", Literal["r", "u"], "r"),
])
def test_values_are_converted(value, hint, expected) -> None:
    got = convert_value("m", "k", value, hint)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("value", "hint", "words"), [
    ("abc", int, "k takes an integer"), ("3.7", int, "k takes an integer"),
    (3.7, int, "an integer"), ("true", int, "an integer"), (True, int, "an integer"),
    ("abc", float, "k takes a number"), ("nan", float, "a number"), (True, float, "a number"),
    ("maybe", bool, "true or false"), (1, str, "a text"),
    ("abc", int | None, "an integer or none"), ("x", Literal["r", "u"], "one of r, u"),
])
def test_bad_values_name_parameter_value_and_type(value, hint, words) -> None:
    with pytest.raises(ParameterError, match="parameter k=") as err:
        convert_value("m", "k", value, hint)
    assert words in str(err.value) and str(value) in str(err.value)


def test_declared_types_cover_the_class_hierarchy() -> None:
    from spkrecon.methods import get_class

    types = parameter_types(get_class("tfstp"))
    assert types["u0"] is float and types["warmup"] is int and types["alpha"] is float
    assert types["public_readout"] is bool and types["estimate"] is str


def test_create_and_build_check_every_value() -> None:
    assert create("tfp", window="9").window == 9
    with pytest.raises(ParameterError, match="window takes an integer"):
        create("tfp", window=3.7)
    method, why = build("tfp", ["tfp.window=5", "alpha=0.5"], window=21, alpha=0.6)
    assert (method.window, method.alpha, why) == (5, 0.5, None)  # -p wins
    with pytest.raises(ParameterError, match="names method 'tfi', which is not being run"):
        build("tfp", ["tfi.window=5"])
    with pytest.raises(ParameterError, match="did you mean 'auto'"):
        build("autoo")


def test_split_params_assigns_plain_keys_to_every_taker() -> None:
    out = split_params(["tfp.window=21", "alpha=0.5"], ["tfp", "tfi"])
    assert out == {"tfp": {"window": "21", "alpha": "0.5"}, "tfi": {"alpha": "0.5"}}
    with pytest.raises(ParameterError, match="no method being run takes parameter 'u0'"):
        split_params(["u0=1"], ["tfp", "tfi"])
    assert split_params(["u0=1"], ["tfp"], drop_unknown=True) == {"tfp": {}}
    with pytest.raises(ParameterError, match="KEY=VALUE or METHOD.KEY=VALUE"):
        split_params(["tfp.=3"], ["tfp"])


def test_methods_json_lists_the_declared_types() -> None:
    import json

    from typer.testing import CliRunner

    from spkrecon.cli import app

    res = CliRunner().invoke(app, ["methods", "--json"])
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["tfp"]["types"] == {"alpha": "a number", "window": "an integer"}
    assert rows["tfstp"]["types"]["public_readout"] == "true or false"
