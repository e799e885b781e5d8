"""Stable-baselines3 models driven one step at a time by the runner's loop, never by ``learn()``.

``build_sb3_model`` makes a model without an env the way SB3's own ``load()`` does: construct
with ``_init_setup_model=False``, assign the spaces, then ``_setup_model()``. The stock agents
(``ddpg``, ``td3``, ``sac``, ``ppo``) wrap SB3's algorithms unchanged on the env's scalar reward:
act = SB3's own exploration (``_sample_action``: uniform random before ``learning_starts``, then
``predict`` plus action noise), observe = add to its buffer, update = its ``train()``. PPO collects
its rollout buffer in ``observe`` and trains when the buffer is full.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import DDPG, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.save_util import recursive_getattr
from stable_baselines3.common.utils import obs_as_tensor

from .base import Agent, EnvSpec, check_value, option

_BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def build_sb3_model(
    algorithm: type[BaseAlgorithm], spec: EnvSpec, *, policy: str = "MlpPolicy", **kwargs
) -> BaseAlgorithm:
    """An SB3 model for ``spec``'s spaces without an env; its logger only collects values."""
    model = algorithm(policy, env=None, _init_setup_model=False, **kwargs)
    model.observation_space, model.action_space, model.n_envs = spec.observation_space, spec.action_space, 1
    model._setup_model()
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def update_model(
    model: BaseAlgorithm, done: int, total: int, train: Callable[[], None] | None = None
) -> dict[str, float]:
    """One training call of ``model`` between env steps; returns what it logged.

    SB3's public entry point, ``learn()``, owns the env loop, which here is the runner's: SB3 has no public
    way to train between steps. This is the one hook through which the agents do: it sets the progress
    (``done`` of ``total`` steps, which SB3's learning-rate schedules read) with SB3's own
    ``_update_current_progress_remaining``, then calls ``train`` (default: ``model.train()``, the method
    every SB3 algorithm implements and ``learn()`` calls).

    :param model: the SB3 model
    :param done: steps taken so far (capped at ``total``: an agent carried across episodes keeps counting)
    :param total: the steps its schedules span
    :param train: the training call, e.g. ``lambda: model.train(gradient_steps=1, batch_size=256)``
    """
    model._update_current_progress_remaining(min(done, total), total)
    (train or model.train)()
    return drain_logger(model)


def drain_logger(model: BaseAlgorithm) -> dict[str, float]:
    """What the last ``train()`` recorded ("train/critic_loss" → "critic_loss"), then clear it."""
    stats = {key.split("/")[-1]: float(value) for key, value in model.logger.name_to_value.items()}
    model.logger.dump()
    return stats


def buffer_state(buffer: ReplayBuffer) -> dict[str, Any]:
    filled = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {n: th.from_numpy(getattr(buffer, n)[:filled].copy()) for n in _BUFFER_ARRAYS if hasattr(buffer, n)}
    if hasattr(buffer, "ema"):
        arrays["ema"] = th.from_numpy(buffer.ema.copy())
    return {"pos": buffer.pos, "full": buffer.full, **arrays}


def load_buffer_state(buffer: ReplayBuffer, state: dict[str, Any]) -> None:
    for name in _BUFFER_ARRAYS:
        if name in state:
            getattr(buffer, name)[: len(state[name])] = state[name].numpy()
    if "ema" in state:
        buffer.ema = state["ema"].numpy().copy()
    buffer.pos, buffer.full = state["pos"], state["full"]


def sb3_state(model: BaseAlgorithm) -> dict[str, Any]:
    """Everything SB3 itself saves (networks, optimisers, learned tensors), counters and the replay."""
    _, variables = model._get_torch_save_params()
    state = {
        "params": model.get_parameters(),
        "variables": {n: recursive_getattr(model, n).detach().clone() for n in variables},
        "num_timesteps": model.num_timesteps,
        "n_updates": model._n_updates,
    }
    if getattr(model, "replay_buffer", None) is not None:
        state["replay"] = buffer_state(model.replay_buffer)
    return state


