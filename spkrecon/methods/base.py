"""The small interface every reconstructor implements.

A reconstructor turns spikes into *firing-rate estimates*: float32 frames in [0, 1] in
spikes per readout step. Display tone mapping (``spkrecon.tonemap``) turns rates into
images, e.g. by dividing by the conversion rate ``alpha`` for simulated data.

Windowed methods (TFP, TFI, networks) implement :meth:`Reconstructor.reconstruct` on a chunk
of frames and inherit a streaming :meth:`Reconstructor.stream`. Stateful methods (TVS,
TFSTP) set ``stateful = True`` and override :meth:`stream` to carry state between chunks.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from spkrecon.errors import ParameterError
from spkrecon.io.source import ArraySource, SpikeSource


class Reconstructor(ABC):
    """Base class: subclasses set ``name``/``summary``/``paper`` and implement ``reconstruct``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    stateful: ClassVar[bool] = False
    #: Output frames per ``reconstruct`` call the default ``stream`` aims for.
    batch_frames: ClassVar[int] = 256

    def __init__(self, alpha: float = 0.6) -> None:
        if not 0 < alpha <= 1:
            raise ParameterError(f"alpha (conversion rate) must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)

    # -- context ---------------------------------------------------------------------
    @property
    def past(self) -> int:
        """Frames before an output frame that its estimate reads."""
        return 0

    @property
    def future(self) -> int:
        """Frames after an output frame that its estimate reads."""
        return 0

    @property
    def min_frames(self) -> int:
        """The fewest frames a recording must have (the full window)."""
        return self.past + self.future + 1

    # -- work ------------------------------------------------------------------------
    @abstractmethod
    def reconstruct(self, spikes: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Rates at ``centers`` (indices into ``spikes``) from a chunk ``(T, H, W)`` uint8.

        The chunk holds ``past`` frames before and ``future`` after each centre, except
        where the chunk starts or ends at the recording's edge. Returns ``(N, H, W)`` float32.
        """

    def stream(self, source: SpikeSource, indices: Iterable[int]
               ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, rate)`` for each output frame index (ascending), reading in chunks."""
        batch: list[int] = []
        span_limit = max(self.batch_frames, 1) + self.past + self.future
        for idx in indices:
            if batch and (idx + self.future - (batch[0] - self.past) >= span_limit
                          or len(batch) >= self.batch_frames):
                yield from self._run_batch(source, batch)
                batch = []
            batch.append(idx)
        if batch:
            yield from self._run_batch(source, batch)

    def _run_batch(self, source: SpikeSource, batch: Sequence[int]
                   ) -> Iterator[tuple[int, np.ndarray]]:
        lo = max(0, batch[0] - self.past)
        hi = min(source.num_frames, batch[-1] + self.future + 1)
        chunk = source.read(lo, hi)
        out = self.reconstruct(chunk, np.asarray(batch) - lo)
        yield from zip(batch, out, strict=True)

    def __call__(self, spikes: np.ndarray, indices: Iterable[int] | None = None) -> np.ndarray:
        """Rates ``(N, H, W)`` for an in-memory ``(T, H, W)`` array (every frame by default)."""
        src = ArraySource(np.asarray(spikes))
        idx = range(src.num_frames) if indices is None else indices
        frames = [f for _, f in self.stream(src, idx)]
        if not frames:
            return np.zeros((0, src.height, src.width), np.float32)
        return np.stack(frames)

    # -- description -----------------------------------------------------------------
    @classmethod
    def parameter_names(cls) -> list[str]:
        """Keyword parameters the constructor accepts (over the whole class hierarchy)."""
        names: list[str] = []
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind is p.KEYWORD_ONLY or (
                        p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD):
                    if p.name not in names:
                        names.append(p.name)
        return names

    def params(self) -> dict[str, Any]:
        """Current parameter values, for sidecars and reports."""
        return {n: getattr(self, n) for n in self.parameter_names() if hasattr(self, n)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
