"""Agents that choose domain weights, behind one interface (``Agent``), built by name."""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

from ..config import AgentConfig
from ..errors import ConfigError
from ..registry import AGENTS
from .acodm import (
    ACODMAgent,
    ACODMReleasedAgent,
    ACODMTD3Agent,
    ActorCriticAgent,
    FrozenActorAgent,
    VectorSACAgent,
)
from .ado import ADOAgent
from .aioli import AioliAgent
from .base import Agent, EnvSpec, check_options, option, read_agent_file
from .doge import DoGEAgent
from .exp3 import EXP3Agent
from .offline import OfflineAgent
from .sb3 import DDPGAgent, PPOAgent, SACAgent, TD3Agent
from .static import NaturalAgent, ScheduleAgent, StaticAgent, UniformAgent, read_schedule, read_weights
from .vector_sac import LogisticNormalActor, LogisticNormalDistribution, VectorSAC, VectorSACPolicy
from .vector_td3 import VectorDDPG, VectorReplayBuffer, VectorTD3, VectorTD3Policy


def register(name: str, *, replace: bool = False) -> Callable[[type[Agent]], type[Agent]]:
    """Class decorator: the ``Agent`` subclass runs by ``name`` everywhere (``agent.name=NAME``, ``--agent``,
    ``compare --methods``, the task sweeps), its ``Options`` merged and range-checked like the built-in agents'.

    :param name: the agent's name (also its ``name`` attribute, recorded in its saved files)
    :param replace: replace an agent registered under ``name`` (else a clash is an error)
    """

    def add(cls: type[Agent]) -> type[Agent]:
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise TypeError(f"@register('{name}') decorates an Agent subclass, not {cls!r}.")
        if "name" in vars(cls) and cls.name != name:
            raise ValueError(
                f"{cls.__name__}.name is '{cls.name}': register it under that name, or drop the attribute."
            )
        cls.name = name
        return AGENTS.register(name, cls, replace=replace)

    return add


def agent_class(name: str) -> type[Agent]:
    """The agent registered as ``name`` (``registry.AGENTS``); a ConfigError lists the names."""
    cls = AGENTS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ConfigError(f"The agent registered as '{name}' is {cls!r}, not an Agent subclass.")
    if "name" not in vars(cls):  # an entry point's class: its runs and saved files carry the registered name
        cls.name = name
    if cls.name != name:
        raise ConfigError(f"The agent registered as '{name}' is named '{cls.name}': register it under its own name.")
    return cls


def make_agent(cfg: AgentConfig, spec: EnvSpec) -> Agent:
    cls = agent_class(cfg.name)
    cls.check_config(cfg)
    return cls.from_config(spec, cfg)


def options_markdown() -> str:
    """docs/agents.md's table of every agent's options and defaults, generated from the ``Options``
    declarations (tests/test_agents.py keeps the page equal to it). An agent whose options extend
    another's lists only what it adds or changes."""
    rows = ["| agent | `agent.options` (defaults; documented in the `Options` class) |", "|---|---|"]
    groups: dict[type, list[str]] = {}
    for name in AGENTS:
        groups.setdefault(agent_class(name).Options, []).append(name)
    for options, names in groups.items():
        parent = next((groups[base][0] for base in options.__mro__[1:] if base in groups), None)
        inherited = {f.name: f for f in dataclasses.fields(agent_class(parent).Options)} if parent else {}
        items = [
            f"`{f.name}={_default(f)}`"
            for f in dataclasses.fields(options)
            if f.name != "algorithm_kwargs" and (f.name not in inherited or _default(inherited[f.name]) != _default(f))
        ]
        if any(f.name == "algorithm_kwargs" for f in dataclasses.fields(options)) and not parent:
            items.append("any keyword of the SB3 algorithm")
        text = (f"options of `{parent}`, and " if parent else "") + (", ".join(items) or "none")
        rows.append(f"| {', '.join(f'`{n}`' for n in names)} | {text} ({options.__name__}) |")
    return "\n".join(rows) + "\n"


def _default(f: dataclasses.Field) -> str:
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return json.dumps(value) if isinstance(value, str) else repr(value)


__all__ = [
    "Agent",
    "EnvSpec",
    "AGENTS",
    "register",
    "option",
    "check_options",
    "agent_class",
    "make_agent",
    "options_markdown",
    "read_agent_file",
    "read_weights",
    "read_schedule",
    "NaturalAgent",
    "UniformAgent",
    "StaticAgent",
    "ScheduleAgent",
    "ActorCriticAgent",
    "ACODMAgent",
    "ACODMTD3Agent",
    "FrozenActorAgent",
    "EXP3Agent",
    "VectorSACAgent",
    "DoGEAgent",
    "DDPGAgent",
    "TD3Agent",
    "SACAgent",
    "PPOAgent",
    "AioliAgent",
    "ADOAgent",
    "ACODMReleasedAgent",
    "OfflineAgent",
    "VectorTD3",
    "VectorDDPG",
    "VectorTD3Policy",
    "VectorReplayBuffer",
    "VectorSAC",
    "VectorSACPolicy",
    "LogisticNormalActor",
    "LogisticNormalDistribution",
]
