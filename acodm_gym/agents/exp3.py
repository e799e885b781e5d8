"""ODM (Albalak et al. 2023): domains as arms of an EXP3 bandit rewarded by the training loss.

At step t (1-based): ε_t = min(1/K, sqrt(ln K / (K t))) and
π_t = (1 − K ε_t) · softmax(ε_{t−1} R̂) + ε_t, computed with a max shift (log-sum-exp) so a
huge R̂ cannot overflow. After the step, every domain i present in the batch
(``info["domain_counts"][i] > 0``) gets R̂_i += (L_i / 10) / p_i, with L_i its loss and p_i the
probability its sequences were drawn with (``info["sampling_probs"]``: π itself, since ODM runs
without the exploration floor). The ``smoothed_mean`` updater of ODM's repository instead sets
R̂_i ← 0.5 R̂_i + 0.5 exp(L_i). ODM needs no alignment reward, so the env skips its probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..envs.state import StepInfo
from .base import Agent, EnvSpec, option

UPDATERS = ("exp3", "smoothed_mean")


@dataclass
class EXP3Options:
    """Options of ``odm``.

    :param updater: "exp3" (the paper) or "smoothed_mean" (its repository's variant)
    :param warmup_steps: steps with the natural weights before the bandit acts (it still learns from them)
    """

    updater: str = option("exp3", UPDATERS)
    warmup_steps: int = option(0, "[0, inf)")


class EXP3Agent(Agent):
    """ODM's EXP3 bandit (``odm``); its options are ``EXP3Options``."""

    name = "odm"
    needs_reward = False
    exploration_floor = False
    Options = EXP3Options

    def __init__(self, spec: EnvSpec, **options: Any):
        super().__init__(spec)
        o = self.options = self.make_options(options)
        self.updater = o.updater
        self.warmup_steps = o.warmup_steps
        self.rewards = np.zeros(self.k)  # R̂
        self.t = 0  # steps observed

    def epsilon(self, t: int) -> float:
        """ε_t; ε_0 = 1/K, its limit, so the first policy is uniform."""
        if t == 0:
            return 1.0 / self.k
        return min(1.0 / self.k, math.sqrt(math.log(self.k) / (self.k * t)))

    def probabilities(self) -> np.ndarray:
        """π for the next step, t = steps observed + 1."""
        t = self.t + 1
        eps, logits = self.epsilon(t), self.epsilon(t - 1) * self.rewards
        p = np.exp(logits - logits.max())
        return (1 - self.k * eps) * p / p.sum() + eps

    def act(self, obs):
        if self.t < self.warmup_steps:
            return self._to_weights(self.spec.natural_weights)
        return self._to_weights(self.probabilities())

    def observe(self, obs, action, reward, next_obs, info: StepInfo):
        seen = np.asarray(info["domain_counts"]) > 0
        losses = np.asarray(info["domain_losses"], dtype=np.float64)[seen]
        if self.updater == "exp3":
            self.rewards[seen] += (losses / 10.0) / np.maximum(np.asarray(info["sampling_probs"])[seen], 1e-12)
        else:
            self.rewards[seen] = 0.5 * self.rewards[seen] + 0.5 * np.exp(losses)
        self.t += 1

    def update(self):
        pi = self.probabilities()
        return {"epsilon": self.epsilon(self.t + 1), "entropy": float(-(pi * np.log(np.maximum(pi, 1e-300))).sum())}

    def state_dict(self):
        return {"rewards": self.rewards.tolist(), "t": self.t}

    def load_state_dict(self, state):
        self.rewards = np.asarray(state["rewards"], dtype=np.float64)
        self.t = int(state["t"])
