"""Aioli (Chen et al. 2024, HazyResearch/aioli): weights from a matrix of loss changes learnt in short bursts.

Training runs in rounds. Each round starts with LearnParams: for each domain j (in a random order, swept
``lp_rounds`` times) a burst of ``lp_steps`` steps on the mixture with ``one_hot_factor`` on j and the
rest spread evenly; the change of every domain's loss over the burst fills column j of a K×K matrix
(A_ij: how much training on j lowered i's loss). With ``one_hot_factor`` < 1 each row is solved for the
one-hot effects (the bursts' mixtures as the design matrix), as Aioli does. Then A is normalised
(shifted to non-negative, divided by its sum), averaged (``ema``), and the round plays
p ∝ init ⊙ exp(η · column sums of A) for ``update_steps`` steps.

What the env measures in place of Aioli's held-out evaluation: the per-domain loss of each step's batch
before its update (``info["domain_losses"]``, text the model has not trained on). The loss at the first
step after a burst measures the burst, so that step still plays the previous weights. The env's
exploration floor keeps every domain in every batch, so every loss is fresh.

Scaled to the task budget (400 steps, 8–10 domains) from the released script (40 000 steps, 7 domains:
``lp_rounds`` 2, ``lp_steps`` 10, ``update_steps`` 200, η 1, ema 0.1, ``one_hot_factor`` 0.75,
normalised A, uniform start): ``lp_rounds`` 1 and ``lp_steps`` 2 (a LearnParams phase of 2k steps, 16–20),
``update_steps`` 50, so a run has about 5 rounds where Aioli's had about 120; the rest as released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..envs.state import StepInfo
from ..errors import ConfigError
from .base import Agent, EnvSpec, option

INITS = ("uniform", "natural")


@dataclass
class AioliOptions:
    """Options of ``aioli`` (module docstring: what was scaled).

    :param eta: η of p ∝ init ⊙ exp(η · column sums of A) (released: 1)
    :param lp_rounds: sweeps over the domains per LearnParams phase (released: 2)
    :param lp_steps: steps per burst (released: 10)
    :param update_steps: steps the learnt weights play per round (released: 200)
    :param one_hot_factor: a burst's weight on its domain, the rest spread evenly (released: 0.75)
    :param ema: weight of the previous rounds' matrix in its average (released: 0.1; None: the weights
        themselves accumulate, p ← p ⊙ exp(η · column sums))
    :param normalize: shift A to non-negative entries and divide by its sum (released: on)
    :param init: the weights before the first round is learnt, "uniform" (released) or "natural"
    :param seed: seed of the burst order (a run sets it to ``run.seed`` unless given)
    """

    eta: float = option(1.0, "(0, inf)")
    lp_rounds: int = option(1, "[1, inf)")
    lp_steps: int = option(2, "[1, inf)")
    update_steps: int = option(50, "[1, inf)")
    one_hot_factor: float = option(0.75, "(0, 1]")  # above 1/k too, checked with k when the agent is built
    ema: float | None = option(0.1, "[0, 1)")
    normalize: bool = True
    init: str = option("uniform", INITS)
    seed: int = 0


class AioliAgent(Agent):
    """Aioli (``aioli``); its options are ``AioliOptions``. Needs the losses only, not the reward."""

    name = "aioli"
    needs_reward = False
    Options = AioliOptions

    def __init__(self, spec: EnvSpec, **options: Any):
        super().__init__(spec)
        o = self.options = self.make_options(options)
        if not 1.0 / self.k < o.one_hot_factor <= 1.0:
            raise ConfigError(
                f"aioli one_hot_factor={o.one_hot_factor} must be in (1/k, 1] = ({1 / self.k:.3g}, 1]: a burst "
                "favours its domain."
            )
        self.init = spec.natural_weights.copy() if o.init == "natural" else np.full(self.k, 1.0 / self.k)
        self.learn_steps = o.lp_rounds * self.k * o.lp_steps  # the LearnParams phase of a round
        self.round_steps = self.learn_steps + o.update_steps
        self.rng = np.random.default_rng(o.seed)
        self.weights = self.init.copy()
        self.order = self._burst_order()
        self.changes = np.zeros((self.k, self.k))  # this round's loss changes, column j: bursts on j
        self.matrix: np.ndarray | None = None  # A averaged over rounds (ema)
        self.previous: np.ndarray | None = None  # the losses at the start of the current burst
        self.t = 0  # steps observed

    def _burst_order(self) -> np.ndarray:
        return np.concatenate([self.rng.permutation(self.k) for _ in range(self.options.lp_rounds)])

    def burst_mixture(self, domain: int) -> np.ndarray:
        """``one_hot_factor`` on ``domain``, the rest spread evenly over the others."""
        factor = self.options.one_hot_factor
        mixture = np.full(self.k, (1 - factor) / (self.k - 1))
        mixture[domain] = factor
        return mixture

    def act(self, obs):
        u = self.t % self.round_steps
        if u < self.learn_steps:
            return self.burst_mixture(self.order[u // self.options.lp_steps])
        return self.weights.copy()

    def greedy(self, obs):
        """The learnt weights, without the LearnParams bursts (they explore)."""
        return self.weights.copy()

    def observe(self, obs, action, reward, next_obs, info: StepInfo):
        u, lp_steps = self.t % self.round_steps, self.options.lp_steps
        if u <= self.learn_steps and u % lp_steps == 0:  # the first step of a burst or of the round's play
            losses = np.asarray(info["domain_losses"], dtype=np.float64)
            if u > 0:  # the losses now, against those before the burst just ended
                self.changes[:, self.order[u // lp_steps - 1]] += self.previous - losses
            self.previous = losses
            if u == self.learn_steps:
                self._learn_weights()
        self.t += 1

    def _learn_weights(self) -> None:
        """A from this round's bursts, then the weights the rest of the round plays."""
        o = self.options
        a = self.changes / o.lp_rounds
        if o.one_hot_factor < 1:  # row i: the bursts' mixtures times the one-hot effects give the changes
            design = np.stack([self.burst_mixture(j) for j in range(self.k)])
            a = np.linalg.solve(design, a.T).T
        if o.normalize:
            a = a - min(a.min(), 0.0)
            a = a / a.sum() if a.sum() > 0 else np.zeros_like(a)
        if o.ema is None:
            self.matrix = a
            logits = np.log(self.weights) + o.eta * a.sum(axis=0)
        else:
            self.matrix = a if self.matrix is None else (1 - o.ema) * a + o.ema * self.matrix
            logits = np.log(self.init) + o.eta * self.matrix.sum(axis=0)
        p = np.exp(logits - logits.max())
        self.weights = p / p.sum()
        self.changes = np.zeros((self.k, self.k))
        self.order = self._burst_order()

    def state_dict(self):
        return {
            "t": self.t,
            "weights": self.weights.tolist(),
            "order": self.order.tolist(),
            "changes": self.changes.tolist(),
            "matrix": None if self.matrix is None else self.matrix.tolist(),
            "previous": None if self.previous is None else self.previous.tolist(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state):
        self.t = int(state["t"])
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.changes = np.asarray(state["changes"], dtype=np.float64)
        self.matrix = None if state["matrix"] is None else np.asarray(state["matrix"], dtype=np.float64)
        self.previous = None if state["previous"] is None else np.asarray(state["previous"], dtype=np.float64)
        self.rng.bit_generator.state = state["rng"]
