"""An offline agent: d3rlpy's IQL trained on logged transitions, then a frozen policy (``offline``).

The Data Mixing Agent's recipe: learn a mixing policy from logged runs (``run.log_transitions`` writes a
run's (s, a, r, vector r, s') to transitions.npz), then let it act without learning. IQL (Kostrikov et
al. 2022) is the default because it never queries the critic at actions outside the data: its value is
an expectile of Q over the logged actions and its policy an advantage-weighted regression onto them.
The logged weights sit within a few hundredths of their behaviour policy, and following the critic's
slope outside them is how AC-ODM's actor went wrong (docs/findings.md, "Why AC-ODM does not learn a better
mixture here"); TD3+BC (``algorithm: td3+bc``) and CQL (``cql``) are there to compare.

What the policy maximises (``reward``): ``alignment``, the logged reward (the env's α-weighted alignment W, a
first-order proxy of one step's loss change), or ``metric``, the task metric itself, the Data Mixing Agent's
signal: its fall between the run's periodic validations, ln m_a − ln m_b spread evenly over the steps
a < t ≤ b (``metric_rewards``; 0 before the first validation), read from the transitions' ``val_metric``.

Each file is one episode (its last step a time-out, not a terminal). Actions are the weights in
[0, 1]^k, scaled to [−1, 1] for d3rlpy's policies; rewards are standardised (IQL's advantage weights
depend on their scale, and the alignment reward's varies by orders of magnitude across models). The
policy is trained at the first ``act`` (not when the agent is built, so a resumed run loads it
instead), with the global random states restored afterwards. d3rlpy is the optional extra ``offline``
and is imported only here.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import AgentError, ConfigError, MissingFileError
from .base import Agent, EnvSpec, option

ALGORITHMS = {"iql": "IQLConfig", "td3+bc": "TD3PlusBCConfig", "cql": "CQLConfig"}


def _d3rlpy():
    try:
        import d3rlpy
    except ImportError:
        raise ConfigError(
            "agent 'offline' needs d3rlpy: pip install -e '.[offline]' (it pins gymnasium 1.0)."
        ) from None
    return d3rlpy


def transitions_files(dataset: list[str]) -> list[Path]:
    """The transitions files ``dataset`` names: a file as it is, a folder as every transitions.npz below it (sorted)."""
    files = []
    for entry in map(Path, dataset):
        found = sorted(entry.rglob("transitions.npz")) if entry.is_dir() else [entry]
        if not found:
            raise MissingFileError(f"{entry} holds no transitions.npz: log its runs with run.log_transitions=true.")
        files += found
    return files


def metric_rewards(val_metric: np.ndarray) -> np.ndarray:
    """Per step, the task metric's fall between the two validations that enclose it: for validations at steps
    a < b (indices into ``val_metric``, NaN where a step has none), (ln m_a − ln m_b) / (b − a) at each step
    a < t <= b, so an episode's rewards sum to ln(first / last); 0 before the first validation."""
    at = np.flatnonzero(np.isfinite(val_metric))
    out = np.zeros(len(val_metric))
    for a, b in zip(at[:-1], at[1:]):
        out[a + 1 : b + 1] = (np.log(val_metric[a]) - np.log(val_metric[b])) / (b - a)
    return out


@dataclass
class OfflineOptions:
    """Options of ``offline``.

    :param dataset: the transitions.npz files of logged runs (``run.log_transitions``), or folders whose every
        transitions.npz below is one (a dataset build's ``<run.out_dir>/datasets/<task>/``), required. A finished
        run is reused by its config, so a folder that has grown since is the same option: score it in a new run
        directory (``--overwrite`` or another ``run.name``)
    :param algorithm: "iql" (in-sample: never evaluates unlogged actions), "td3+bc" or "cql"
    :param reward: "alignment" (the logged reward) or "metric" (the task metric's fall between validations;
        runs logged with ``env.eval_interval`` > 0)
    :param n_steps: gradient steps of the offline training
    :param batch_size: transitions per gradient step
    :param gamma: discount factor
    :param hidden: hidden layer sizes of every network
    :param seed: seed of the training (a run sets it to ``run.seed`` unless given)
    :param device: torch device
    """

    dataset: list[str] = option([])
    algorithm: str = option("iql", tuple(ALGORITHMS))
    reward: str = option("alignment", ("alignment", "metric"))
    n_steps: int = option(2000, "[1, inf)")
    batch_size: int = option(256, "[1, inf)")
    gamma: float = option(0.95, "[0, 1)")
    hidden: list[int] = option([256, 256])
    seed: int = 0
    device: str = "cpu"


