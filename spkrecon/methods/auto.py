"""``--method auto``: the best reconstructor this machine can run.

0. the network the weights the user gave (``--weights``) are for, if any (``atsnet`` or
   ``spk2imgnet``, from the file's ``arch``);
1. ``spk2imgnet`` with the full weights, when a CUDA GPU and those weights are present;
2. else spkrecon's ATSNet (method ``atsnet``), when its weights are present;
3. else the older CPU model (method ``spk2imgnet-lite``, or ``spk2imgnet`` with the
   ``spk2imgnet-lite`` weights), when those weights are present;
4. else TFP.

Cheap when torch or the weights are absent: weights are looked up as files first, and torch
is imported only when the full weights exist (to ask for CUDA) or ``--weights`` was given (to
read the file's ``arch``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from spkrecon.models.weights import DEFAULT_NAME, LITE_NAME, find_weights

#: spkrecon's own CPU network (``weights/atsnet.pt``).
ATS_NAME = "atsnet"

#: The CPU networks ``--method auto`` tries on a machine without a CUDA GPU (steps 2 and 3
#: above), in order: the first whose weights are found runs. The one place the tests take
#: auto's CPU choice from.
CPU_PREFERENCE = (ATS_NAME, LITE_NAME)


def _has_torch() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "torchvision"))


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - checked by _has_torch
        return False
    return bool(torch.cuda.is_available())


def _weights_arch(weights: str) -> str | None:
    """The ``arch`` a weights file names, or None where it cannot be read.

    The method that runs the file then reports what is wrong with it.
    """
    from spkrecon.errors import SpkreconError
    from spkrecon.models.weights import load_checkpoint, resolve_weights

    try:
        return load_checkpoint(resolve_weights(weights)).arch
    except (SpkreconError, OSError):
        return None


def choose_auto(weights: str | None = None) -> tuple[str, dict[str, Any], str]:
    """``(method name, parameters, reason)`` for ``--method auto``.

    ``weights`` (the user's ``--weights``, if any) asks for that network explicitly.
    """
    if not _has_torch():
        return "tfp", {}, "PyTorch/torchvision are not installed, so no network can run"
    if weights is not None:
        name = _weights_arch(weights) or "spk2imgnet"
        return name, {"weights": weights}, f"--weights {weights} was given ({name} weights)"
    full = find_weights(DEFAULT_NAME)
    lite = find_weights(LITE_NAME)
    gpu = full is not None and _cuda_available()
    if gpu:
        return ("spk2imgnet", {"weights": str(full), "device": "cuda"},
                f"a CUDA GPU and the Spk2ImgNet weights {full} are present")
    from spkrecon.methods import available

    why = "no CUDA GPU" if full is not None else "no full Spk2ImgNet weights"
    for cpu in CPU_PREFERENCE:
        found = lite if cpu == LITE_NAME else find_weights(cpu)
        if found is None:
            continue
        if cpu == LITE_NAME:  # the spk2imgnet reconstructor runs these weights too
            name = cpu if cpu in available() else "spk2imgnet"
            return (name, {"weights": str(found), "device": "auto"},
                    f"{why}; the CPU model {LITE_NAME} ({found}) is present")
        if cpu in available():
            return (cpu, {"weights": str(found), "device": "auto"},
                    f"{why}; spkrecon's CPU network {cpu} ({found}) is present")
    if full is not None:
        return ("tfp", {}, f"Spk2ImgNet weights are present ({full}) but there is no CUDA GPU "
                "and no CPU model; run --method spk2imgnet to use them on the CPU (slow)")
    return ("tfp", {}, "no Spk2ImgNet weights found; get them with 'spkrecon weights import' "
            "or 'spkrecon train'")
