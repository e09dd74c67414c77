"""Exact binary labelling by s-t min-cut on the 4-connected pixel grid (TVS, layer 1).

Minimises ``sum_p u_p M_p + beta * #{4-neighbour pairs with M_p != M_q}`` over ``M`` in
{0, 1}^(H x W). The energy is submodular, so one max-flow (Boykov-Kolmogorov, through
PyMaxflow) gives the global minimum. The neighbour edges never change within a run: they
are built once; later frames only change the terminal edges of the pixels whose unary term
changed and reuse the previous flow, which is several times faster than a fresh graph.
"""

from __future__ import annotations

import numpy as np

from spkrecon.errors import ParameterError

# Right and down neighbours, symmetric: each 4-neighbour pair gets one edge of beta both ways.
_FOUR = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0]])


class GridCut:
    """Solver for one grid size and one smoothness weight ``beta`` > 0.

    Successive calls reuse the previous frame's flow and search trees (Kohli and Torr,
    "dynamic graph cuts", ICCV 2005): only pixels whose unary term changed get new terminal
    capacities and are marked, which gives the same minimum several times faster when
    consecutive frames differ in few pixels. Capacities are doubles; the graph is rebuilt
    from scratch every ``rebuild_every`` solves all the same.
    """

    def __init__(self, height: int, width: int, beta: float, incremental: bool = True,
                 rebuild_every: int = 1000) -> None:
        try:
            import maxflow
        except ImportError as exc:  # pragma: no cover - PyMaxflow is a dependency
            raise ParameterError("TVS needs PyMaxflow for its min-cut",
                                 "pip install PyMaxflow") from exc
        if not beta > 0:
            raise ParameterError(f"the min-cut smoothness weight must be positive, got {beta}")
        self._maxflow = maxflow
        self.shape = (height, width)
        self.beta = float(beta)
        self.incremental = incremental
        self.rebuild_every = rebuild_every
        self._graph = None
        self._ids: np.ndarray | None = None
        self._unary: np.ndarray | None = None  # the unary terms the graph holds now
        self._since = 0
        self.solved = 0   # max-flow runs
        self.trivial = 0  # frames decided without one (all unary terms of one sign)

    def _fresh(self, u: np.ndarray) -> None:
        g = self._maxflow.GraphFloat(u.size, 2 * u.size)
        ids = g.add_grid_nodes(self.shape)
        g.add_grid_edges(ids, weights=self.beta, structure=_FOUR, symmetric=True)
        ids = ids.reshape(-1)
        # A node on the sink side (label 1) cuts its source edge: it pays max(u, 0);
        # on the source side (label 0) it pays max(-u, 0); the difference is u.
        g.add_grid_tedges(ids, np.maximum(u, 0), np.maximum(-u, 0))
        g.maxflow()
        self._graph, self._ids, self._unary, self._since = g, ids, u.copy(), 0

    def solve(self, unary: np.ndarray) -> np.ndarray:
        """Labels ``(H, W)`` bool (True = 1) minimising the energy for ``unary`` ``(H, W)``.

        ``unary`` is the cost of label 1 relative to label 0 at each pixel.
        """
        u = np.asarray(unary, dtype=np.float64).reshape(-1)
        # With every unary term of one sign the constant labelling is optimal: it pays no
        # smoothness cost and the best unary cost at every pixel.
        if not (u < 0).any():
            self.trivial += 1
            return np.zeros(self.shape, bool)
        if not (u > 0).any():
            self.trivial += 1
            return np.ones(self.shape, bool)
        if (self._graph is None or not self.incremental
                or self._since >= self.rebuild_every):
            self._fresh(u)
        else:
            changed = np.flatnonzero(u != self._unary)
            if changed.size:
                d = u[changed] - self._unary[changed]
                nodes = self._ids[changed]
                # Terminal capacities only add up: a change of u is added on the side it
                # grows (BK keeps the net residual, so the cut follows the new u exactly).
                self._graph.add_grid_tedges(nodes, np.maximum(d, 0), np.maximum(-d, 0))
                self._graph.mark_grid_nodes(nodes)
                self._graph.maxflow(reuse_trees=True)
                self._unary[changed] = u[changed]
            self._since += 1
        self.solved += 1
        seg = self._graph.get_grid_segments(self._ids)
        return np.asarray(seg, dtype=bool).reshape(self.shape)


def grid_energy(labels: np.ndarray, unary: np.ndarray, beta: float) -> float:
    """The energy :class:`GridCut` minimises, for checking a labelling ``(H, W)``."""
    m = labels.astype(np.int8)
    cut = np.abs(np.diff(m, axis=0)).sum() + np.abs(np.diff(m, axis=1)).sum()
    return float((unary * m).sum() + beta * cut)
