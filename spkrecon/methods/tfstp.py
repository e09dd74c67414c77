"""TFSTP: texture from short-term plasticity.

Zheng, Zheng, Yu, Huang, Tian. "High-speed image reconstruction through short-term
plasticity for spiking cameras", CVPR 2021; defaults of SpikeCV's ``TFSTP``
(u0 = 0.15, tau_D = 1, tau_F = 10, f = 0.15, time unit = 1 frame).

Every pixel drives a Tsodyks-Markram synapse. On each spike, with ``D`` the inter-spike
interval in time units::

    R <- 1 - (1 - R (1 - u)) exp(-D / tau_D)
    u <- u0 + (u + f (1 - u) - u0) exp(-D / tau_F)

Under a constant interval both reach a fixed point, and inverting either fixed point gives
the firing rate ``1 / D``::

    rho_R = -1 / (tau_D ln((1 - R) / (1 - R (1 - u))))
    rho_u = -1 / (tau_F ln((u - u0) / (f - u0 + u (1 - f))))

The output is the mean of the two (``estimate="mean"``), in spikes per frame. SpikeCV's
public read-out writes ``tau_F`` where ``rho_u`` needs ``f`` and sums the two estimates;
``public_readout=True`` reproduces that (clipped to [0, 1]; its min-max stretch and
histogram equalisation are display steps, left to the tone mapper).

Numerics: the state is kept as ``ln(1 - R)`` and ``ln(u - u0)``, which follow the same
recursions without the float32 cancellation that makes ``1 - R`` zero after ~17 frames of
silence; the estimates stay exact for intervals of any length. The state changes only at a
pixel's spikes, so each frame costs work in proportion to its spikes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from spkrecon.errors import ParameterError
from spkrecon.io.source import SpikeSource
from spkrecon.methods._streaming import (
    IndexQueue,
    iter_flat_frames,
    reconstruct_chunk,
    segment_start,
)
from spkrecon.methods.base import Reconstructor

ESTIMATES = ("mean", "r", "u")


class TFSTP(Reconstructor):
    """Short-term-plasticity rates, causal and streaming: ``(T, H, W) -> (N, H, W)``."""

    name = "tfstp"
    summary = "Short-term plasticity (Tsodyks-Markram) steady-state read-out (CVPR 2021)"
    paper = "Zheng et al., CVPR 2021"
    stateful = True

    def __init__(self, u0: float = 0.15, tau_d: float = 1.0, tau_f: float = 10.0,
                 f: float = 0.15, time_unit: float = 1.0, estimate: str = "mean",
                 public_readout: bool = False, warmup: int = 200, chunk: int = 256,
                 alpha: float = 0.6) -> None:
        super().__init__(alpha)
        if not 0 < u0 < 1:
            raise ParameterError(f"TFSTP u0 must be in (0, 1), got {u0}")
        if not 0 < f < 1:
            raise ParameterError(f"TFSTP f must be in (0, 1), got {f}")
        for label, val in (("tau_d", tau_d), ("tau_f", tau_f), ("time_unit", time_unit)):
            if not val > 0:
                raise ParameterError(f"TFSTP {label} must be positive, got {val}")
        if estimate not in ESTIMATES:
            raise ParameterError(f"TFSTP estimate must be one of {', '.join(ESTIMATES)}, "
                                 f"got {estimate!r}")
        if warmup < 0 or chunk < 1:
            raise ParameterError("TFSTP warmup must be >= 0 and chunk >= 1")
        self.u0, self.tau_d, self.tau_f, self.f = float(u0), float(tau_d), float(tau_f), float(f)
        self.time_unit = float(time_unit)
        self.estimate = estimate
        self.public_readout = bool(public_readout)
        self.warmup = int(warmup)
        self.chunk = int(chunk)

    def reconstruct(self, spikes: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Rates at ``centers`` of an in-memory chunk ``(T, H, W)``, run from its first frame."""
        return reconstruct_chunk(self, spikes, centers)

    # -- streaming -------------------------------------------------------------------
    def stream(self, source: SpikeSource, indices: Iterable[int]
               ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, rate)`` for ascending ``indices``, reading sequentially.

        Each run of indices starts ``warmup`` frames before its first index (or at frame 0);
        a gap longer than ``warmup`` between two indices starts a fresh run there.
        """
        return self._stream(source, indices, self.warmup)

    def _stream(self, source: SpikeSource, indices: Iterable[int], warmup: int
                ) -> Iterator[tuple[int, np.ndarray]]:
        queue = IndexQueue(indices, source.num_frames)
        h, w = source.height, source.width
        while queue:
            start = segment_start(queue.peek, warmup)
            state = _STPState(self, h * w, start)
            for t, frame in iter_flat_frames(source, start, self.chunk):
                state.update(frame, t)
                while queue and queue.peek == t:
                    yield queue.pop(), state.rate.reshape(h, w).copy()
                if not queue or queue.peek - t > warmup:
                    break


class _STPState:
    """Per-pixel synapse state of one run, flat ``(H*W,)`` float32, updated on spikes."""

    def __init__(self, m: TFSTP, n: int, start: int) -> None:
        self.u0, self.f = np.float32(m.u0), np.float32(m.f)
        self.cd = np.float32(1.0 / (m.tau_d * m.time_unit))  # per frame, in exp(-d cd)
        self.cf = np.float32(1.0 / (m.tau_f * m.time_unit))
        self.tau_d, self.tau_f = np.float32(m.tau_d), np.float32(m.tau_f)
        self.scale = np.float32(1.0 / m.time_unit)
        self.kf = np.float32(m.f * (1.0 - m.u0))
        self.estimate, self.public = m.estimate, m.public_readout
        self.tau_f_public = np.float32(m.tau_f)
        self.lq = np.full(n, -np.inf, np.float32)   # ln(1 - R); R starts at 1
        self.lv = np.full(n, -np.inf, np.float32)   # ln(u - u0); u starts at u0
        self.last = np.full(n, start - 1, np.int64)  # as SpikeCV: the clock starts at 0
        self.rate = np.zeros(n, np.float32)

    def update(self, frame: np.ndarray, t: int) -> None:
        idx = np.flatnonzero(frame)
        if idx.size == 0:
            return
        d = (t - self.last[idx]).astype(np.float32)
        self.last[idx] = t
        one = np.float32(1.0)
        v_old = np.exp(self.lv[idx])
        u_old = self.u0 + v_old
        q_old = np.exp(self.lq[idx])
        lq = np.log(u_old + q_old * (one - u_old)) - d * self.cd
        lv = np.log(v_old * (one - self.f) + self.kf) - d * self.cf
        self.lq[idx] = lq
        self.lv[idx] = lv
        v = np.exp(lv)
        u = self.u0 + v
        q = np.exp(lq)
        # ln of the fixed-point ratios; both are < 0, so the rates are positive.
        ln_r = lq - np.log(u + q * (one - u))
        rho_r = -one / (self.tau_d * ln_r)
        if self.public:
            ln_u = lv - np.log(self.tau_f_public - self.u0 + u * (one - self.f))
            rho = (-one / (self.tau_f * ln_u) + rho_r)
        else:
            ln_u = lv - np.log(v * (one - self.f) + self.kf)
            rho_u = -one / (self.tau_f * ln_u)
            if self.estimate == "mean":
                rho = (rho_r + rho_u) * np.float32(0.5)
            else:
                rho = rho_r if self.estimate == "r" else rho_u
        rho *= self.scale
        np.clip(rho, 0.0, 1.0, out=rho)
        self.rate[idx] = rho

