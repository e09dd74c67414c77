"""``spkrecon weights list|import|info`` (the typer sub-app)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from typer.testing import CliRunner  # noqa: E402

from spkrecon.cli.weights import app  # noqa: E402
from spkrecon.models import weights as W  # noqa: E402
from spkrecon.models.spk2imgnet import Spk2ImgNet, Spk2ImgNetConfig  # noqa: E402

runner = CliRunner()
CFG = Spk2ImgNetConfig.preset("net_d", features=16, num_blocks=2)


@pytest.fixture
def env(tmp_path, monkeypatch):
    folder = tmp_path / "env"
    folder.mkdir()
    monkeypatch.setenv(W.ENV_VAR, str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return folder


@pytest.fixture
def release(tmp_path):
    """A checkpoint shaped like the authors' release: a state dict saved via DataParallel."""
    path = tmp_path / "model_061.pth"
    torch.save({f"module.{k}": v for k, v in Spk2ImgNet(CFG).state_dict().items()}, path)
    return path


def test_import_then_info_and_list(env, release):
    res = runner.invoke(app, ["import", str(release), "-o", str(env / "mine.pt")])
    assert res.exit_code == 0, res.output
    assert "net_d" in res.output
    assert W.load_checkpoint(env / "mine.pt").model_config() == CFG

    res = runner.invoke(app, ["info", str(env / "mine.pt")])
    assert res.exit_code == 0, res.output
    assert "net_d" in res.output and "model_061.pth" in res.output

    res = runner.invoke(app, ["list", "--describe"])
    assert res.exit_code == 0 and "source_file: model_061.pth" in res.output

    res = runner.invoke(app, ["list", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["locations"][0] == {"location": "env", "path": str(env), "exists": True}
    mine = [w for w in data["weights"] if w["path"] == str(env / "mine.pt")]
    assert mine and mine[0]["summary"]["variant"] == "net_d" and mine[0]["active"]


def test_import_by_name_goes_to_the_cache_and_refuses_to_overwrite(env, release, tmp_path):
    # a name the repository does not ship (its weights/ would come before the cache)
    res = runner.invoke(app, ["import", str(release), "-o", "my-net"])
    assert res.exit_code == 0, res.output
    target = tmp_path / "cache" / "spkrecon" / "weights" / "my-net.pt"
    assert target.is_file()
    res = runner.invoke(app, ["import", str(release), "-o", "my-net"])
    assert res.exit_code == 3 and "already exists" in res.output
    res = runner.invoke(app, ["import", str(release), "-o", "my-net", "--force"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["info", "my-net", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["path"] == str(target)


def test_errors_are_one_clear_line(env, release, tmp_path):
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"\x00\x01 junk")
    res = runner.invoke(app, ["import", str(bad), "-o", str(tmp_path / "x.pt")])
    assert res.exit_code == 4 and "not a PyTorch checkpoint" in res.output
    res = runner.invoke(app, ["info", str(release)])
    assert res.exit_code == 4 and "spkrecon weights import" in res.output
    res = runner.invoke(app, ["info", "nothing-here"])
    assert res.exit_code == 4 and "no 'nothing-here' weights found" in res.output


def test_list_shows_searched_locations(env, release):
    (env / "model_061.pth").write_bytes(release.read_bytes())
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0, res.output
    assert "searched, in order" in res.output and str(env) in res.output
    assert "weights import" in res.output  # the unconverted release is flagged
