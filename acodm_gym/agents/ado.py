"""ADO (Jiang et al. 2024, yidingjiang/ado): per-domain power laws of the loss, priority from their slopes.

Each domain's training loss is fitted, as a function of n (sequences trained on so far, the same n for
every domain as in the released ``use_same_step_size``), by L_i(n) = E_i + B_i·n^(−β_i), in log space
with a Huber loss (δ = 10⁻³) from a grid of starts, β_i in [0, 0.8], ln E_i ≥ 0.5, ln B_i ≤ 6.5, on the
Savitzky–Golay-smoothed losses from ``ignore_steps`` on. After ``start_step`` the fits are refreshed every
``update_interval`` steps, and each step the weights are

    ρ_i = max(β_i, 0.05)·(L_i(n) − E_i) / n · natural_i · √(h_i (1 − h_i)),  d = clip(ρ / Σρ, ``min_prob``),
    p = 0.9·p̄ + 0.1·d,   p̄ ← (1 − 1/(t + 1))·p̄ + d / (t + 1),

where h is the average of the batches' domain shares (h ← 0.9 h + 0.1 share) and p̄ starts at the natural
weights, which are also the weights before ``start_step``. The losses are ``info["domain_losses"]`` (the
last seen for a domain absent from a batch, as ADO imputes).

Scaled to the task budget (400 steps) from the released settings (``ignore_steps`` 500, ``start_step``
1000, a refit every 1000 steps, every 10th step fitted, a smoothing window of 101 steps, L-BFGS from each
of a 512-point grid of starts): ``ignore_steps`` 20, ``start_step`` 40, a refit every 20 steps, every step
fitted, a window of 21 steps, and SciPy's bounded least squares from one start (the best of 33 exponents,
E and B fitted linearly for each; 0.01 s a domain against 0.7 s from 27 starts); the rest as released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import savgol_filter

from ..envs.state import StepInfo
from ..errors import ConfigError
from .base import Agent, EnvSpec, option

# (ln B, ln E, β): the bounds of the released fit's penalties (ln E ≥ 0.5, ln B ≤ 6.5, 0 ≤ β ≤ 0.8),
# closed by loose finite bounds; the grid of exponents the start is chosen from
LOWER, UPPER = np.array([-10.0, 0.5, 0.0]), np.array([6.5, 10.0, 0.8])
EXPONENTS = np.linspace(0.0, 0.8, 33)


def power_law(params: np.ndarray, n: np.ndarray) -> np.ndarray:
    """E + B·n^(−β) for params (ln B, ln E, β)."""
    log_b, log_e, beta = params
    return np.exp(log_e) + np.exp(log_b - beta * np.log(n))


def fit_power_law(n: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """(ln B, ln E, β) fitting ln L with a Huber loss on the log residuals, from the best start on a grid of β
    (E and B by linear least squares for each β, clipped into the bounds)."""

    def residuals(params):
        log_b, log_e, beta = params
        return np.logaddexp(log_b - beta * np.log(n), log_e) - np.log(losses)

    starts = []
    for beta in EXPONENTS:
        (e, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(n), n**-beta], axis=1), losses, rcond=None)
        start = np.array([np.log(max(b, 1e-12)), np.log(max(e, 1e-12)), beta])
        starts.append(np.clip(start, LOWER + 1e-9, UPPER - 1e-9))
    start = min(starts, key=lambda x: float(np.sum(residuals(x) ** 2)))
    return least_squares(residuals, start, bounds=(LOWER, UPPER), loss="huber", f_scale=1e-3).x


def clip_min_probability(p: np.ndarray, min_prob: float) -> np.ndarray:
    """Every weight at least ``min_prob``: scale down by the deficit, raise the small ones, renormalise."""
    deficit = max(min_prob * len(p) - p.sum(), 0.0)
    clipped = np.maximum(p * (1 - deficit) / p.sum(), min_prob)
    return clipped / clipped.sum()


@dataclass
class ADOOptions:
    """Options of ``ado`` (module docstring: what was scaled).

    :param ignore_steps: first steps left out of the fits (released: 500)
    :param start_step: the step from which the fits set the weights (released: 1000)
    :param update_interval: steps between refits (released: 1000)
    :param savgol_window: steps of the Savitzky–Golay smoothing of the losses, odd (released: 101)
    :param min_prob: the minimum weight per domain (released: 0.01)
    """

    ignore_steps: int = option(20, "[0, inf)")
    start_step: int = option(40, "[4, inf)")
    update_interval: int = option(20, "[1, inf)")
    savgol_window: int = option(21, "[5, inf)")
    min_prob: float = option(0.01, "[0, 0.5)")  # below 1/k too, checked with k when the agent is built


class ADOAgent(Agent):
    """ADO (``ado``); its options are ``ADOOptions``. Needs the losses only, not the reward."""

    name = "ado"
    needs_reward = False
    Options = ADOOptions

    def __init__(self, spec: EnvSpec, **options: Any):
        super().__init__(spec)
        o = self.options = self.make_options(options)
        if not o.min_prob * self.k < 1.0:
            raise ConfigError(f"ado min_prob={o.min_prob} must be below 1/k = {1 / self.k:.4g}.")
        self.weights = spec.natural_weights.copy()
        self.p_avg = spec.natural_weights.copy()
        self.shares = spec.natural_weights.copy()  # h
        self.seen: list[float] = []  # n after each step
        self.losses: list[np.ndarray] = []  # each step's per-domain losses
        self.params: np.ndarray | None = None  # (k, 3) fits
        self.t = 0  # steps observed
        self.n_updates = 0  # steps whose weights update() has set

    @classmethod
    def validate_options(cls, options: ADOOptions) -> None:
        if options.start_step < options.ignore_steps + 4:
            raise ConfigError(
                f"ado start_step={options.start_step} must be >= ignore_steps + 4 = {options.ignore_steps + 4} "
                "(a fit needs 4 points)."
            )
        if options.savgol_window % 2 == 0:
            raise ConfigError(f"ado savgol_window={options.savgol_window} must be odd (a cubic is fitted in it).")

    def act(self, obs):
        return self.weights.copy()

    def observe(self, obs, action, reward, next_obs, info: StepInfo):
        counts = np.asarray(info["domain_counts"], dtype=np.float64)
        self.seen.append(float((self.seen[-1] if self.seen else 0.0) + counts.sum()))
        self.losses.append(np.asarray(info["domain_losses"], dtype=np.float64).copy())
        self.shares = 0.9 * self.shares + 0.1 * counts / counts.sum()
        self.t += 1
        if self.t >= self.options.start_step and (self.t - self.options.start_step) % self.options.update_interval == 0:
            self.params = self.fit()

    def fit(self) -> np.ndarray:
        """(k, 3) power-law fits on the smoothed losses from ``ignore_steps`` on."""
        losses = np.array(self.losses)
        window = min(self.options.savgol_window, len(losses) - (1 - len(losses) % 2))
        smooth = savgol_filter(losses, window, 3, axis=0) if window >= 5 else losses
        n = np.array(self.seen)[self.options.ignore_steps :]
        smooth = np.maximum(smooth[self.options.ignore_steps :], 1e-6)
        return np.stack([fit_power_law(n, smooth[:, i]) for i in range(self.k)])

    def update(self):
        if self.params is None or self.n_updates == self.t:  # before the first fit, or nothing new observed
            return {}
        self.n_updates = self.t
        n = self.seen[-1]
        predicted = np.array([power_law(p, np.array(n)) for p in self.params])
        slope = np.maximum(self.params[:, 2], 0.05) * (predicted - np.exp(self.params[:, 1])) / n
        priority = slope * self.spec.natural_weights * np.sqrt(self.shares * (1 - self.shares))
        dist = clip_min_probability(priority / priority.sum(), self.options.min_prob)
        self.weights = 0.9 * self.p_avg + 0.1 * dist
        self.p_avg = (1 - 1 / (self.t + 1)) * self.p_avg + dist / (self.t + 1)
        return {"ado_exponent_mean": float(self.params[:, 2].mean())}

    def state_dict(self):
        return {
            "t": self.t,
            "n_updates": self.n_updates,
            "weights": self.weights.tolist(),
            "p_avg": self.p_avg.tolist(),
            "shares": self.shares.tolist(),
            "seen": list(self.seen),
            "losses": [x.tolist() for x in self.losses],
            "params": None if self.params is None else self.params.tolist(),
        }

    def load_state_dict(self, state):
        self.t, self.n_updates = int(state["t"]), int(state["n_updates"])
        self.weights, self.p_avg, self.shares = (
            np.asarray(state[key], dtype=np.float64) for key in ("weights", "p_avg", "shares")
        )
        self.seen = [float(x) for x in state["seen"]]
        self.losses = [np.asarray(x, dtype=np.float64) for x in state["losses"]]
        self.params = None if state["params"] is None else np.asarray(state["params"], dtype=np.float64)
