"""TVS: retina-like reconstruction with a spiking neural model (three layers).

Zhu, Li, Dong, Huang, Tian. "Retina-like Visual Image Reconstruction via Spiking Neural
Model", CVPR 2020. The equations follow the authors' poster, the numbers their demo code
(MIT, Python 2.7 + Brian2 + MATLAB); ``docs/methods/tvs.md`` lists every choice made where
neither says enough.

1. **Motion local excitation** (MLE): each pixel's inter-spike intervals (ISIs) are compared
   with its background statistics (mean ``mu`` and ``sigma = std + p mu`` over the first
   ``stats_frames`` frames); every frame of ISI ``d`` gets the motion confidence
   ``O = 1 - exp(-(d - mu)^2 / (2 sigma^2))``. The dynamic/static labels ``M`` of a frame
   minimise ``sum (a - O^2 / 2) M + lambda a * #label changes`` over the 4-connected grid,
   solved exactly as an s-t min-cut (``a = Var(O) / 2``); more than 70 % dynamic marks the
   whole frame dynamic.
2. **Spike refining** (SRL): one LIF neuron per pixel (an identity with the published
   constants) behind a refractory rule that drops a static pixel's spike arriving less than
   ``refractory * mu`` frames after its last accepted one.
3. **Visual reconstruction** (VRL): conductance LIF neurons fed by the refined spikes of
   their 3x3 neighbourhood through fixed spatial weights and STDP-plastic weights, each with
   an adaptive threshold (``+eta0`` per output spike, relaxing to ``theta0`` with
   ``tau_theta``, or ``tau_theta * N`` on dynamic pixels).

Read-out (spikes per frame): a static pixel's time-averaged ``theta - theta0`` equals
``eta0 * tau_theta`` times its output rate, which equals its input rate until the threshold
reaches the input weight (about 0.21 spikes per frame), so ``rate = (theta - theta0) /
(eta0 tau_theta)``. A dynamic pixel reads ``rate(t-) * kappa^gamma`` with ``t-`` its last
static frame and ``kappa`` the mean ISI before ``t-`` over the ISI containing ``t``.
``extend_range=True`` (the default; ``False`` is the strict specification) lifts the
saturation of the static read-out (not in the paper; see the docs).
``mode="camera_moving"`` is the authors' default read-out instead: ``1 / d*`` with ``d*``
the refined ISI of their code (no motion layer).

Everything is vectorised over pixels and streams over time: the ISI containing a frame is
known only when it ends, so frames are processed ``lookahead`` frames behind the reader
(ISIs longer than that count as ``lookahead + 1``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

from spkrecon.errors import ParameterError
from spkrecon.io.source import SpikeSource
from spkrecon.methods._streaming import (
    IndexQueue,
    iter_flat_frames,
    reconstruct_chunk,
    segment_start,
)
from spkrecon.methods._tvs_mincut import GridCut
from spkrecon.methods.base import Reconstructor

MODES = ("paper", "camera_moving")
_N_CAP = 1 << 16  # spike counts beyond this share one threshold decay factor


class TVS(Reconstructor):
    """Three-layer spiking model ``(T, H, W) -> (N, H, W)`` rates; see the module docstring."""

    name = "tvs"
    summary = "Spiking neural model: motion min-cut, refining LIF, STDP LIF read-out (CVPR 2020)"
    paper = "Zhu et al., CVPR 2020"
    stateful = True

    def __init__(self, mode: str = "paper",
                 # layer 1: motion local excitation
                 stats_frames: int = 500, sigma_p: float = 0.5, cut_lambda: float = 5.0,
                 cut_alpha_min: float = 0.005, dynamic_fraction: float = 0.7,
                 cut_every: int = 1, lookahead: int = 128,
                 # layer 2: spike refining
                 refractory: float = 0.5, srl_tau: float = 40.0, srl_weight: float = 10.0,
                 srl_vth: float = 1.0, srl_tauth: float = 80.0, srl_reset: float = 1e-4,
                 # layer 3: visual reconstruction
                 tau_m: float = 40.0, tau_e: float = 200.0, e_e: float = 0.0,
                 v_r: float = -600.0, e_l: float = 0.0, input_weight: float = 50.0,
                 kernel_decay: float = 10.0, a_pre: float = 0.002 / 9, a_post: float = -0.0021,
                 tau_pre: float = 40.0, tau_post: float = 40.0, g_max: float = 0.2,
                 w_init: float = 0.0, theta0: float = 1.0, eta0: float = 3.0,
                 tau_theta: float = 80.0, theta_init: float = 20.0,
                 # read-out and streaming
                 gamma: float = 1.0, lookback: int = 1000, extend_range: bool = True,
                 warmup: int = 400, chunk: int = 64,
                 alpha: float = 0.6) -> None:
        super().__init__(alpha)
        if mode not in MODES:
            raise ParameterError(f"TVS mode must be one of {', '.join(MODES)}, got {mode!r}")
        positive = {"stats_frames": stats_frames, "cut_lambda": cut_lambda,
                    "srl_tau": srl_tau, "srl_tauth": srl_tauth, "tau_m": tau_m,
                    "tau_e": tau_e, "tau_pre": tau_pre, "tau_post": tau_post,
                    "tau_theta": tau_theta, "eta0": eta0, "input_weight": input_weight,
                    "lookback": lookback, "chunk": chunk, "cut_every": cut_every}
        for label, val in positive.items():
            if not val > 0:
                raise ParameterError(f"TVS {label} must be positive, got {val}")
        if not 1 <= lookahead <= 65000:
            raise ParameterError(f"TVS lookahead must be 1..65000 frames, got {lookahead}")
        if not 0 < dynamic_fraction <= 1:
            raise ParameterError(f"TVS dynamic_fraction must be in (0, 1], got {dynamic_fraction}")
        for label, val in (("sigma_p", sigma_p), ("cut_alpha_min", cut_alpha_min),
                           ("refractory", refractory), ("g_max", g_max), ("warmup", warmup)):
            if val < 0:
                raise ParameterError(f"TVS {label} must be >= 0, got {val}")
        if not 0 <= w_init <= g_max:
            raise ParameterError(f"TVS w_init must be in [0, g_max], got {w_init}")
        self.mode = mode
        self.stats_frames, self.sigma_p = int(stats_frames), float(sigma_p)
        self.cut_lambda, self.cut_alpha_min = float(cut_lambda), float(cut_alpha_min)
        self.dynamic_fraction, self.cut_every = float(dynamic_fraction), int(cut_every)
        self.lookahead = int(lookahead)
        self.refractory, self.srl_tau, self.srl_weight = float(refractory), float(srl_tau), \
            float(srl_weight)
        self.srl_vth, self.srl_tauth, self.srl_reset = float(srl_vth), float(srl_tauth), \
            float(srl_reset)
        self.tau_m, self.tau_e, self.e_e, self.v_r, self.e_l = float(tau_m), float(tau_e), \
            float(e_e), float(v_r), float(e_l)
        self.input_weight, self.kernel_decay = float(input_weight), float(kernel_decay)
        self.a_pre, self.a_post, self.tau_pre, self.tau_post = float(a_pre), float(a_post), \
            float(tau_pre), float(tau_post)
        self.g_max, self.w_init = float(g_max), float(w_init)
        self.theta0, self.eta0, self.tau_theta = float(theta0), float(eta0), float(tau_theta)
        self.theta_init = float(theta_init)
        self.gamma, self.lookback = float(gamma), int(lookback)
        self.extend_range = bool(extend_range)
        self.warmup, self.chunk = int(warmup), int(chunk)
        #: Min-cut counters of the last run: ``{"solved": n, "trivial": n}``.
        self.cut_stats: dict[str, int] = {"solved": 0, "trivial": 0}

    def reconstruct(self, spikes: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Rates at ``centers`` of an in-memory chunk ``(T, H, W)``, run from its first frame."""
        return reconstruct_chunk(self, spikes, centers)

    @property
    def saturation_rate(self) -> float:
        """Input rate (spikes per frame) above which the threshold read-out saturates.

        A layer-3 neuron fires once per input spike while its threshold stays below the
        input weight; the threshold then sits at ``theta0 + eta0 tau_theta rate`` on average.
        """
        return (self.input_weight - self.theta0) / (self.eta0 * self.tau_theta)

    def rate_from_threshold(self, theta: np.ndarray) -> np.ndarray:
        """Static read-out: firing rate from the adaptive threshold (see the module docstring)."""
        out = (np.asarray(theta, np.float32) - np.float32(self.theta0)) * np.float32(
            1.0 / (self.eta0 * self.tau_theta))
        return np.clip(out, 0.0, 1.0, out=out)

    # -- streaming -------------------------------------------------------------------
    def stream(self, source: SpikeSource, indices: Iterable[int]
               ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, rate)`` for ascending ``indices``, reading sequentially.

        A run starts ``warmup`` frames before its first index (or at frame 0) and reads up to
        ``lookahead`` frames past the index it outputs; a gap longer than ``warmup`` between
        two indices starts a fresh run (with fresh background statistics) there.
        """
        return self._stream(source, indices, self.warmup)

    def motion_masks(self, source: SpikeSource, indices: Iterable[int]
                     ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, mask)``: layer 1's labels ``(H, W)`` bool (True = dynamic).

        Runs the ``paper`` mode exactly as :meth:`stream` does, whatever ``mode`` is.
        """
        return self._stream(source, indices, self.warmup, masks=True)

    def _stream(self, source: SpikeSource, indices: Iterable[int], warmup: int,
                masks: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        queue = IndexQueue(indices, source.num_frames)
        h, w = source.height, source.width
        self.cut_stats = {"solved": 0, "trivial": 0}
        while queue:
            start = segment_start(queue.peek, warmup)
            tracker = _IsiTracker(h * w, start, self.lookahead)
            run: _PaperRun | _CameraMovingRun
            if self.mode == "paper" or masks:
                run = _PaperRun(self, source, tracker)
            else:
                run = _CameraMovingRun(tracker)
            for t, spikes in tracker.frames(source, self.chunk):
                run.step(t, spikes)
                while queue and queue.peek == t:
                    if masks:
                        yield queue.pop(), run.dyn.reshape(h, w).copy()  # type: ignore[union-attr]
                    else:
                        yield queue.pop(), run.readout().reshape(h, w)
                if not queue or queue.peek - t > warmup:
                    break
            if isinstance(run, _PaperRun):
                for key, val in run.cut_counts().items():
                    self.cut_stats[key] += val


# ----------------------------------------------------------------------------------------
# ISIs with bounded lookahead
# ----------------------------------------------------------------------------------------
class _IsiTracker:
    """Delay line that knows, for each processed frame ``t``, the ISI containing ``t``.

    The ISI containing ``t`` runs from just after the last spike before ``t`` to the first
    spike at or after ``t``. Frames are processed ``lookahead`` frames after they are read; an
    ISI still open by then counts as ``lookahead + 1`` frames, or as the ISI before it if that
    is longer (at the end of the recording the open gap can be short). The first ISI of a run
    starts at the run's first frame.
    """

    def __init__(self, n: int, start: int, lookahead: int) -> None:
        self.n = n
        self.lookahead = lookahead
        self.size = lookahead + 2
        self.start = start
        self.spikes = np.zeros((self.size, n), np.uint8)
        self.isi_ring = np.zeros((self.size, n), np.uint16 if lookahead < 65534 else np.int32)
        self.last_read = np.full(n, start - 1, np.int64)
        self.read_to = start - 1
        # Per pixel, about the ISI containing the frame last processed:
        self.isi = np.ones(n, np.int32)        # its length (frames)
        self.prev_isi = np.ones(n, np.int32)   # the ISI before it
        self.isi_start = np.full(n, start, np.int64)
        self.isi_open = np.zeros(n, bool)      # length only a lower bound
        self.new_idx = np.arange(n)            # pixels whose ISI starts at this frame
        self.spike_idx = np.zeros(0, np.int64)  # pixels that spike at this frame
        self._cols = np.arange(n)

    def push(self, r: int, frame: np.ndarray) -> None:
        slot = r % self.size
        self.spikes[slot] = frame
        idx = np.flatnonzero(frame)
        if idx.size:
            last = self.last_read[idx]
            d = r - last
            ok = d <= self.lookahead + 1  # its first frame is not processed yet
            self.isi_ring[(last[ok] + 1) % self.size, idx[ok]] = d[ok]
            self.last_read[idx] = r
        self.read_to = r

    def advance(self, t: int) -> np.ndarray:
        """Process frame ``t`` (all frames up to ``t + lookahead`` pushed, or the last one).

        Returns the spikes of frame ``t`` ``(n,)`` uint8 and updates ``new_idx``,
        ``spike_idx``, ``isi``, ``prev_isi``, ``isi_start`` and ``isi_open``.
        """
        slot = t % self.size
        # Frames are advanced in order: the spikes of t - 1 start the ISIs of frame t.
        nw = self._cols if t == self.start else self.spike_idx
        self.new_idx = nw
        if nw.size:
            length = self.isi_ring[slot, nw].astype(np.int32)
            is_open = length == 0
            gap = self.read_to - t + 1
            if t == self.start:
                length[is_open] = gap
                self.prev_isi[nw] = length
            else:
                # Still open: at least the gap read so far, and (a guess that matters at the
                # end of the data, where the gap is short) no shorter than the ISI before.
                length[is_open] = np.maximum(gap, self.isi[nw][is_open])
                self.prev_isi[nw] = self.isi[nw]
            self.isi[nw] = length
            self.isi_start[nw] = t
            self.isi_open[nw] = is_open
        self.isi_ring[slot] = 0
        self.spike_idx = np.flatnonzero(self.spikes[slot])
        return self.spikes[slot]

    def next_isi(self) -> np.ndarray:
        """The ISI after the current one ``(n,)`` (the current one where unknown)."""
        nxt_first = self.isi_start + self.isi
        ok = ~self.isi_open & (nxt_first <= self.read_to)
        out = self.isi.copy()
        got = self.isi_ring[nxt_first[ok] % self.size, self._cols[ok]].astype(np.int64)
        has = got > 0
        sel = np.flatnonzero(ok)[has]
        out[sel] = got[has]
        # A next ISI still open when read is a lower bound: the gap read so far.
        still = np.flatnonzero(ok)[~has]
        out[still] = np.maximum(self.read_to - nxt_first[still] + 1, 1)
        return out

    def frames(self, source: SpikeSource, chunk: int, stop: int | None = None
               ) -> Iterator[tuple[int, np.ndarray]]:
        """Read from the run's start and yield ``(t, spikes_t)`` for frames before ``stop``."""
        n_frames = source.num_frames
        stop = n_frames if stop is None else min(stop, n_frames)
        t = self.start
        for r, frame in iter_flat_frames(source, self.start, chunk):
            self.push(r, frame)
            if r - self.lookahead >= t:
                if t >= stop:
                    return
                yield t, self.advance(t)
                t += 1
            if r >= min(n_frames - 1, stop - 1 + self.lookahead):
                break
        while t < stop:
            yield t, self.advance(t)
            t += 1


# ----------------------------------------------------------------------------------------
# Layer 1 calibration: background ISI statistics and the cut weights
# ----------------------------------------------------------------------------------------
def background_stats(m: TVS, source: SpikeSource, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ISI mean ``mu`` and ``sigma = std + sigma_p * mu``, flat ``(H*W,)`` float32.

    As the authors' ``motioncut.m``: the ISIs ``d_2 .. d_K`` of the pixel, ``K`` the first
    ISI ending after ``stats_frames`` frames (the first ISI, a phase, is left out; the open
    gap at the end of the data counts as an ISI); ``std`` with ``N - 1``. A pixel without a
    complete ISI gets ``mu`` = the frames read and ``std`` = 0.
    """
    n = source.height * source.width
    total = source.num_frames - start
    l0 = min(total, m.stats_frames)
    end = min(total, l0 + m.lookahead + 1)
    prev = np.full(n, -1, np.int64)
    seen = np.zeros(n, bool)
    cnt = np.zeros(n, np.int64)
    s1 = np.zeros(n, np.float64)
    s2 = np.zeros(n, np.float64)
    for r, frame in iter_flat_frames(source, start, m.chunk):
        f = r - start
        if f >= end:
            break
        idx = np.flatnonzero(frame)
        if not idx.size:
            continue
        p = prev[idx]
        use = seen[idx] & (p <= l0)
        d = (f - p[use]).astype(np.float64)
        sel = idx[use]
        cnt[sel] += 1
        s1[sel] += d
        s2[sel] += d * d
        prev[idx] = f
        seen[idx] = True
    gap = end - prev
    if end < total:
        gap = np.minimum(gap, m.lookahead + 1)
    tail = seen & (prev <= l0)
    cnt[tail] += 1
    s1[tail] += gap[tail]
    s2[tail] += gap[tail].astype(np.float64) ** 2
    mu = np.where(cnt > 0, s1 / np.maximum(cnt, 1), float(end))
    var = np.where(cnt > 1, (s2 - cnt * mu * mu) / np.maximum(cnt - 1, 1), 0.0)
    sigma = np.sqrt(np.maximum(var, 0.0)) + m.sigma_p * mu
    return mu.astype(np.float32), np.maximum(sigma, 1e-3).astype(np.float32)


def motion_confidence(isi: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``O = 1 - exp(-(d - mu)^2 / (2 sigma^2))`` for ISIs ``d`` (float32, same shape)."""
    z = (isi.astype(np.float32) - mu) / sigma
    return (1.0 - np.exp(np.float32(-0.5) * z * z)).astype(np.float32)


def confidence_variance(m: TVS, source: SpikeSource, start: int, mu: np.ndarray,
                        sigma: np.ndarray) -> float:
    """``Var(O)`` over the first ``stats_frames`` frames of a run (all pixels and frames)."""
    n = source.height * source.width
    stop = start + min(source.num_frames - start, m.stats_frames)
    trk = _IsiTracker(n, start, m.lookahead)
    o = np.zeros(n, np.float32)
    acc1 = acc2 = 0.0
    frames = 0
    for t, _spk in trk.frames(source, m.chunk, stop):
        nw = trk.new_idx
        if nw.size and t != start:  # the run's first ISI is a phase: O = 0
            o[nw] = motion_confidence(trk.isi[nw], mu[nw], sigma[nw])
        acc1 += float(o.sum(dtype=np.float64))
        acc2 += float(np.dot(o, o))
        frames += 1
    count = frames * n
    mean = acc1 / count
    return max(acc2 / count - mean * mean, 0.0)


# ----------------------------------------------------------------------------------------
# The paper's three layers
# ----------------------------------------------------------------------------------------
class _PaperRun:
    """State of one run of the three layers; ``step`` once per frame, in order."""

    def __init__(self, m: TVS, source: SpikeSource, tracker: _IsiTracker) -> None:
        self.m = m
        self.trk = tracker
        self.start = tracker.start
        h, w = source.height, source.width
        self.shape = (h, w)
        n = h * w
        # Layer 1.
        self.mu, self.sigma = background_stats(m, source, self.start)
        var_o = confidence_variance(m, source, self.start, self.mu, self.sigma)
        self.cut_alpha = max(0.5 * var_o, m.cut_alpha_min)
        self.cut_beta = max(m.cut_lambda * self.cut_alpha, 1e-9)
        self._cut: GridCut | None = None  # built on first need
        self._trivial = self._solved = 0
        self.o = np.zeros(n, np.float32)
        self.dyn = np.zeros(n, bool)
        self.prev_dyn = np.zeros(n, bool)
        # Layer 2: a spike of a static pixel passes from frame ``open_at`` on.
        self.refr = np.ceil(np.float32(m.refractory) * self.mu).astype(np.int64)
        self.open_at = np.full(n, self.start, np.int64)
        self.srl_v = np.zeros(n, np.float32)
        self.srl_th = np.full(n, 0.001, np.float32)  # the code's initial 0.001 mV
        self.srl_em = np.float32(math.exp(-1.0 / m.srl_tau))
        self.srl_eth = np.float32(math.exp(-1.0 / m.srl_tauth))
        # Layer 3.
        self.vrl = _VRL(m, h, w)
        # Read-out: dynamic pixels keep their rate at t- and the mean ISI before it.
        self.n_dyn = np.zeros(n, np.int32)
        self.rate_minus = np.zeros(n, np.float32)
        self.past_isi = np.zeros(n, np.float32)  # 0 = no spikes in the look-back
        self.count = np.zeros(n, np.int32)
        self._block = max(1, m.lookback // 20)
        self._snaps: deque[tuple[int, np.ndarray]] = deque(
            maxlen=m.lookback // self._block + 2)

    def cut_counts(self) -> dict[str, int]:
        return {"solved": self._solved, "trivial": self._trivial}

    def _labels(self) -> np.ndarray:
        m = self.m
        unary = np.float32(self.cut_alpha) - np.float32(0.5) * self.o * self.o
        if not (unary < 0).any():
            self._trivial += 1
            return np.zeros_like(self.dyn)
        if self._cut is None:
            self._cut = GridCut(*self.shape, self.cut_beta)
        before = self._cut.trivial
        labels = self._cut.solve(unary.reshape(self.shape)).reshape(-1)
        if self._cut.trivial > before:
            self._trivial += 1
        else:
            self._solved += 1
        if np.count_nonzero(labels) > m.dynamic_fraction * labels.size:
            labels[:] = True
        return labels

    def _window_mean_isi(self, t_minus: int, sel: np.ndarray) -> np.ndarray:
        """Mean input ISI over ``[t_minus - lookback, t_minus]`` at pixels ``sel``; 0 if none.

        The window starts at a block boundary (``lookback / 20`` frames) or the run's start.
        """
        lo = t_minus - self.m.lookback
        base_frame, base = self.start - 1, None
        if lo >= self.start:
            for frame, snap in self._snaps:
                if frame >= lo:
                    base_frame, base = frame, snap
                    break
            else:
                base_frame, base = t_minus, self.count
        cnt = self.count[sel] - (base[sel] if base is not None else 0)
        length = float(t_minus - base_frame)
        out = np.zeros(sel.size, np.float32)
        ok = cnt > 0
        out[ok] = length / cnt[ok]
        return out

    def step(self, t: int, spikes: np.ndarray) -> None:
        m, trk = self.m, self.trk
        nw = trk.new_idx
        if nw.size and t != self.start:  # the run's first ISI is a phase: O = 0
            self.o[nw] = motion_confidence(trk.isi[nw], self.mu[nw], self.sigma[nw])
        if (t - self.start) % m.cut_every == 0:
            self.dyn = self._labels()
        dyn = self.dyn
        fresh = np.flatnonzero(dyn > self.prev_dyn)
        if fresh.size:  # t_w = t, t- = t - 1: freeze the read-out baseline
            self.n_dyn[fresh] = 0
            self.rate_minus[fresh] = self._static_rate(fresh)
            self.past_isi[fresh] = self._window_mean_isi(t - 1, fresh)
        # Layer 2: refractory rule on static pixels, then the one-to-one LIF.
        idx = trk.spike_idx
        gate = idx[dyn[idx] | (self.open_at[idx] <= t)]
        self.open_at[gate] = t + self.refr[gate]
        v, th = self.srl_v, self.srl_th
        v *= self.srl_em
        th -= np.float32(m.srl_vth)
        th *= self.srl_eth
        th += np.float32(m.srl_vth)
        v[gate] += np.float32(m.srl_weight)
        refined = np.flatnonzero(v > th)
        v[refined] = 0.0
        th[refined] = np.float32(m.srl_reset)
        self.n_dyn[refined[dyn[refined]]] += 1
        # Layer 3.
        self.vrl.step(refined, dyn, self.n_dyn)
        # Input spike counts for the read-out's look-back.
        self.count[idx] += 1
        if (t - self.start + 1) % self._block == 0:
            self._snaps.append((t, self.count.copy()))
        self.prev_dyn = dyn

    def _static_rate(self, sel: np.ndarray | None = None) -> np.ndarray:
        """Static read-out at pixels ``sel`` (all when None), flat float32."""
        theta = self.vrl.theta if sel is None else self.vrl.theta[sel]
        rate = self.m.rate_from_threshold(theta)
        if self.vrl.theta_u is not None:
            theta_u = self.vrl.theta_u if sel is None else self.vrl.theta_u[sel]
            near = rate >= np.float32(0.95 * self.m.saturation_rate)
            rate[near] = np.maximum(rate[near], self.m.rate_from_threshold(theta_u[near]))
        return rate

    def readout(self) -> np.ndarray:
        rate = self._static_rate()
        sel = np.flatnonzero(self.dyn)
        if sel.size:
            isi = self.trk.isi[sel].astype(np.float32)
            past = self.past_isi[sel]
            kappa = past / isi
            if self.m.gamma != 1.0:
                kappa = kappa ** np.float32(self.m.gamma)
            # Without a static past (no spikes in the look-back): the limit 1 / ISI.
            dyn_rate = np.where(past > 0, self.rate_minus[sel] * kappa, 1.0 / isi)
            rate[sel] = np.clip(dyn_rate, 0.0, 1.0)
        return rate


class _VRL:
    """Layer 3: conductance LIF neurons on 3x3 neighbourhoods with STDP, ``(H, W)`` arrays.

    Per frame, as Brian2 orders a step but with the frame's input delivered before the
    threshold test: decay, deliver the refined spikes, fire and reset. Synapse ``[a, b]`` of
    pixel ``p`` comes from ``p + (a - 1, b - 1)``; the presynaptic trace is kept per
    presynaptic pixel (all its synapses see the same spikes), the postsynaptic per pixel.
    """

    def __init__(self, m: TVS, h: int, w: int) -> None:
        f32 = np.float32
        self.m = m
        self.h, self.w = h, w
        self.v = np.full(h * w, m.e_l, f32)
        self.g = np.zeros(h * w, f32)
        self.theta = np.full(h * w, m.theta_init, f32)
        # extend_range: the threshold of a neuron that fires on every input spike.
        self.theta_u = np.full(h * w, m.theta_init, f32) if m.extend_range else None
        self.w_syn = np.full((3, 3, h, w), m.w_init, f32)
        self._rpad = np.zeros((h + 2, w + 2), f32)
        self._xpre_pad = np.zeros((h + 2, w + 2), f32)
        self.x_pre = self._xpre_pad[1:-1, 1:-1]
        self.x_post = np.zeros((h, w), f32)
        self._rsh = _shifts(self._rpad, h, w)
        self._xsh = _shifts(self._xpre_pad, h, w)
        self._tmp9 = np.empty((3, 3, h, w), f32)
        self._fired = np.zeros((h, w), f32)
        dist = np.array([[math.hypot(dy, dx) for dx in (-1, 0, 1)] for dy in (-1, 0, 1)])
        self.kernel = (m.input_weight * np.exp(-m.kernel_decay * dist / 1.5)).astype(f32)
        self.e_m = f32(math.exp(-1.0 / m.tau_m))
        e_e = math.exp(-1.0 / m.tau_e)
        self.e_e = f32(e_e)
        drive = m.e_e - m.v_r
        if abs(m.tau_e - m.tau_m) < 1e-9:
            kvg = drive / m.tau_m * math.exp(-1.0 / m.tau_m)
        else:
            kvg = drive * m.tau_e / (m.tau_e - m.tau_m) * (e_e - math.exp(-1.0 / m.tau_m))
        self.kvg = f32(kvg)  # v(t+1) gains kvg * g(t) from the decaying conductance
        self.e_th = f32(math.exp(-1.0 / m.tau_theta))
        ncap = np.maximum(np.arange(_N_CAP + 1, dtype=np.float64), 1.0)
        self.e_th_dyn = np.exp(-1.0 / (m.tau_theta * ncap)).astype(f32)
        self.e_pre = f32(math.exp(-1.0 / m.tau_pre))
        self.e_post = f32(math.exp(-1.0 / m.tau_post))
        # Plastic weights only fall on a presynaptic spike and only rise on a postsynaptic
        # one when the trace amplitudes have the published signs: clip one side only then.
        self._pre_lo_only = m.a_post <= 0 and m.w_init >= 0
        self._post_hi_only = m.a_pre >= 0

    def step(self, refined: np.ndarray, dyn: np.ndarray, n_dyn: np.ndarray) -> None:
        """One frame: ``refined`` flat indices of input spikes, ``dyn``/``n_dyn`` flat."""
        m, f32 = self.m, np.float32
        v, g, th = self.v, self.g, self.theta
        # Decay over one frame (exact for the linear membrane/conductance pair).
        if m.e_l:
            v -= f32(m.e_l)
        v *= self.e_m
        v += self.kvg * g
        if m.e_l:
            v += f32(m.e_l)
        g *= self.e_e
        dyn_idx = np.flatnonzero(dyn)
        fac: np.ndarray | np.float32 = self.e_th
        if dyn_idx.size:
            fac = np.full(th.size, self.e_th, f32)
            fac[dyn_idx] = self.e_th_dyn[np.minimum(n_dyn[dyn_idx], _N_CAP)]
        for arr in (th, self.theta_u) if self.theta_u is not None else (th,):
            arr -= f32(m.theta0)
            arr *= fac
            arr += f32(m.theta0)
        if self.theta_u is not None:
            self.theta_u[refined] += f32(m.eta0)
        self.x_pre *= self.e_pre
        self.x_post *= self.e_post
        hw = (self.h, self.w)
        v2, g2 = v.reshape(hw), g.reshape(hw)
        # Presynaptic spikes of the 3x3 neighbourhoods.
        if refined.size:
            r = self._rpad[1:-1, 1:-1]
            r.fill(0.0)
            self._write_flat(r, refined)
            rsh, tmp, k = self._rsh, self._tmp9, self.kernel
            v2 += k[1, 1] * r
            v2 += k[0, 1] * (rsh[0, 1] + rsh[2, 1] + rsh[1, 0] + rsh[1, 2])
            v2 += k[0, 0] * (rsh[0, 0] + rsh[0, 2] + rsh[2, 0] + rsh[2, 2])
            np.multiply(self.w_syn, rsh, out=tmp)
            g2 += tmp.sum(axis=(0, 1)) * f32(1.0 / 9.0)
            self.x_pre += f32(m.a_pre) * r
            np.multiply(self.x_post, rsh, out=tmp)
            self.w_syn += tmp
            if self._pre_lo_only:
                np.clip(self.w_syn, 0.0, None, out=self.w_syn)
            else:
                np.clip(self.w_syn, 0.0, m.g_max, out=self.w_syn)
        # Output spikes.
        fired = np.flatnonzero(v > th)
        if fired.size:
            v[fired] = 0.0
            th[fired] += f32(m.eta0)
            fpl = self._fired
            fpl.fill(0.0)
            self._write_flat(fpl, fired)
            self.x_post += f32(m.a_post) * fpl
            np.multiply(self._xsh, fpl, out=self._tmp9)
            self.w_syn += self._tmp9
            if self._post_hi_only:
                np.clip(self.w_syn, None, m.g_max, out=self.w_syn)
            else:
                np.clip(self.w_syn, 0.0, m.g_max, out=self.w_syn)

    def _write_flat(self, plane: np.ndarray, idx: np.ndarray) -> None:
        """Set ``plane`` ``(h, w)`` (maybe a strided view) to 1 at flat indices ``idx``."""
        plane[idx // self.w, idx % self.w] = 1.0


def _shifts(padded: np.ndarray, h: int, w: int) -> np.ndarray:
    """View ``(3, 3, h, w)`` of a ``(h+2, w+2)`` array: ``[1+dy, 1+dx, y, x] = a[y+dy, x+dx]``."""
    s0, s1 = padded.strides
    return as_strided(padded, shape=(3, 3, h, w), strides=(s0, s1, s0, s1), writeable=False)


# ----------------------------------------------------------------------------------------
# The authors' default read-out
# ----------------------------------------------------------------------------------------
class _CameraMovingRun:
    """``camera_moving``: rate ``1 / d*`` with the refined ISI ``d*`` of the authors' code.

    With ``a, b, c`` the previous, current and next ISI: if they are monotone the step is
    placed at ``t_m = a (c - b) / (c - a)`` inside ``b`` and ``d* = a`` before, ``c`` after;
    otherwise a line through ``1/a, 1/b, 1/c`` at the three ISI midpoints is read at ``t``.
    The code's image ``theta_mean(t) / d*`` is normalised per frame by its maximum, which
    cancels the global factor ``theta_mean(t)``; so the motion and reconstruction layers do
    not change this read-out and are not run.
    """

    def __init__(self, tracker: _IsiTracker) -> None:
        self.trk = tracker
        self.t = tracker.start

    def step(self, t: int, spikes: np.ndarray) -> None:
        self.t = t

    def readout(self) -> np.ndarray:
        trk = self.trk
        b = trk.isi.astype(np.float32)
        a = trk.prev_isi.astype(np.float32)
        c = trk.next_isi().astype(np.float32)
        pos = (self.t - trk.isi_start + 1).astype(np.float32)  # 1..b inside the ISI
        mono = ((a > b) & (b > c)) | ((a < b) & (b < c))
        with np.errstate(divide="ignore", invalid="ignore"):
            t_m = a * (c - b) / (c - a)
            step_rate = np.where(pos <= t_m, 1.0 / a, 1.0 / c)
        xs = np.stack([a / 2, a + b / 2, a + b + c / 2])
        ys = np.stack([1.0 / a, 1.0 / b, 1.0 / c])
        xm, ym = xs.mean(axis=0), ys.mean(axis=0)
        dx = xs - xm
        slope = (dx * (ys - ym)).sum(axis=0) / np.maximum((dx * dx).sum(axis=0), 1e-12)
        line_rate = ym + slope * (a + pos - xm)
        rate = np.where(mono, step_rate, line_rate).astype(np.float32)
        return np.clip(rate, 0.0, 1.0)
