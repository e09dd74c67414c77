"""What the docs say about the code is what the code does (issue 18's corrections)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
         ROOT / "training" / "spk2imgnet-lite-cpu" / "README.md"]


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def test_test_files_named_in_the_docs_exist() -> None:
    for page in PAGES:
        for name in re.findall(r"`(tests/[\w/]+\.py)", page.read_text()):
            assert (ROOT / name).is_file(), f"{page.name} names {name}"


def test_auto_tonemap_gamma_as_documented() -> None:
    from spkrecon.tonemap import AUTO_GAMMA, ToneMapper

    assert ToneMapper("auto").gamma == AUTO_GAMMA == 1 / 1.5
    for page in PAGES:
        for para in _paragraphs(page.read_text()):
            if "--tonemap auto" in para and "gamma" in para:
                assert "1/2.2)" not in para.split("gamma", 1)[1][:12], (page.name, para)


def test_every_quote_of_the_lite_reds_score_says_it_is_in_sample() -> None:
    for page in [*PAGES, ROOT / "spkrecon" / "methods" / "spk2imgnet_lite.py"]:
        for para in _paragraphs(page.read_text()):
            if "35.12" in para and not para.lstrip().startswith("|"):
                assert "in-sample" in para.lower(), (page.name, para[:200])


def test_train_model_help_names_every_addition_of_the_lite_preset() -> None:
    from typer.testing import CliRunner

    from spkrecon.cli import app
    from spkrecon.models.weights import ADDITIONS
    from spkrecon.train.config import MODEL_PRESETS

    res = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0
    help_text = " ".join(res.stdout.split())
    lite = [k for k in ADDITIONS if MODEL_PRESETS["lite"].get(k)]
    assert lite and all(k in help_text for k in lite), lite


@pytest.mark.skipif(not (ROOT / "weights" / "spk2imgnet-lite.pt").is_file(),
                    reason="lite weights not shipped")
def test_lite_weights_note_counts_its_stages() -> None:
    from spkrecon.models.weights import load_checkpoint

    meta = load_checkpoint(ROOT / "weights" / "spk2imgnet-lite.pt").meta
    n = len(meta["stages"])
    assert f"in {n} stages" in meta["note"]
    training = (ROOT / "docs" / "training.md").read_text()
    table = training.split("| stage | network |", 1)[1].split("\n\n", 1)[0]
    assert len(re.findall(r"^\| \d+ \|", table, re.M)) == n
    words = {8: "eight"}
    assert f"{words.get(n, n)} stages" in (ROOT / "docs" / "results.md").read_text()
