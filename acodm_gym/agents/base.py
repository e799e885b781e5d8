"""The one interface every agent implements, so the runner never special-cases an agent.

An agent sees only spaces and arrays (``EnvSpec``): it acts on an observation, observes the
transition that followed, updates itself, and saves or loads its state.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from ..config import AgentConfig


@dataclass
class EnvSpec:
    """What an agent may know about the environment."""

    observation_space: spaces.Box
    action_space: spaces.Box
    domains: list[str]
    natural_weights: np.ndarray
    observation_layout: dict[str, slice]
    total_steps: int

    @classmethod
    def from_env(cls, env) -> "EnvSpec":
        env = env.unwrapped
        return cls(
            env.observation_space,
            env.action_space,
            list(env.domains),
            np.asarray(env.natural_weights, dtype=np.float64),
            env.observation_layout(),
            env.cfg.train.total_steps,
        )


class Agent(ABC):
    """Chooses domain weights. ``exploration_floor``: whether the env should reserve its floor."""

    name: str = "agent"
    exploration_floor: bool = True
    needs_reward: bool = True  # False: the env may skip its alignment probes

    def __init__(self, spec: EnvSpec):
        self.spec = spec
        self.k = len(spec.domains)

    @classmethod
    def from_config(cls, spec: EnvSpec, cfg: AgentConfig) -> "Agent":
        """Build from the ``agent`` config section (``agent.options`` are keyword arguments)."""
        return cls(spec, **cfg.options)

    @abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Domain weights (k,) on the simplex for the next step."""

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        """Record one transition (s, a, r, s'); ``info["vector_reward"]`` holds the reward vector."""

    def update(self) -> dict[str, float]:
        """Learn from what was observed; returns losses or statistics to log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def save(self, path: str | Path) -> None:
        import torch

        torch.save({"agent": self.name, "domains": self.spec.domains, "state": self.state_dict()}, path)

    def load(self, path: str | Path) -> None:
        import torch

        blob = torch.load(path, map_location="cpu", weights_only=False)
        if blob.get("agent") != self.name:
            raise ValueError(f"{path} holds a '{blob.get('agent')}' agent, not '{self.name}'.")
        if blob.get("domains") != self.spec.domains:
            raise ValueError(f"{path} was saved for domains {blob.get('domains')}, not {self.spec.domains}.")
        self.load_state_dict(blob["state"])
