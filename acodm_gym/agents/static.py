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


class ScheduleAgent(Agent):
    """A weight schedule α(t) fixed in advance: waypoints (step, weights), linear in between, constant before the
    first and after the last. It replays a run's schedule (``agent.weights=<run>/mixture.json``) or plays a drawn
    one (the offline datasets' drifting behaviours, ``runs/offline.py``); like a static mixture it needs no reward.

    ``agent.weights`` is a file holding a ``schedule`` (a run's mixture.json) or ``{"steps": [s_1, ...],
    "weights": [w_1, ...]}`` with one weight list or {domain: weight} mapping per step, steps increasing."""

    name = "schedule"
    needs_reward = False
    reads_weights = True

    def __init__(self, spec: EnvSpec, steps: Sequence[int], weights: np.ndarray):
        super().__init__(spec)
        w, s = np.asarray(weights, dtype=np.float64), np.asarray(steps, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != self.k or len(s) != len(w) or len(s) == 0:
            raise AgentError(
                f"A schedule needs one list of {self.k} weights per step; got {len(s)} steps, weights {w.shape}."
            )
        if np.any(np.diff(s) <= 0) or not np.all(np.isfinite(w)) or np.any(w < 0) or np.any(w.sum(axis=1) <= 0):
            raise AgentError(
                "A schedule's steps must increase and each step's weights be finite non-negative numbers with a "
                f"positive sum; got steps {s.tolist()[:8]}."
            )
        self.steps, self.weights, self.t = s, w / w.sum(axis=1, keepdims=True), 0

    @classmethod
    def check_config(cls, cfg: AgentConfig) -> None:
        """A given schedule's shape (one weight entry per step, steps increasing), before any work; its widths
        against the corpus' domains when the agent is built."""
        super().check_config(cfg)
        given = cfg.weights
        if given is None:
            raise ConfigError(
                "agent 'schedule' needs agent.weights: a run's mixture.json, or {steps: [...], weights: [[...], ...]}."
            )
        if isinstance(given, Mapping):
            steps, weights = given.get("steps"), given.get("weights")
            if not isinstance(steps, list) or not isinstance(weights, list) or len(steps) != len(weights) or not steps:
                raise ConfigError(
                    f"agent.weights {str(given)[:120]} is not a schedule: give {{steps: [s_1, ...], weights: [w_1, ...]}} "
                    "with one weight list per step, or a run's mixture.json."
                )
            if any(b <= a for a, b in zip(steps, steps[1:])):
                raise ConfigError(f"agent.weights.steps {steps[:8]} must increase.")

    @classmethod
    def from_config(cls, spec: EnvSpec, cfg: AgentConfig) -> "ScheduleAgent":
        cls.check_config(cfg)
        return cls(spec, *read_schedule(cfg.weights, spec.domains))

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.t += 1  # the action is the mixture of step t (steps count from 1, as a run's mixture.json)
        w = np.array([np.interp(self.t, self.steps, self.weights[:, i]) for i in range(self.k)])
        return w / w.sum()

    def state_dict(self):
        return {"steps": self.steps.tolist(), "weights": self.weights.tolist(), "t": self.t}

    def load_state_dict(self, state):
        self.steps, self.weights = np.asarray(state["steps"]), np.asarray(state["weights"])
        self.t = int(state["t"])


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


def read_schedule(source: str | Path | Mapping, domains: list[str]) -> tuple[list[int], np.ndarray]:
    """The (steps, weights) of a schedule file (a run's mixture.json) or mapping ``{steps, weights}``."""
    where = "The schedule"
    if isinstance(source, (str, Path)):
        where, source = f"Schedule file {source}", _read_weights_file(Path(source))
        if isinstance(source, Mapping) and source.get("domains") not in (None, list(domains)):
            raise AgentError(f"{where} is for domains {source['domains']}; the corpus has {domains}.")
        source = source.get("schedule") if isinstance(source, Mapping) else None
    if not isinstance(source, Mapping) or not {"steps", "weights"} <= set(source):
        raise AgentError(
            f"{where} holds no schedule: give {{steps: [...], weights: [[...], ...]}} or a run's mixture.json."
        )
    weights = [read_weights(w, domains) for w in source["weights"]]
    return list(source["steps"]), np.array(weights)
