"""Neural networks and their weights.

``spkrecon.models.weights`` (checkpoint format, lookup, import) does not import torch;
``spkrecon.models.spk2imgnet`` (the network) does, and is imported on first use of
:class:`Spk2ImgNet` / :class:`Spk2ImgNetConfig` from here.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Spk2ImgNet": "spkrecon.models.spk2imgnet",
    "Spk2ImgNetConfig": "spkrecon.models.spk2imgnet",
    "PRESETS": "spkrecon.models.spk2imgnet",
}

__all__ = ["PRESETS", "Spk2ImgNet", "Spk2ImgNetConfig"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spkrecon.models' has no attribute {name!r}")
