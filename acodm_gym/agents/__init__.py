"""Agents that choose domain weights, behind one interface (``Agent``), built by name."""
from __future__ import annotations

from ..config import AgentConfig, ConfigError
from .base import Agent, EnvSpec
from .static import NaturalAgent, StaticAgent, UniformAgent, read_weights

# CLI name → agent class. Each class says whether it needs the reward probes and the floor.
AGENTS: dict[str, type[Agent]] = {
    "natural": NaturalAgent,
    "uniform": UniformAgent,
    "static": StaticAgent,
}


def agent_class(name: str) -> type[Agent]:
    if name not in AGENTS:
        raise ConfigError(f"Unknown agent '{name}'; choose one of {', '.join(sorted(AGENTS))}.")
    return AGENTS[name]


def make_agent(cfg: AgentConfig, spec: EnvSpec) -> Agent:
    return agent_class(cfg.name).from_config(spec, cfg)


__all__ = ["Agent", "EnvSpec", "AGENTS", "agent_class", "make_agent", "NaturalAgent", "UniformAgent", "StaticAgent", "read_weights"]
