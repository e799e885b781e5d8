"""The one interface every agent implements, so the runner never special-cases an agent.

An agent sees only spaces and arrays (``EnvSpec``): it acts on an observation, observes the
transition that followed, updates itself, and saves or loads its state. A saved agent records
the domains and observation layout it was built for, and refuses any other environment.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Collection, Mapping

import numpy as np
import torch
from gymnasium import spaces

from ..config import AgentConfig, merge_section
from ..envs.state import StepInfo
from ..errors import AgentError, ConfigError, MissingFileError
from ..rng import capture_rng, restore_rng, restore_space_rng, space_rng
from ..simplex import action_to_weights


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

    def signature(self) -> dict[str, Any]:
        """What an agent must share with an environment to drive it: domains and observation layout."""
        return {
            "domains": list(self.domains),
            "observation_size": int(self.observation_space.shape[0]),
            "observation_layout": {name: [s.start, s.stop] for name, s in self.observation_layout.items()},
        }

    def check(self, signature: dict[str, Any], source: str) -> None:
        """Raise if ``signature`` (of a saved or built agent) describes another corpus or observation."""
        for key, value in self.signature().items():
            if signature.get(key) != value:
                raise AgentError(
                    f"{source} was made for {key} {signature.get(key)}, but this environment has {key} {value}: "
                    "an agent only drives the domains and observation layout it was built for."
                )


def read_agent_file(path: str | Path) -> dict[str, Any]:
    """A file written by ``Agent.save``, with a clear error for a missing, corrupted or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Saved agent {path} does not exist.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a damaged file
        raise AgentError(
            f"{path} is not a readable saved agent (corrupted, truncated, or not written by Agent.save; "
            f"{type(exc).__name__})."
        ) from None
    if not isinstance(blob, dict) or not {"agent", "state", "domains"} <= blob.keys():
        raise AgentError(f"{path} is a torch file but not a saved agent (no 'agent', 'domains' and 'state' entries).")
    return blob


def option(default: Any, valid: str | Collection[str] | None = None) -> Any:
    """A field of an agent's ``Options`` with the values it takes, checked with the config, before any work
    (``check_options``).

    :param default: the default (a list or dict is copied for each instance)
    :param valid: for a number, an interval such as ``"[0, 1)"`` or ``"(0, inf)"``; for a string, the
        names it may take; None: any value of the declared type. ``None`` passes where the type allows it.
    """
    mutable = isinstance(default, (list, dict))
    given = {"default_factory": lambda: copy.deepcopy(default)} if mutable else {"default": default}
    return field(**given, metadata={"valid": valid})


def check_options(options: Any, where: str = "agent.options") -> Any:
    """Raise ConfigError for an option outside what its field declares (``option``); returns ``options``."""
    for f in fields(options):
        check_value(f"{where}.{f.name}", getattr(options, f.name), f.metadata.get("valid"))
    return options


def check_value(key: str, value: Any, valid: str | Collection[str] | None) -> None:
    """Raise ConfigError unless ``value`` is in ``valid`` (an interval for a number, else the names; see ``option``)."""
    if valid is None or value is None:
        return
    if isinstance(valid, str):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and not _in_interval(value, valid):
            raise ConfigError(f"{key}={value!r} is out of range: give a value in {valid}.")
    elif value not in valid:
        raise ConfigError(f"{key}={value!r} is not supported; choose one of {', '.join(valid)}.")


