"""Weights files: our format, validation errors, import of the authors' release, lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import spkrecon  # noqa: E402
from spkrecon.errors import OutputError, WeightsError  # noqa: E402
from spkrecon.models import weights as W  # noqa: E402
from spkrecon.models.spk2imgnet import PRESETS, Spk2ImgNet, Spk2ImgNetConfig  # noqa: E402

SMALL = Spk2ImgNetConfig(features=16, num_blocks=2)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Point $SPKRECON_WEIGHTS and the platformdirs cache at empty temporary folders."""
    env = tmp_path / "env"
    cache = tmp_path / "xdg-cache"
    env.mkdir()
    monkeypatch.setenv(W.ENV_VAR, str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return env, cache / "spkrecon" / "weights"


def _ckpt(cfg: Spk2ImgNetConfig = SMALL, seed: int = 0) -> W.Checkpoint:
    torch.manual_seed(seed)
    model = Spk2ImgNet(cfg)
    return W.Checkpoint(state_dict=model.state_dict(), config=cfg.to_dict(), alpha=0.5,
                        meta=W.make_meta(training_data="unit test", iterations=7))


def test_save_load_round_trip_rebuilds_the_model(tmp_path):
    ckpt = _ckpt(Spk2ImgNetConfig.preset("net_c", features=16, num_blocks=1))
    path = W.save_checkpoint(ckpt, tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)  # plain data: safe load works
    assert raw["format"] == W.FORMAT and raw["format_version"] == W.FORMAT_VERSION
    back = W.load_checkpoint(path)
    assert back.model_config() == ckpt.model_config()
    assert back.alpha == 0.5
    assert back.meta["iterations"] == 7 and back.meta["version"] == spkrecon.__version__
    model = W.build_model(back)
    assert model.config.variant == "net_c" and model.pcd_align is not None
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt.state_dict[k])
    assert not list(tmp_path.glob("*.partial"))


def test_save_refuses_to_overwrite_without_force(tmp_path):
    path = W.save_checkpoint(_ckpt(), tmp_path / "m.pt")
    with pytest.raises(OutputError, match="already exists"):
        W.save_checkpoint(_ckpt(seed=1), path)
    W.save_checkpoint(_ckpt(seed=1), path, force=True)
    assert torch.equal(W.load_checkpoint(path).state_dict["rec_conv2.bias"],
                       _ckpt(seed=1).state_dict["rec_conv2.bias"])


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
        W.load_checkpoint(bad)
    with pytest.raises(WeightsError, match="does not exist"):
        W.load_checkpoint(tmp_path / "missing.pt")


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": W.FORMAT, "obj": Path("x")}, path)
    with pytest.raises(WeightsError, match="refused for safety.*pathlib.PosixPath"):
        W.load_checkpoint(path)


def test_bare_state_dict_points_to_import(tmp_path):
    path = tmp_path / "model_061.pth"
    torch.save(Spk2ImgNet(SMALL).state_dict(), path)
    with pytest.raises(WeightsError, match="weights import"):
        W.load_checkpoint(path)


def test_wrong_keys_and_shapes_name_what_was_expected(tmp_path):
    ckpt = _ckpt()
    sd = dict(ckpt.state_dict)
    del sd["rec_conv1.bias"]
    sd["extra.weight"] = torch.zeros(1)
    W.save_checkpoint(W.Checkpoint(sd, ckpt.config), tmp_path / "keys.pt")
    with pytest.raises(WeightsError) as err:
        W.build_model(W.load_checkpoint(tmp_path / "keys.pt"))
    msg = str(err.value)
    assert "missing 1 keys: rec_conv1.bias" in msg and "unexpected 1 keys: extra.weight" in msg
    assert "net_e (width 16, depth 2)" in msg

    wide = W.Checkpoint(_ckpt().state_dict, SMALL.with_(features=24).to_dict())
    W.save_checkpoint(wide, tmp_path / "shapes.pt")
    with pytest.raises(WeightsError, match=r"wrong shapes: extractor\.conv\.weight is "
                                           r"\[16, 4, 3, 3\], expected \[24, 4, 3, 3\]"):
        W.load_model(tmp_path / "shapes.pt")


def test_bad_config_and_foreign_dicts(tmp_path):
    path = tmp_path / "cfg.pt"
    W.save_checkpoint(W.Checkpoint(_ckpt().state_dict, {"features": 16, "colour": 1}), path)
    with pytest.raises(WeightsError, match="invalid architecture config"):
        W.load_checkpoint(path)
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a spkrecon weights file"):
        W.load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("name", [*PRESETS, "net_b+raw_skip", "net_a+raw_skip"])
