"""Agents that choose domain weights, behind one interface (``Agent``), built by name."""
from __future__ import annotations

from ..config import AgentConfig
from ..errors import ConfigError
from .acodm import ACODMAgent, ACODMTD3Agent, FrozenActorAgent, VectorSACAgent
from .base import Agent, EnvSpec, read_agent_file
from .doge import DoGEAgent
from .exp3 import EXP3Agent
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
    )
}


def agent_class(name: str) -> type[Agent]:
    if name not in AGENTS:
        raise ConfigError(f"Unknown agent '{name}'; choose one of {', '.join(sorted(AGENTS))}.")
    return AGENTS[name]


def make_agent(cfg: AgentConfig, spec: EnvSpec) -> Agent:
    return agent_class(cfg.name).from_config(spec, cfg)


__all__ = [
    "Agent", "EnvSpec", "AGENTS", "agent_class", "make_agent", "read_agent_file", "read_weights",
    "NaturalAgent", "UniformAgent", "StaticAgent", "ACODMAgent", "ACODMTD3Agent", "FrozenActorAgent", "EXP3Agent",
    "VectorSACAgent", "DoGEAgent",
    "DDPGAgent", "TD3Agent", "SACAgent", "PPOAgent", "VectorTD3", "VectorDDPG", "VectorTD3Policy", "VectorReplayBuffer",
    "VectorSAC", "VectorSACPolicy", "LogisticNormalActor", "LogisticNormalDistribution",
]
