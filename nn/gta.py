"""Gradual Training Approximation (GTA, paper Algorithm 1): the approximation-level controller.

Definitions (the paper leaves them open; these are ours, all configurable):

iteration
    One SGD step on one mini-batch (Algorithm 1's loop body: feed forward, error estimation,
    approx_configurator, back propagation). ``iter_max = epochs * ceil(n_train / batch)``.

network error ``e(iter)``
    The classification error of the mini-batch of that iteration, measured on the forward pass
    the step computes anyway (no extra work), at the current approximation level.

slope
    Least-squares slope (error per iteration) of ``e`` over the last ``window`` iterations
    (paper: 50). The window restarts after each level change, so every slope is measured at one
    level; no decision is taken before the window is full. ``r = -slope`` is the improvement rate.

THR
    ``THR = thr * mean(e over the window) / (1 - u)`` for ``u < 1``, and infinity for ``u >= 1``,
    where ``u = S * window / (iter_max - iter - reserve * iter_max)`` is the time pressure:
    ``S = apx_min - level`` steps are still to take, each needs a full window, and ``reserve``
    (a fraction of ``iter_max``) is kept for training at the final level. So THR grows with the
    iteration, shrinks with the remaining budget ``iter_max``, scales with the network error (a
    *relative* improvement rate is compared), and depends on ``Apx_min`` through ``S`` -- the four
    inputs the paper names. ``u >= 1`` forces a step at every full window, which guarantees that
    ``Apx_min`` is reached by ``iter_max - reserve * iter_max`` whenever
    ``iter_max * (1 - reserve) >= apx_min * window``.

converged
    ``r < THR`` with a full window.

step
    On convergence below ``Apx_min``: one tuning bit more (one level less approximate). The level
    never moves toward deeper approximation. At ``Apx_min``, ``patience`` consecutive converged
    windows stop training (Algorithm 1, line 9) when ``stop`` is set -- but only after at least
    ``reserve * iter_max`` iterations at ``Apx_min``: the mini-batch error is noisy enough that a
    50-iteration slope "converges" by chance, and without this floor Fashion-MNIST stopped at
    iteration 465 of 4689 with a 4.9 pp quality loss.

Levels are tuning bits ``start .. apx_min`` (paper: start at 0, the deepest approximation).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from canna.spec.config import check_tuning_bits

__all__ = ["GTAConfig", "GTAController", "window_slope"]


@dataclass(frozen=True)
class GTAConfig:
    """Parameters of the GTA controller (see the module docstring).

    Parameters
    ----------
    apx_min : finest level the user allows (tuning bits, 0..22).
    window : iterations in the slope window (paper: 50).
    thr : relative improvement-rate threshold, per iteration.
    reserve : fraction of ``iter_max`` reserved for the final level.
    start : initial level (tuning bits; paper: 0).
    stop : stop training when converged at ``apx_min``.
    patience : converged windows in a row at ``apx_min`` before stopping.
    """

    apx_min: int
    window: int = 50
    thr: float = 0.002
    reserve: float = 0.25
    start: int = 0
    stop: bool = True
    patience: int = 3

    def __post_init__(self):
        for name in ("apx_min", "start"):
            check_tuning_bits(getattr(self, name), f"GTA {name}")
        if self.start > self.apx_min:
            raise ValueError(f"GTA start level {self.start} is finer than apx_min {self.apx_min}")
        if not isinstance(self.window, (int, np.integer)) or self.window < 2:
            raise ValueError(f"GTA window must be an integer >= 2, got {self.window!r}")
        if not self.thr >= 0:
            raise ValueError(f"GTA thr must be >= 0, got {self.thr!r}")
        if not 0 <= self.reserve < 1:
            raise ValueError(f"GTA reserve must be in [0, 1), got {self.reserve!r}")
        if not isinstance(self.patience, (int, np.integer)) or self.patience < 1:
            raise ValueError(f"GTA patience must be an integer >= 1, got {self.patience!r}")


def window_slope(errors) -> float:
    """Least-squares slope of ``errors`` against their index (error per iteration)."""
    e = np.asarray(errors, dtype=np.float64)
    x = np.arange(len(e), dtype=np.float64)
    x -= x.mean()
    return float((x * (e - e.mean())).sum() / (x * x).sum())


class GTAController:
    """Feed it one error per iteration with :meth:`observe`; read :attr:`level`.

    ``trajectory`` lists every level change (and the start and the stop) as dicts with the
    iteration, new level, window mean error, slope, THR and the reason.
    """

    def __init__(self, config: GTAConfig, iter_max: int):
        if iter_max < 1:
            raise ValueError(f"iter_max must be >= 1, got {iter_max}")
        self.config = config
        self.iter_max = int(iter_max)
        self.level = config.start
        self.errors: list[float] = []
        self.converged_windows = 0
        self.stopped = False
        self.decisions = 0
        self.trajectory = [{"iteration": 0, "level": self.level, "error": None, "slope": None,
                            "thr": None, "reason": "start"}]

    def thr(self, iteration: int, mean_error: float) -> float:
        """THR at ``iteration`` (0-based, the iteration just done) for the window's mean error."""
        c = self.config
        steps_left = c.apx_min - self.level
        remaining = self.iter_max - (iteration + 1) - c.reserve * self.iter_max
        if steps_left == 0:
            u = 0.0
        elif remaining <= 0:
            return math.inf
        else:
            u = steps_left * c.window / remaining
        if u >= 1.0:
            return math.inf
        return c.thr * mean_error / (1.0 - u)

    def observe(self, iteration: int, error: float) -> int:
        """Record the error of ``iteration`` (0-based); returns the level for the next one."""
        if self.stopped:
            return self.level
        c = self.config
        self.errors.append(float(error))
        if len(self.errors) < c.window:
            return self.level
        window = self.errors[-c.window:]
        slope = window_slope(window)
        mean = float(np.mean(window))
        thr = self.thr(iteration, mean)
        converged = -slope < thr
        self.decisions += 1
        if not converged:
            self.converged_windows = 0
            # Slide the window by one iteration.
            self.errors = window[1:]
            return self.level
        entry = {"iteration": iteration + 1, "error": mean, "slope": slope,
                 "thr": None if math.isinf(thr) else thr}
        if self.level < c.apx_min:
            self.level += 1
            self.errors = []
            self.converged_windows = 0
            self.trajectory.append({**entry, "level": self.level,
                                    "reason": "deadline" if math.isinf(thr) else "converged"})
        else:
            self.converged_windows += 1
            self.errors = []
            if (c.stop and self.converged_windows >= c.patience
                    and iteration + 1 - self.final_level_since >= c.reserve * self.iter_max):
                self.stopped = True
                self.trajectory.append({**entry, "level": self.level, "reason": "stop"})
        return self.level

    @property
    def final_level_since(self) -> int:
        """The iteration at which the level reached ``apx_min`` (derived from the trajectory)."""
        return next(e["iteration"] for e in self.trajectory if e["level"] == self.config.apx_min)

    # -- persistence ---------------------------------------------------------------------------

    def state(self) -> dict:
        return {"config": asdict(self.config), "iter_max": self.iter_max, "level": self.level,
                "errors": list(self.errors), "converged_windows": self.converged_windows,
                "stopped": self.stopped, "decisions": self.decisions,
                "trajectory": list(self.trajectory)}

    @classmethod
    def from_state(cls, state: dict) -> "GTAController":
        c = cls(GTAConfig(**state["config"]), state["iter_max"])
        c.level = int(state["level"])
        c.errors = [float(e) for e in state["errors"]]
        c.converged_windows = int(state["converged_windows"])
        c.stopped = bool(state["stopped"])
        c.decisions = int(state["decisions"])
        c.trajectory = list(state["trajectory"])
        return c