def test_import_infers_the_architecture(tmp_path, name):
    preset, _, extra = name.partition("+")
    cfg = Spk2ImgNetConfig.preset(preset, features=16, num_blocks=3, raw_skip=bool(extra))
    sd = {f"module.{k}": v for k, v in Spk2ImgNet(cfg).state_dict().items()}
    torch.save(sd, tmp_path / "release.pth")
    ckpt = W.import_authors_checkpoint(tmp_path / "release.pth", tmp_path / "ours.pt")
    assert ckpt.model_config() == cfg
    back = W.load_checkpoint(tmp_path / "ours.pt")
    assert back.meta["source_file"] == "release.pth" and len(back.meta["source_sha256"]) == 64
    assert set(back.state_dict) == {k[len("module."):] for k in sd}


def test_import_rejects_foreign_state_dicts(tmp_path):
    torch.save({"module.conv.weight": torch.zeros(3, 3)}, tmp_path / "x.pth")
    with pytest.raises(WeightsError, match="Spk2ImgNet's parameter names"):
        W.import_authors_checkpoint(tmp_path / "x.pth", tmp_path / "y.pt")
    assert not (tmp_path / "y.pt").exists()


def test_import_of_the_reference_release_reproduces_its_outputs(shared_dir, tmp_path):
    ref = torch.load(shared_dir / "reference" / "spk2imgnet_official_reference.pt",
                     weights_only=True)
    torch.save({f"module.{k}": v for k, v in ref["state_dict"].items()}, tmp_path / "m.pth")
    W.import_authors_checkpoint(tmp_path / "m.pth", tmp_path / "spk2imgnet.pt")
    model, ckpt = W.load_model(tmp_path / "spk2imgnet.pt")
    assert ckpt.model_config() == Spk2ImgNetConfig() and ckpt.alpha == 0.6
    with torch.inference_mode():
        image, _ = model(ref["input"])
    torch.testing.assert_close(image, ref["outputs"][0], atol=1e-4, rtol=0)


def test_lookup_order(tmp_path, isolated, monkeypatch):
    env, cache = isolated
    name = "unit-test-lookup"
    locs = W.search_locations()
    assert [label for label, _ in locs] == ["env", "package", "repo", "cache"]
    assert dict(locs)["repo"] == Path(spkrecon.__file__).resolve().parents[1] / "weights"
    assert dict(locs)["cache"] == cache

    with pytest.raises(WeightsError) as err:
        W.resolve_weights(name)
    msg = str(err.value)
    assert all(str(p) in msg for _, p in W.candidate_paths(name))
    assert "spkrecon weights import" in msg and "spkrecon train" in msg

    W.save_checkpoint(_ckpt(), cache / f"{name}.pt")
    assert W.resolve_weights(name) == cache / f"{name}.pt"
    W.save_checkpoint(_ckpt(), env / f"{name}.pt")
    assert W.resolve_weights(name) == env / f"{name}.pt"
    explicit = W.save_checkpoint(_ckpt(), tmp_path / "elsewhere" / "mine.pt")
    assert W.resolve_weights(str(explicit)) == explicit
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve_weights(str(tmp_path / "nope.pt"))

    # $SPKRECON_WEIGHTS may name a file: it serves its own stem and the default name.
    monkeypatch.setenv(W.ENV_VAR, str(explicit))
    assert W.resolve_weights("mine") == explicit
    assert W.resolve_weights(None) == explicit
    assert W.resolve_weights(name) == cache / f"{name}.pt"


def test_list_weights_marks_the_file_a_name_resolves_to(isolated):
    env, cache = isolated
    W.save_checkpoint(_ckpt(), env / "unit-test-list.pt")
    W.save_checkpoint(_ckpt(), cache / "unit-test-list.pt")
    (cache / "broken.pt").write_text("x")
    found = [e for e in W.list_weights(describe=True) if e.location in ("env", "cache")]
    by = {(e.location, e.name): e for e in found}
    assert by[("env", "unit-test-list")].active
    assert not by[("cache", "unit-test-list")].active
    assert by[("env", "unit-test-list")].summary["features"] == 16
    assert "not a PyTorch checkpoint" in (by[("cache", "broken")].error or "")


def test_output_path(isolated):
    _, cache = isolated
    assert W.output_path(None) == cache / "spk2imgnet.pt"
    assert W.output_path("spk2imgnet-lite") == cache / "spk2imgnet-lite.pt"
    assert W.output_path("sub/dir/x.pt") == Path("sub/dir/x.pt")
    with pytest.raises(spkrecon.errors.ParameterError):
        W.output_path("bad name!")
