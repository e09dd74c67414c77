"""The docs stay in step with the code."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_cli_docs",
                                                  ROOT / "tools" / "gen_cli_docs.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    current = (ROOT / "docs" / "cli.md").read_text()
    assert mod.render() == current, "docs/cli.md is stale: run python tools/gen_cli_docs.py"


def test_readme_links_exist() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text)
    assert links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing


def test_readme_commands_match_ci() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = next(line for line in ci.splitlines() if "pytest" in line)
    assert test_cmd.strip() in readme
    assert "spkrecon video sample -o sample.mp4" in readme


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_docs_pages_link_to_existing_images() -> None:
    for page in (ROOT / "docs").rglob("*.md"):
        for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            assert (page.parent / img).exists(), f"{page.name}: {img}"
