from __future__ import annotations

import numpy as np
import pytest

from spkrecon.errors import ParameterError
from spkrecon.tonemap import ToneMapper, to_uint8, to_uint16


def test_alpha_mode_divides_and_clips() -> None:
    rates = np.array([[0.0, 0.3, 0.6, 0.9]], np.float32)
    out = ToneMapper("alpha", alpha=0.6)(rates)
    assert np.allclose(out, [[0.0, 0.5, 1.0, 1.0]])
    assert out.dtype == np.float32


def test_auto_mode_maps_a_percentile_to_white_and_is_smooth() -> None:
    rng = np.random.default_rng(0)
    dim = (rng.random((50, 60)) * 0.1).astype(np.float32)
    mapper = ToneMapper("auto", gamma=1.0, smoothing=0.0)
    out = mapper(dim)
    assert out.max() == pytest.approx(1.0)
    assert np.percentile(out, 50) > 0.3  # a dim recording is brightened
    smooth = ToneMapper("auto", gamma=1.0, smoothing=0.9)
    first = smooth(dim).mean()
    second = smooth(dim * 2).mean()  # a sudden doubling is followed gradually...
    instant = ToneMapper("auto", gamma=1.0, smoothing=0.0)
    instant(dim)
    assert second > first * 1.3
    assert instant(dim * 2).mean() == pytest.approx(first, rel=0.01)  # ...not at once


def test_gamma_and_validation() -> None:
    rates = np.full((4, 4), 0.25, np.float32)
    assert np.allclose(ToneMapper("linear", gamma=0.5)(rates), 0.5)
    for kwargs in ({"mode": "nope"}, {"gamma": 0}, {"alpha": 0}, {"percentile": 10}):
        with pytest.raises(ParameterError):
            ToneMapper(**kwargs)


def test_integer_conversion_rounds() -> None:
    img = np.array([0.0, 0.5, 1.0, 2.0], np.float32)
    assert to_uint8(img).tolist() == [0, 128, 255, 255]
    assert to_uint16(img).tolist() == [0, 32768, 65535, 65535]