def load_sb3_state(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    model.set_parameters(state["params"], exact_match=True, device=model.device)
    with th.no_grad():
        for name, value in state["variables"].items():
            recursive_getattr(model, name).copy_(value)
    model.num_timesteps, model._n_updates = state["num_timesteps"], state["n_updates"]
    if "replay" in state:
        load_buffer_state(model.replay_buffer, state["replay"])


# What the SB3 keywords an agent passes through (``SB3Options.algorithm_kwargs``) take, checked like declared
# options before any work (SB3 itself would train on, or fail late).
SB3_KEYWORD_RANGES = {
    "gamma": "[0, 1]",
    "tau": "[0, 1]",
    "gae_lambda": "[0, 1]",
    "learning_rate": "(0, inf)",
    "clip_range": "(0, inf)",
    "ent_coef": "[0, inf)",
    "vf_coef": "[0, inf)",
    "max_grad_norm": "(0, inf)",
    "gradient_steps": "[-1, inf)",
    "policy_delay": "[1, inf)",
    "target_policy_noise": "[0, inf)",
    "target_noise_clip": "[0, inf)",
}


@dataclass
class SB3Options:
    """Options of a stock SB3 agent. Any other key is a keyword of the SB3 algorithm (``learning_rate``,
    ``gamma``, ...), passed to its constructor as given.

    :param seed: the algorithm's seed (a run sets it to ``run.seed`` unless given)
    :param device: torch device of its networks
    :param algorithm_kwargs: the other keys, gathered here (a key the algorithm does not take is refused)
    """

    seed: int = 0
    device: str = "cpu"
    algorithm_kwargs: dict[str, Any] = field(default_factory=dict)


class SB3Agent(Agent):
    """A stock SB3 algorithm on the env's scalar reward; its options are ``Options`` (defaults sized for
    CPU runs of a few hundred steps) and any keyword of the algorithm."""

    algorithm: type[BaseAlgorithm]
    Options = SB3Options

    def __init__(self, spec: EnvSpec, **options: Any):
        super().__init__(spec)
        self.options = self.make_options(options)
        self.model = build_sb3_model(self.algorithm, self.model_spec(spec), **self.algorithm_kwargs())

    def model_spec(self, spec: EnvSpec) -> EnvSpec:
        """The spaces the SB3 model is built on: the env's (off-policy models squash onto any box)."""
        return spec

    @classmethod
    def make_options(cls, values: Mapping[str, Any] | None = None) -> Any:
        """Declared options merged as a config section; the keys the algorithm takes go to ``algorithm_kwargs``."""
        values = dict(values or {})
        declared, taken = {f.name for f in fields(cls.Options)}, cls.option_names()
        extra = {key: values.pop(key) for key in list(values) if key not in declared and key in taken}
        options = super().make_options(values)  # an unknown key: refused with the closest declared one
        options.algorithm_kwargs = {**options.algorithm_kwargs, **extra}
        for key, value in options.algorithm_kwargs.items():
            check_value(f"agent.options.{key}", value, SB3_KEYWORD_RANGES.get(key))
        return options

    @classmethod
    def option_names(cls) -> set[str]:
        """The declared options and every keyword of the SB3 algorithm."""
        keywords = set(inspect.signature(cls.algorithm.__init__).parameters)
        return super().option_names() | keywords - {"self", "policy", "env", "_init_setup_model"}

    def algorithm_kwargs(self) -> dict[str, Any]:
        """The algorithm's keyword arguments: every declared option but the agent's own, then the rest."""
        o = self.options
        own = {"algorithm_kwargs", "action_noise", "target_entropy"}
        return {**{f.name: getattr(o, f.name) for f in fields(o) if f.name not in own}, **o.algorithm_kwargs}

    def greedy(self, obs):
        """The policy's deterministic action (SB3's ``predict``), mapped from the model's action box onto the
        simplex as ``act`` maps its draws."""
        action = self.model.predict(np.asarray(obs, dtype=np.float32), deterministic=True)[0]
        low, high = self.model.action_space.low, self.model.action_space.high
        return self._to_weights((np.clip(action, low, high) - low) / (high - low))

    def state_dict(self):
        return {"sb3": sb3_state(self.model)}

    def load_state_dict(self, state):
        load_sb3_state(self.model, state["sb3"])


@dataclass
class OffPolicyOptions(SB3Options):
    """Options of ``ddpg``, ``td3`` and ``sac``: ``SB3Options``, and:

    :param action_noise: σ of SB3's NormalActionNoise in the normalised action space (0: none)
    :param learning_starts: steps before the first update
    :param buffer_size: replay buffer capacity
    :param batch_size: transitions per update
    """

    action_noise: float = option(0.1, "[0, inf)")
    learning_starts: int = option(50, "[0, inf)")
    buffer_size: int = option(10_000, "[1, inf)")
    batch_size: int = option(64, "[1, inf)")


class OffPolicySB3Agent(SB3Agent):
    """DDPG/TD3/SAC: SB3's own exploration, replay buffer and ``train(gradient_steps, batch_size)``."""

    Options = OffPolicyOptions

    def __init__(self, spec: EnvSpec, **options: Any):
        super().__init__(spec, **options)
        self._buffer_action: np.ndarray | None = None

    def algorithm_kwargs(self) -> dict[str, Any]:
        k, sigma = self.k, self.options.action_noise
        noise = NormalActionNoise(np.zeros(k), np.full(k, sigma)) if sigma > 0 else None
        return {**super().algorithm_kwargs(), "action_noise": noise}

    def act(self, obs):
        model = self.model
        model._last_obs = np.asarray(obs, dtype=np.float32)[None]
        action, self._buffer_action = model._sample_action(model.learning_starts, model.action_noise, n_envs=1)
        return self._to_weights(action[0])

    def observe(self, obs, action, reward, next_obs, info):
        self.model.replay_buffer.add(
            obs[None], next_obs[None], self._buffer_action, np.array([reward]), np.array([False]), [info]
        )
        self.model.num_timesteps += 1

    def update(self):
        model = self.model
        if model.num_timesteps <= model.learning_starts or model.num_timesteps % model.train_freq.frequency:
            return {}
        train = lambda: model.train(gradient_steps=model.gradient_steps, batch_size=model.batch_size)  # noqa: E731
        return update_model(model, model.num_timesteps, self.spec.total_steps, train)


class DDPGAgent(OffPolicySB3Agent):
    name = "ddpg"
    algorithm = DDPG


class TD3Agent(OffPolicySB3Agent):
    name = "td3"
    algorithm = TD3


@dataclass
class SACOptions(OffPolicyOptions):
    """Options of ``sac``: ``OffPolicyOptions`` (no action noise by default: SAC explores by its own
    stochastic policy), and:

    :param target_entropy: SAC's target entropy (None: −k, the value of SB3's "auto", which reads an env)
    """

    action_noise: float = option(0.0, "[0, inf)")
    target_entropy: float | str | None = None


class SACAgent(OffPolicySB3Agent):
    """SAC explores by its own stochastic policy, so no action noise by default."""

    name = "sac"
    algorithm = SAC
    Options = SACOptions

    def algorithm_kwargs(self) -> dict[str, Any]:
        target = self.options.target_entropy
        return {**super().algorithm_kwargs(), "target_entropy": -float(self.k) if target is None else target}


@dataclass
class PPOOptions(SB3Options):
    """Options of ``ppo``: ``SB3Options``, and:

    :param n_steps: rollout steps per update
    :param batch_size: minibatch size
    :param n_epochs: passes over each rollout
    """

    n_steps: int = option(64, "[2, inf)")
    batch_size: int = option(32, "[2, inf)")
    n_epochs: int = option(4, "[1, inf)")


class PPOAgent(SB3Agent):
    """PPO: ``observe`` fills SB3's rollout buffer; ``update`` trains once it holds ``n_steps``. Its actions lie in
    [-1, 1]^k (``model_spec``), mapped onto the simplex as the env maps (a + 1) / 2.

    The rollout buffer is not saved: a resumed run starts a fresh rollout.
    """

    name = "ppo"
    algorithm = PPO
    Options = PPOOptions

    def __init__(self, spec: EnvSpec, **options: Any):
        super().__init__(spec, **options)
        self._episode_start = np.ones(1, dtype=bool)
        self._pending: tuple | None = None
        self._next_obs: np.ndarray | None = None

    def model_spec(self, spec: EnvSpec) -> EnvSpec:
        """PPO's Gaussian policy acts on [-1, 1]^k, its start (mean 0) being uniform weights; on the env's [0, 1]^k
        its clipped draws would put about half the domains at weight 0."""
        return dataclasses.replace(spec, action_space=spaces.Box(-1.0, 1.0, (self.k,), np.float32))

    def act(self, obs):
        model = self.model
        with th.no_grad():
            actions, values, log_probs = model.policy(
                obs_as_tensor(np.asarray(obs, dtype=np.float32)[None], model.device)
            )
        self._pending = (actions.cpu().numpy(), values, log_probs)
        return self._to_weights((np.clip(self._pending[0][0], -1.0, 1.0) + 1.0) / 2.0)  # as RescaleAction(env, -1, 1)

    def observe(self, obs, action, reward, next_obs, info):
        actions, values, log_probs = self._pending
        self.model.rollout_buffer.add(obs[None], actions, np.array([reward]), self._episode_start, values, log_probs)
        self._episode_start = np.zeros(1, dtype=bool)
        self._next_obs = next_obs
        self.model.num_timesteps += 1

    def update(self):
        model, buffer = self.model, self.model.rollout_buffer
        if not buffer.full:
            return {}
        with th.no_grad():
            last_values = model.policy.predict_values(obs_as_tensor(self._next_obs[None], model.device))
        buffer.compute_returns_and_advantage(last_values=last_values, dones=np.zeros(1))
        stats = update_model(model, model.num_timesteps, self.spec.total_steps)
        buffer.reset()
        return stats