class OfflineAgent(Agent):
    """A policy learnt offline from logged transitions and frozen (``offline``); its options are
    ``OfflineOptions``. Needs no reward while it acts, so the env skips its probes."""

    name = "offline"
    needs_reward = False
    Options = OfflineOptions

    def __init__(self, spec: EnvSpec, **options: Any):
        super().__init__(spec)
        o = self.options = self.make_options(options)
        self.files = transitions_files(o.dataset)
        self.episodes = [self._read(path) for path in self.files]
        d3rlpy = _d3rlpy()
        config = getattr(d3rlpy.algos, ALGORITHMS[o.algorithm])
        encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(o.hidden))
        encoders = {f"{part}_encoder_factory": encoder for part in ("actor", "critic", "value")}
        declared = set(config.__dataclass_fields__)
        self.algo = config(
            batch_size=o.batch_size,
            gamma=o.gamma,
            action_scaler=d3rlpy.preprocessing.MinMaxActionScaler(minimum=np.zeros(self.k), maximum=np.ones(self.k)),
            reward_scaler=d3rlpy.preprocessing.StandardRewardScaler(),
            **{key: value for key, value in encoders.items() if key in declared},
        ).create(device=o.device)
        with torch.random.fork_rng(devices=[]):  # the networks' initialisation from ``seed`` alone
            torch.manual_seed(o.seed)
            self.algo.create_impl(spec.observation_space.shape, self.k)
        self.trained = False

    @classmethod
    def validate_options(cls, options: OfflineOptions) -> None:
        if not options.dataset:
            raise ConfigError("agent 'offline' needs agent.options.dataset: transitions.npz files of logged runs.")

    def _read(self, path: Path) -> dict[str, np.ndarray]:
        """One logged run's transitions, checked against this environment's observation and domains."""
        if not path.is_file():
            raise MissingFileError(f"Transitions file {path} does not exist: log a run with run.log_transitions=true.")
        try:
            with np.load(path) as data:
                episode = {key: np.asarray(data[key], dtype=np.float32) for key in ("obs", "action", "reward")}
                val = np.asarray(data["val_metric"], dtype=np.float64) if "val_metric" in data.files else None
        except (OSError, ValueError, KeyError) as exc:
            raise AgentError(
                f"{path} is not a transitions file (obs, action, reward arrays; {type(exc).__name__})."
            ) from None
        n, obs_size = len(episode["reward"]), self.spec.observation_space.shape[0]
        if episode["obs"].shape != (n, obs_size) or episode["action"].shape != (n, self.k) or n < 2:
            raise AgentError(
                f"{path} holds {n} transitions of observations {episode['obs'].shape[1:]} and actions "
                f"{episode['action'].shape[1:]}; this environment has ({obs_size},) and ({self.k},), and a run "
                "needs at least 2 steps."
            )
        if self.options.reward == "metric":
            found = 0 if val is None or val.shape != (n,) else int(np.isfinite(val).sum())
            if found < 2:
                raise AgentError(
                    f"{path} logs {found} validations with its transitions; reward=metric needs at least 2: log the "
                    "runs with env.eval_interval > 0 (by a version that logs val_metric), or use reward=alignment."
                )
            episode["reward"] = metric_rewards(val).astype(np.float32)
        return episode

    def train(self) -> None:
        """Fit the policy on the logged episodes, leaving the global random states as they were."""
        d3rlpy, o = _d3rlpy(), self.options
        timeouts = np.concatenate([np.eye(1, len(e["reward"]), len(e["reward"]) - 1)[0] for e in self.episodes])
        dataset = d3rlpy.dataset.MDPDataset(
            observations=np.concatenate([e["obs"] for e in self.episodes]),
            actions=np.concatenate([e["action"] for e in self.episodes]),
            rewards=np.concatenate([e["reward"] for e in self.episodes]),
            terminals=np.zeros(len(timeouts), dtype=np.float32),
            timeouts=timeouts.astype(np.float32),
            action_space=d3rlpy.ActionSpace.CONTINUOUS,
        )
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            d3rlpy.seed(o.seed)
            self.algo.fit(
                dataset,
                n_steps=o.n_steps,
                n_steps_per_epoch=o.n_steps,
                show_progress=False,
                logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
            )
        random.setstate(py_state), np.random.set_state(np_state)
        self.trained = True

    def act(self, obs):
        if not self.trained:
            self.train()
        return self._to_weights(self.algo.predict(np.asarray(obs, dtype=np.float32)[None])[0])

    def state_dict(self):
        if not self.trained:
            return {"trained": False}
        buffer = io.BytesIO()
        self.algo.impl.save_model(buffer)
        return {"trained": True, "model": torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)}

    def load_state_dict(self, state):
        if state["trained"]:
            self.algo.impl.load_model(io.BytesIO(state["model"].numpy().tobytes()))
        self.trained = bool(state["trained"])
