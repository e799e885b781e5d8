"""Online DoGE: DoGE's exponentiated-gradient update of the weights, run on the env's reward each step.

DoGE (Fan et al. 2023) moves the domain weights along the gradient alignment of each domain with
the others, α ← normalise(α ⊙ exp(η W)). Here it runs online on the smoothed alignment reward r̂,
the paper's importance-corrected average r̂_i ← ξ r̂_i + (1 − ξ) W_i / p_i (``simplex.py``, shared
with the replay buffer and the env wrapper). It is the greedy use of AC-ODM's own reward, with no
critic: the baseline that answers whether the actor–critic adds anything.

W's magnitude varies by orders of magnitude across models and training (it is a product of
gradients), so by default the step uses r̂ standardised across domains, r̃ = (r̂ − mean r̂) / std r̂,
and η means the same on every model: a domain one standard deviation above the others gains a
factor e^η in weight ratio per step (the shift by the mean changes nothing after normalising).
An optional mixing floor ε (fixed-share) keeps every weight at least ε/k:

    α ← (1 − ε)·normalise(α ⊙ exp(η r̃)) + ε/k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..envs.state import StepInfo
from ..simplex import importance_weighted_ema
from .base import Agent, EnvSpec, option
from .diagnostics import Diagnostics
from .static import read_weights

NORMALIZATIONS = ("std", "none")
INITS = ("natural", "uniform")


@dataclass
class DoGEOptions:
    """Options of ``doge``.

    :param eta: η, the step size of the exponentiated-gradient update (0.005: with ``normalize="std"``
        a domain 1 std above the others for 200 steps gains a factor e ≈ 2.7 in weight ratio; not tuned)
    :param normalize: "std" (r̃ = (r̂ − mean) / std across domains, scale-free η) or "none" (η·r̂ as is)
    :param floor: ε of the mixing floor with uniform, in [0, 1) (0: none; the env's exploration floor
        still applies to sampling)
    :param reward_ema: ξ of the importance-corrected average (0.9; None: ``info["vector_reward"]`` as
        given, e.g. under the ``ImportanceWeightedRewardEMA`` wrapper)
    :param init: the first weights, "natural" or "uniform"
    :param target_weights: the mixture ``target_cosine`` measures the steps against: a list, a {domain:
        weight} mapping or a weights file, as ``agent.weights`` (None: not logged)
    :param diagnostics_window: steps of the reward signal-to-noise window
    """

    eta: float = option(0.005, "(0, inf)")
    normalize: str = option("std", NORMALIZATIONS)
    floor: float = option(0.0, "[0, 1)")
    reward_ema: float | None = option(0.9, "[0, 1)")
    init: str = option("natural", INITS)
    target_weights: list[float] | dict[str, float] | str | None = None
    diagnostics_window: int = option(50, "[1, inf)")


class DoGEAgent(Agent):
    """Online DoGE (``doge``); its options are ``DoGEOptions``."""

    name = "doge"
    needs_reward = True
    Options = DoGEOptions
    target_weights_option = "target_weights"

    def __init__(self, spec: EnvSpec, **options: Any):
        super().__init__(spec)
        o = self.options = self.make_options(options)
        eta, normalize, floor, reward_ema, init = o.eta, o.normalize, o.floor, o.reward_ema, o.init
        self.eta, self.normalize, self.floor, self.xi = float(eta), normalize, float(floor), reward_ema
        self.weights = spec.natural_weights.copy() if init == "natural" else np.full(self.k, 1.0 / self.k)
        self.ema: np.ndarray | None = None  # r̂ (None before the first step)
        self.t = 0  # transitions observed
        self.n_updates = 0
        target = None if o.target_weights is None else read_weights(o.target_weights, spec.domains)
        self.diagnostics = Diagnostics(self.k, None, target, o.diagnostics_window)

    def act(self, obs):
        return self.weights.copy()

    def observe(self, obs, action, reward, next_obs, info: StepInfo):
        w = np.asarray(info["vector_reward"], dtype=np.float64)
        if w.shape != (self.k,) or not np.all(np.isfinite(w)):
            raise ValueError(f"doge needs info['vector_reward'], {self.k} finite values; got {w.tolist()}.")
        self.ema = w if self.xi is None else importance_weighted_ema(self.ema, w, info["sampling_probs"], self.xi)
        self.diagnostics.record(w)
        self.t += 1

    def step_direction(self, reward: np.ndarray) -> np.ndarray:
        """r̃: the reward the exponent uses (standardised across domains, or as is)."""
        if self.normalize == "none":
            return reward
        std = reward.std()
        return (reward - reward.mean()) / std if std > 0 else np.zeros_like(reward)

    def update(self):
        if self.n_updates == self.t:  # nothing new observed
            return {}
        before = self.weights
        logits = np.log(np.maximum(before, 1e-300)) + self.eta * self.step_direction(self.ema)
        p = np.exp(logits - logits.max())
        self.weights = (1 - self.floor) * p / p.sum() + self.floor / self.k
        self.n_updates = self.t
        return self.diagnostics.stats(before, self.weights)

    def state_dict(self):
        return {
            "weights": self.weights.tolist(),
            "ema": None if self.ema is None else self.ema.tolist(),
            "t": self.t,
            "n_updates": self.n_updates,
            "diagnostics": self.diagnostics.state_dict(),
        }

    def load_state_dict(self, state):
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.ema = None if state["ema"] is None else np.asarray(state["ema"], dtype=np.float64)
        self.t, self.n_updates = int(state["t"]), int(state["n_updates"])
        self.diagnostics.load_state_dict(state["diagnostics"])
