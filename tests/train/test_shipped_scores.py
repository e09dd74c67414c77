"""Every network that ships in ``weights/`` scores what docs/results.md says it scores.

The expected figures are read from the PSNR table of docs/results.md (the column named after
the method), so the page and the test cannot drift apart: every shipped network must have a
column there, and each REDS sample must reproduce to 0.05 dB. Note that these five samples
also picked the lite checkpoint and steered its training (the figures are in-sample; see
docs/results.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "weights").glob("*.pt"))


def documented_psnr() -> dict[str, dict[str, float]]:
    """``{method: {sample: dB}}`` from the first PSNR table of docs/results.md."""
    text = (ROOT / "docs" / "results.md").read_text()
    table = text.split("**PSNR (dB)**", 1)[1].split("\n\n", 2)[1]
    rows = [[c.strip().strip("*") for c in line.strip("|").split("|")]
            for line in table.splitlines() if line.startswith("|")]
    header, body = rows[0], [r for r in rows[2:] if r[0] != "Mean"]
    return {m: {r[0]: float(r[i]) for r in body} for i, m in enumerate(header) if i}


def _method_for(weights: Path):
    from spkrecon.methods import available, create

    name = weights.stem if weights.stem in available() else "spk2imgnet"
    return name, create(name, weights=str(weights), device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("weights", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_network_scores_its_documented_psnr(weights: Path, reds_dir: Path,
                                                    torch_one_thread) -> None:
    from spkrecon.io import open_recording
    from spkrecon.metrics.psnr import psnr
    from spkrecon.scoring import load_image

    name, method = _method_for(weights)
    expected = documented_psnr().get(name)
    assert expected, f"docs/results.md has no PSNR column for the shipped network {name}"
    assert len(expected) == 5
    for sample, want in expected.items():
        dat = reds_dir / f"{sample}_key_id151.dat"
        src = open_recording(dat)
        try:  # key frame 151 (1-based), with as much of the recording as the method reads
            rate = dict(method.stream(src, [150]))[150]
        finally:
            src.close()
        img = np.clip(rate / 0.6, 0, 1)
        got = psnr(img, load_image(dat.with_suffix(".png")), data_range=1.0)
        assert abs(got - want) <= 0.05, f"{name} on {sample}: {got:.3f} dB, documented {want}"


def test_the_documented_table_is_read() -> None:
    table = documented_psnr()
    assert table["tfp"]["200_part1"] == 31.60 and len(table["tfp"]) == 5


#: Figures on data no training saw (the bundled sample's procedural street, key frame 121
#: against sample_gt.png), as README.md, docs/results.md and docs/training.md quote them.
SAMPLE_PSNR = {"spk2imgnet-lite": 30.07, "atsnet": 33.12}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SAMPLE_PSNR))
def test_held_out_sample_figure_is_reproduced_and_quoted(name: str, torch_one_thread) -> None:
    from spkrecon.io import open_recording
    from spkrecon.methods import create
    from spkrecon.metrics.psnr import psnr
    from spkrecon.scoring import load_image

    want = SAMPLE_PSNR[name]
    for doc in ("README.md", "docs/results.md", "docs/training.md"):
        assert f"{want:.2f} dB" in (ROOT / doc).read_text(), f"{doc} does not quote {want}"
    src = open_recording("sample")
    rate = dict(create(name, device="cpu").stream(src, [120]))[120]
    gt = load_image(ROOT / "spkrecon" / "data" / "sample_gt.png")
    got = psnr(np.clip(rate / 0.6, 0, 1), gt, data_range=1.0)
    assert abs(got - want) <= 0.05, f"{name} on the sample: {got:.3f} dB, documented {want}"
