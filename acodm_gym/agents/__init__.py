"""Agents that choose domain weights, behind one interface (``Agent``), built by name."""

from __future__ import annotations

import dataclasses
import json

from ..config import AgentConfig
from ..errors import ConfigError
from .acodm import ACODMAgent, ACODMReleasedAgent, ACODMTD3Agent, FrozenActorAgent, VectorSACAgent
from .ado import ADOAgent
from .aioli import AioliAgent
from .base import Agent, EnvSpec, read_agent_file
from .doge import DoGEAgent
from .exp3 import EXP3Agent
from .offline import OfflineAgent
from .sb3 import DDPGAgent, PPOAgent, SACAgent, TD3Agent
from .static import NaturalAgent, StaticAgent, UniformAgent, read_weights
from .vector_sac import LogisticNormalActor, LogisticNormalDistribution, VectorSAC, VectorSACPolicy
from .vector_td3 import VectorDDPG, VectorReplayBuffer, VectorTD3, VectorTD3Policy

# CLI name → agent class. Each class says whether it needs the reward probes and the floor.
AGENTS: dict[str, type[Agent]] = {
    cls.name: cls
    for cls in (
        NaturalAgent,
        UniformAgent,
        StaticAgent,
        ACODMAgent,
        ACODMTD3Agent,
        VectorSACAgent,
        FrozenActorAgent,
        EXP3Agent,
        DoGEAgent,
        DDPGAgent,
        TD3Agent,
        SACAgent,
        PPOAgent,
        AioliAgent,
        ADOAgent,
        ACODMReleasedAgent,
        OfflineAgent,
    )
}


def agent_class(name: str) -> type[Agent]:
    if name not in AGENTS:
        raise ConfigError(f"Unknown agent '{name}'; choose one of {', '.join(sorted(AGENTS))}.")
    return AGENTS[name]


def make_agent(cfg: AgentConfig, spec: EnvSpec) -> Agent:
    return agent_class(cfg.name).from_config(spec, cfg)


def options_markdown() -> str:
    """docs/agents.md's table of every agent's options and defaults, generated from the ``Options``
    declarations (tests/test_agents.py keeps the page equal to it). An agent whose options extend
    another's lists only what it adds or changes."""
    rows = ["| agent | `agent.options` (defaults; documented in the `Options` class) |", "|---|---|"]
    groups: dict[type, list[str]] = {}
    for name, cls in AGENTS.items():
        groups.setdefault(cls.Options, []).append(name)
    for options, names in groups.items():
        parent = next((groups[base][0] for base in options.__mro__[1:] if base in groups), None)
        inherited = {f.name: f for f in dataclasses.fields(parent and AGENTS[parent].Options)} if parent else {}
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
    "agent_class",
    "make_agent",
    "options_markdown",
    "read_agent_file",
    "read_weights",
    "NaturalAgent",
    "UniformAgent",
    "StaticAgent",
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
