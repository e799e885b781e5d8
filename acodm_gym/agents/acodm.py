"""AC-ODM: an actor–critic that sets the domain weights from the training state, and its transfer.

Warm-up (the paper): for ``warmup_steps`` the behaviour policy is the natural weights plus
N(0, ``warmup_noise``), negatives cut to 0 and renormalised (or, as in the authors' code, ODM's
smoothed-mean bandit); each step the actor is fitted to those weights (MSE) and the critic to
(1 + γ)·r. After warm-up: one actor–critic update per env step on the actor's weights plus
exploration noise. The default noise is N(0, 0.02) on the weights, negatives cut to 0 and
renormalised (noise that leaves no weight positive is dropped for that step): the authors'
a − U(0, 1)/1000 (option ``exploration="authors"``) moves each weight by at most 0.001, far below
weights of ~1/k, so the replay would hold almost no action variation to learn ∇_a Q from.
The learning rate decays on a cosine from 0.01 to 0.001 over ``total_steps`` (the paper).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.torch_layers import FlattenExtractor

from ..config import AgentConfig
from ..envs.state import StepInfo
from ..errors import ConfigError
from .base import Agent, EnvSpec, read_agent_file
from .diagnostics import Diagnostics
from .exp3 import EXP3Agent
from .sb3 import build_sb3_model, drain_logger, load_sb3_state, sb3_state
from .static import read_weights
from .vector_sac import LogisticNormalActor, VectorSAC, entropy_target
from .vector_td3 import SoftmaxActor, VectorDDPG, VectorTD3, cosine_schedule

BEHAVIOURS = ("natural", "odm")
PRIORS = ("natural", "uniform")
EXPLORATIONS = ("gaussian", "authors", "none")


class ACODMAgent(Agent):
    """AC-ODM on vector-reward DDPG (``acodm``).

    Options (defaults): ``layers`` (2) × ``width`` (256) of actor and critic (paper: 6 × 1024);
    ``lr_start`` (0.01) → ``lr_end`` (0.001); ``batch_size`` (256); ``buffer_size`` (10_000);
    ``gamma`` (0.95); ``tau`` (0.005: τ = 0.001 of the authors leaves the targets half at their
    initialisation after a 700-step run); ``scalarization`` ("alpha_weighted" | "sum");
    ``prior_coef`` (3.0: λ of the actor's pull λ·KL(prior ‖ α) towards ``prior``, "natural" |
    "uniform"; it keeps the weights off the simplex's corners, see ``vector_td3``; 0: off);
    ``reward_ema`` (0.9: ξ of r̂_i ← ξ r̂_i + (1 − ξ) r_i / p_i; None: the raw reward, e.g. with
    env.reward_variant=authors, whose code has no average); ``warmup_steps`` (None: 10% of the run);
    ``warmup_noise`` (0.02); ``warmup_behaviour`` ("natural" | "odm"); ``exploration``
    ("gaussian" | "authors" | "none"); ``exploration_noise`` (0.02); ``seed`` (0); ``device`` ("cpu").
    Diagnostics (``agents/diagnostics.py``): ``target_weights`` (None: the mixture ``target_cosine``
    measures the actor's steps against, e.g. the task's best static mixture: a list, a {domain: weight}
    mapping or a weights file such as a run's mixture.json, as ``agent.weights``); ``holdout_every`` (10:
    every 10th transition is kept out of the replay buffer for ``q_return_spearman``; 0: none);
    ``diagnostics_window`` (50: steps of the reward signal-to-noise window).
    """

    name = "acodm"
    algorithm: type[VectorTD3] | type[VectorSAC] = VectorDDPG
    explorations = EXPLORATIONS

    def __init__(
        self,
        spec: EnvSpec,
        *,
        layers: int = 2,
        width: int = 256,
        lr_start: float = 0.01,
        lr_end: float = 0.001,
        batch_size: int = 256,
        buffer_size: int = 10_000,
        gamma: float = 0.95,
        tau: float = 0.005,
        scalarization: str = "alpha_weighted",
        prior_coef: float = 3.0,
        prior: str = "natural",
        reward_ema: float | None = 0.9,
        warmup_steps: int | None = None,
        warmup_noise: float = 0.02,
        warmup_behaviour: str = "natural",
        exploration: str = "gaussian",
        exploration_noise: float = 0.02,
        target_weights: list[float] | dict[str, float] | str | None = None,
        holdout_every: int = 10,
        diagnostics_window: int = 50,
        seed: int = 0,
        device: str = "cpu",
    ):
        super().__init__(spec)
        if warmup_behaviour not in BEHAVIOURS:
            raise ConfigError(f"{self.name} warmup_behaviour='{warmup_behaviour}'; choose one of {', '.join(BEHAVIOURS)}.")
        if prior not in PRIORS:
            raise ConfigError(f"{self.name} prior='{prior}'; choose one of {', '.join(PRIORS)}.")
        if exploration not in self.explorations:
            raise ConfigError(f"{self.name} exploration='{exploration}'; choose one of {', '.join(self.explorations)}.")
        target = None if target_weights is None else read_weights(target_weights, spec.domains)
        self.diagnostics = Diagnostics(self.k, gamma, target, diagnostics_window, holdout_every)
        self.net_arch = [int(width)] * int(layers)
        self.batch_size = int(batch_size)
        self.warmup_steps = max(1, spec.total_steps // 10) if warmup_steps is None else int(warmup_steps)
        self.warmup_noise = warmup_noise
        self.exploration, self.exploration_noise = exploration, exploration_noise
        self.behaviour = EXP3Agent(spec, updater="smoothed_mean") if warmup_behaviour == "odm" else None
        self.rng = np.random.default_rng(seed)
        self.t = 0  # transitions observed
        self.model: VectorTD3 = build_sb3_model(
            self.algorithm,
            spec,
            seed=seed,
            device=device,
            learning_rate=cosine_schedule(lr_start, lr_end),
            buffer_size=buffer_size,
            batch_size=self.batch_size,
            learning_starts=0,
            gamma=gamma,
            tau=tau,
            scalarization=scalarization,
            prior=spec.natural_weights if prior == "natural" else np.full(self.k, 1.0 / self.k),
            prior_coef=prior_coef,
            replay_buffer_kwargs={"reward_ema": reward_ema},
            policy_kwargs={"net_arch": self.net_arch},
            **self.algorithm_options(),
        )

    def algorithm_options(self) -> dict[str, Any]:
        """Extra keyword arguments for ``algorithm`` (the TD3 variant adds its own)."""
        return {}

    def act(self, obs):
        if self.t < self.warmup_steps:
            if self.behaviour is not None:
                return self.behaviour.act(obs)
            return self._perturbed(self.spec.natural_weights, self.rng.normal(0.0, self.warmup_noise, self.k))
        weights = self.model.predict(obs, deterministic=self.exploration != "policy")[0].astype(np.float64)
        if self.exploration == "gaussian":
            return self._perturbed(weights, self.rng.normal(0.0, self.exploration_noise, self.k))
        if self.exploration == "authors":
            return self._perturbed(weights, -self.rng.uniform(0.0, 1.0, self.k) / 1000)
        return self._to_weights(weights)

    def _perturbed(self, weights: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """``weights + noise`` on the simplex (negatives cut to 0); ``weights`` if the noise left none positive."""
        noisy = weights + noise
        return self._to_weights(noisy if np.any(noisy > 0) else weights)

    def observe(self, obs, action, reward, next_obs, info: StepInfo):
        if self.behaviour is not None and self.t < self.warmup_steps:
            self.behaviour.observe(obs, action, reward, next_obs, info)
        scaled = 2 * np.asarray(action, dtype=np.float64) - 1  # act()'s weights in SB3's normalised action space
        buffer, done = self.model.replay_buffer, np.array([False])
        vector = buffer.reward_vector([info], done)
        held_out = self.diagnostics.holds_out()
        if not held_out:
            buffer.store(obs[None], next_obs[None], scaled[None], vector, done, [info])
        self.diagnostics.record(info["vector_reward"], obs, scaled, vector[0], held_out)
        self._last_obs = next_obs
        self.t += 1

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """The actor's weights without exploration."""
        return self.model.predict(obs, deterministic=True)[0].astype(np.float64)

    def q_and_return(self, obs: np.ndarray, actions: np.ndarray, returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scalarised Q1(s, a) and scalarised returns, each with the transition's own action (diagnostics)."""
        model = self.model
        a = th.as_tensor(actions, device=model.device)
        with th.no_grad():
            q = model.scalarize(model.critic.q1_forward(th.as_tensor(obs, device=model.device), a), a)
            g = model.scalarize(th.as_tensor(returns, dtype=th.float32, device=model.device), a)
        return q.cpu().numpy(), g.cpu().numpy()

    def update(self):
        if self.t == 0:
            return {}
        self.model._current_progress_remaining = max(0.0, 1.0 - self.t / self.spec.total_steps)
        before = self.greedy(self._last_obs) if self.diagnostics.target is not None else None
        if self.t <= self.warmup_steps:
            self.model.train_warmup(1, self.batch_size)
        else:
            self.model.train(1, self.batch_size)
        stats = drain_logger(self.model)
        return {**stats, **self.diagnostics.stats(before, self.greedy(self._last_obs), self.q_and_return)}

    def state_dict(self):
        return {
            "sb3": sb3_state(self.model),
            "net_arch": list(self.net_arch),
            "t": self.t,
            "rng": self.rng.bit_generator.state,
            "behaviour": self.behaviour.state_dict() if self.behaviour is not None else {},
            "diagnostics": self.diagnostics.state_dict(),
        }

    def load_state_dict(self, state):
        if list(state["net_arch"]) != self.net_arch:
            raise ValueError(f"The saved {self.name} networks have hidden sizes {state['net_arch']}, not {self.net_arch}: set layers/width to match.")
        load_sb3_state(self.model, state["sb3"])
        self.t = int(state["t"])
        self.rng.bit_generator.state = state["rng"]
        if self.behaviour is not None:
            self.behaviour.load_state_dict(state["behaviour"])
        self.diagnostics.load_state_dict(state["diagnostics"])


class ACODMTD3Agent(ACODMAgent):
    """AC-ODM on vector-reward TD3 (``acodm-td3``): two critics (per-component minimum in the
    target), delayed actor updates, target smoothing. Extra options: ``policy_delay`` (2),
    ``target_policy_noise`` (0.04) and ``target_noise_clip`` (0.1), in SB3's normalised action
    space (half that on the weights)."""

    name = "acodm-td3"
    algorithm = VectorTD3

    def __init__(self, spec: EnvSpec, *, policy_delay: int = 2, target_policy_noise: float = 0.04, target_noise_clip: float = 0.1, **options):
        self._td3_options = {"policy_delay": policy_delay, "target_policy_noise": target_policy_noise, "target_noise_clip": target_noise_clip}
        super().__init__(spec, **options)

    def algorithm_options(self):
        return self._td3_options


class VectorSACAgent(ACODMAgent):
    """AC-ODM's loop on vector-reward SAC with a logistic-normal policy on the simplex (``vector-sac``,
    ``vector_sac.py``). Two critics (per-component minimum in the target); its warm-up fits the policy
    to the behaviour weights by maximum likelihood. Options as ``acodm``, and:

    :param ent_coef: SAC's temperature: "auto_0.05" (SB3's automatic tuning from 0.05), "auto" (from 1)
        or a fixed float; not tuned
    :param target_entropy: the entropy the automatic temperature aims at (None: (k − 1)·½·ln(2πe·0.02²),
        the entropy on the simplex of std 0.02 on each free weight, AC-ODM's exploration noise)
    :param exploration: "policy" (sample the policy after warm-up) or one of ``acodm``'s
    """

    name = "vector-sac"
    algorithm = VectorSAC
    explorations = EXPLORATIONS + ("policy",)

    def __init__(self, spec: EnvSpec, *, ent_coef: str | float = "auto_0.05", target_entropy: float | None = None,
                 exploration: str = "policy", **options):
        k = len(spec.domains)
        target = entropy_target(k) if target_entropy is None else float(target_entropy)
        self._sac_options = {"ent_coef": ent_coef, "target_entropy": target}
        super().__init__(spec, exploration=exploration, **options)

    def algorithm_options(self):
        return self._sac_options


class FrozenActorAgent(Agent):
    """Proxy mode's target stage (``frozen``; the CLI's ``transfer``): a saved acodm/acodm-td3/vector-sac
    actor, acting greedily (vector-sac: softmax of its Gaussian's mean).

    Option: ``path``, the file ``Agent.save`` wrote. Needs no reward, so the env skips its probes.
    Refuses a file made for other domains or another observation layout, and a corrupted file.
    """

    name = "frozen"
    needs_reward = False
    sources = {ACODMAgent.name: SoftmaxActor, ACODMTD3Agent.name: SoftmaxActor, VectorSACAgent.name: LogisticNormalActor}

    def __init__(self, spec: EnvSpec, path: str):
        super().__init__(spec)
        blob = read_agent_file(path)
        if blob["agent"] not in self.sources:
            raise ValueError(f"{path} holds a '{blob['agent']}' agent; a frozen actor must be saved by {' or '.join(self.sources)}.")
        spec.check(blob, str(path))
        obs_space = spec.observation_space
        try:
            state = blob["state"]
            self.actor = self.sources[blob["agent"]](obs_space, spec.action_space, list(state["net_arch"]), FlattenExtractor(obs_space), obs_space.shape[0])
            policy = state["sb3"]["params"]["policy"]
            self.actor.load_state_dict({k.removeprefix("actor."): v for k, v in policy.items() if k.startswith("actor.")})
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ValueError(f"{path} does not hold a loadable actor: {type(exc).__name__}: {str(exc)[:300]}") from None
        self.actor.set_training_mode(False)

    @classmethod
    def from_config(cls, spec: EnvSpec, cfg: AgentConfig) -> "FrozenActorAgent":
        if "path" not in cfg.options:
            raise ConfigError(
                "agent 'frozen' needs agent.options.path: a file saved by an acodm, acodm-td3 or vector-sac run."
            )
        return super().from_config(spec, cfg)

    def act(self, obs):
        return self._to_weights(self.actor.predict(obs, deterministic=True)[0])