def _in_interval(value: float, interval: str) -> bool:
    """``value`` in ``"[lo, hi)"``-style ``interval`` (NaN never is)."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    above = low < value if interval[0] == "(" else low <= value
    return above and (value < high if interval[-1] == ")" else value <= high)


@dataclass
class NoOptions:
    """This agent takes no options."""


class Agent(ABC):
    """Chooses domain weights.

    What it needs from the env is declared here and read by the runner, for an agent built by name and
    for one passed to ``train`` as an object alike (the runner never guesses):

    - ``needs_reward``: False lets the env skip its alignment probes (``env.compute_reward: false``);
    - ``exploration_floor``: False samples batches by α alone (``train.exploration_floor: false``);
    - ``target_weights_option``: the option that receives the task's best static mixture (e.g. for
      diagnostics) unless set; None: none;
    - ``reads_weights``: whether it reads ``agent.weights`` (else setting them is an error);
    - ``greedy``: what it plays frozen, without exploring (default: ``act``).

    ``Options``: the dataclass of the agent's options (``agent.options``), each declared with its
    type and default and documented there (``:param``), checked by ``check_options``.
    """

    name: str = "agent"
    exploration_floor: bool = True
    needs_reward: bool = True
    target_weights_option: ClassVar[str | None] = None
    reads_weights: ClassVar[bool] = False
    Options: ClassVar[type] = NoOptions

    def __init__(self, spec: EnvSpec):
        self.spec = spec
        self.k = len(spec.domains)
        a, o = spec.action_space, spec.observation_space
        if not isinstance(a, spaces.Box) or a.shape != (self.k,) or np.any(a.low != 0) or np.any(a.high != 1):
            raise ValueError(
                f"Agent '{self.name}' acts on Box(0, 1, ({self.k},)), one weight per domain; the env's action space is {a}."
            )
        if not isinstance(o, spaces.Box) or len(o.shape) != 1:
            raise ValueError(f"Agent '{self.name}' reads a flat Box observation; the env's observation space is {o}.")

    @classmethod
    def make_options(cls, values: Mapping[str, Any] | None = None) -> Any:
        """``Options`` with ``values`` (``agent.options``, or an agent's keyword arguments) merged in like a
        config section: coerced to the declared types, an unknown key refused with the closest one, a value
        outside its declared range refused (``option``)."""
        if values and not fields(cls.Options):
            raise ConfigError(f"Agent '{cls.name}' takes no options; got agent.options {dict(values)}: drop them.")
        options = check_options(merge_section(cls.Options(), values or {}, "agent.options"))
        cls.validate_options(options)
        return options

    @classmethod
    def validate_options(cls, options: Any) -> None:
        """Raise ConfigError for a combination of options that no single range expresses (checked with the
        config, before any work); what needs the number of domains is checked when the agent is built.

        :param options: the merged and range-checked ``Options``
        """

    @classmethod
    def option_names(cls) -> set[str]:
        """The keys ``agent.options`` may hold for this agent."""
        return {f.name for f in fields(cls.Options)}

    @classmethod
    def check_config(cls, cfg: AgentConfig) -> None:
        """Refuse, before any work, an ``agent`` section this agent would not use as given: ``agent.weights``
        unless it reads them, an option it does not take (with the closest), a value out of its range."""
        if cfg.weights is not None and not cls.reads_weights:
            raise ConfigError(
                f"agent.weights is set, but agent '{cls.name}' does not read it (agent 'static' does): drop it, "
                "or choose --agent static."
            )
        cls.make_options(cfg.options)

    @classmethod
    def from_config(cls, spec: EnvSpec, cfg: AgentConfig) -> "Agent":
        """Build from the ``agent`` config section (``agent.options`` are keyword arguments)."""
        return cls(spec, **cfg.options)

    def check_env(self, env) -> None:
        """Raise unless ``env`` has the domains and observation layout this agent was built for."""
        EnvSpec.from_env(env).check(self.spec.signature(), f"Agent '{self.name}'")

    def _to_weights(self, action: Any) -> np.ndarray:
        """The env's own mapping of an action onto the simplex, with an error naming this agent."""
        try:
            return action_to_weights(action, self.k)
        except ValueError as exc:
            raise ValueError(f"Agent '{self.name}' produced an invalid action: {exc}") from None

    @abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Domain weights (k,) on the simplex for the next step."""

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """The weights without exploration: what the agent plays frozen (``agent.frozen``, learn's test
        episodes), when it neither observes nor learns. Default: ``act`` (an agent that does not explore)."""
        return self.act(obs)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, info: StepInfo) -> None:
        """Record one transition (s, a, r, s'); ``info["vector_reward"]`` holds the reward vector."""

    def update(self) -> dict[str, float]:
        """Learn from what was observed; returns losses or statistics to log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain Python values only: files are read back with ``weights_only``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """``state_dict()`` and the exploration RNGs: the global python/numpy/torch states and the action space's."""
        rng = {"global": capture_rng(), "action_space": space_rng(self.spec.action_space)}
        torch.save({"agent": self.name, **self.spec.signature(), "state": self.state_dict(), "rng": rng}, path)

    def load(self, path: str | Path) -> None:
        """Restore a saved agent, and the RNGs it explored with (global ones included), so that its next
        exploratory action is the saved agent's."""
        blob = read_agent_file(path)
        if blob["agent"] != self.name:
            raise AgentError(f"{path} holds a '{blob['agent']}' agent, not '{self.name}'.")
        self.spec.check(blob, str(path))
        self.load_state_dict(blob["state"])
        if "rng" in blob:  # files written before it was stored load without it
            restore_rng(blob["rng"]["global"])
            restore_space_rng(self.spec.action_space, blob["rng"]["action_space"])
