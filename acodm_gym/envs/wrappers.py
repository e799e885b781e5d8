"""Wrappers that change what an agent reads from PretrainEnv, not how the model trains."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ..simplex import importance_weighted_ema, scalarize
from .state import StepInfo


class ImportanceWeightedRewardEMA(gym.Wrapper):
    """The paper's smoothed reward: r̂_i ← ξ·r̂_i + (1 − ξ)·r_i / p_i.

    p_i is the probability with which the step's batch drew domain i, so domains the mixture
    already favours are not rewarded for being sampled often. The smoothed vector replaces
    ``info["vector_reward"]`` (the raw one moves to ``info["vector_reward_raw"]``) and the scalar
    reward is re-derived from it with the env's scalarisation.
    """

    def __init__(self, env: gym.Env, xi: float = 0.9):
        super().__init__(env)
        if not 0.0 <= xi < 1.0:
            raise ValueError(f"xi={xi} must be in [0, 1).")
        self.xi = xi
        self.ema: np.ndarray | None = None

    def reset(self, **kwargs):
        self.ema = None
        return self.env.reset(**kwargs)

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, StepInfo]:
        obs, _, terminated, truncated, info = self.env.step(action)
        raw = info["vector_reward"]
        self.ema = importance_weighted_ema(self.ema, raw, info["sampling_probs"], self.xi)
        info: StepInfo = {**info, "vector_reward_raw": raw, "vector_reward": self.ema.copy()}
        mode = self.env.unwrapped.cfg.env.scalarization
        return obs, scalarize(self.ema, info["domain_weights"], mode), terminated, truncated, info
