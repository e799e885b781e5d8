"""Static mixtures: the corpus' natural weights, uniform, or weights from a file (DoReMi, DoGE…)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import yaml

from ..config import AgentConfig
from ..errors import AgentError, ConfigError, MissingFileError
from .base import Agent, EnvSpec


class StaticAgent(Agent):
    """Always the same weights; needs no reward, so the env skips its probes."""

    name = "static"
    needs_reward = False
    reads_weights = True

    def __init__(self, spec: EnvSpec, weights: np.ndarray):
        super().__init__(spec)
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.k,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise AgentError(
                f"Static weights {w.tolist()} must be {self.k} finite non-negative numbers with a positive sum."
            )
        self.weights = w / w.sum()

    @classmethod
    def from_config(cls, spec: EnvSpec, cfg: AgentConfig) -> "StaticAgent":
        if cfg.weights is None:
            raise ConfigError("agent 'static' needs agent.weights: a file, a list, or a {domain: weight} mapping.")
        return cls(spec, read_weights(cfg.weights, spec.domains))

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.weights.copy()

    def state_dict(self):
        return {"weights": self.weights.tolist()}

    def load_state_dict(self, state):
        self.weights = np.asarray(state["weights"], dtype=np.float64)


class NaturalAgent(StaticAgent):
    """Token-proportional weights: the corpus as it is (The Pile's own weights, "TPW")."""

    name = "natural"
    reads_weights = False

    def __init__(self, spec: EnvSpec):
        super().__init__(spec, spec.natural_weights)

    @classmethod
    def from_config(cls, spec: EnvSpec, cfg: AgentConfig) -> "NaturalAgent":
        return cls(spec)


class UniformAgent(StaticAgent):
    name = "uniform"
    reads_weights = False

    def __init__(self, spec: EnvSpec):
        super().__init__(spec, np.ones(len(spec.domains)))

    @classmethod
    def from_config(cls, spec: EnvSpec, cfg: AgentConfig) -> "UniformAgent":
        return cls(spec)


def read_weights(source: str | Path | Sequence[float] | Mapping[str, float], domains: list[str]) -> np.ndarray:
    """Weights from a list, a {domain: weight} mapping, or a JSON/YAML file holding either.

    A file may also be a run's exported mixture (``{"mean_weights": {...}}``).
    """
    where = "Weights"
    if isinstance(source, (str, Path)):
        path = Path(source)
        source, where = _read_weights_file(path), f"Weights file {path}"
        if isinstance(source, Mapping) and "mean_weights" in source:
            source = source["mean_weights"]
        if not isinstance(source, (list, Mapping)):
            held = "nothing" if source is None else repr(str(source)[:80])
            raise AgentError(f"{where} holds {held}: give a list of weights or a {{domain: weight}} mapping.")
    if isinstance(source, Mapping):
        unknown = sorted(set(source) - set(domains))
        missing = [d for d in domains if d not in source]
        if unknown or missing:
            raise AgentError(
                f"{where} name unknown domains {unknown} / miss domains {missing}; the corpus has {domains}."
            )
        source = [source[d] for d in domains]
    try:
        return np.asarray(source, dtype=np.float64)
    except (TypeError, ValueError):
        raise AgentError(f"{where} {str(source)[:80]} are not all numbers: give one number per domain.") from None


def _read_weights_file(path: Path):
    """The parsed content of a JSON or YAML weights file, with errors that name it."""
    if not path.is_file():
        raise MissingFileError(f"Weights file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise AgentError(
            f"Weights file {path} is not valid UTF-8 {kind} ({type(exc).__name__}: {str(exc)[:200]}): give a list "
            "of weights or a {domain: weight} mapping (a run's mixture.json works too)."
        ) from None


def write_mixture(path: str | Path, domains: list[str], steps: list[int], weights: np.ndarray) -> Path:
    """A weight schedule α(t) and its mean, in the file format ``read_weights`` reads back."""
    path = Path(path)
    mean = weights.mean(axis=0) if len(weights) else np.full(len(domains), 1.0 / len(domains))
    path.write_text(
        json.dumps(
            {
                "domains": list(domains),
                "mean_weights": dict(zip(domains, mean.tolist())),
                "schedule": {"steps": list(steps), "weights": np.asarray(weights).round(6).tolist()},
            }
        )
    )
    return path
