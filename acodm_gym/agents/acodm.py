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

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.torch_layers import FlattenExtractor

from ..config import AgentConfig
from ..envs.state import StepInfo
from ..errors import AgentError, ConfigError
from ..simplex import SCALARIZATIONS
from .base import Agent, EnvSpec, option, read_agent_file
from .diagnostics import Diagnostics
from .exp3 import EXP3Agent
from .sb3 import build_sb3_model, load_sb3_state, sb3_state, update_model
from .static import read_weights
from .vector_sac import LogisticNormalActor, VectorSAC, entropy_target
from .vector_td3 import ACTOR_GRADIENTS, ReleasedDDPG, SoftmaxActor, VectorDDPG, VectorTD3, cosine_schedule

BEHAVIOURS = ("natural", "odm")
PRIORS = ("natural", "uniform")
ACTORS = ("softmax", "anchored")
EXPLORATIONS = ("gaussian", "authors", "none")


@dataclass
class ActorCriticOptions:
    """Options of the AC-ODM loop (``ActorCriticAgent``), shared by ``acodm`` and its variants and ``vector-sac``.

    :param layers: hidden layers of actor and critic (the paper: 6)
    :param width: units per hidden layer (the paper: 1024)
    :param lr_start: learning rate at the start of the cosine decay
    :param lr_end: learning rate at its end (``total_steps``)
    :param batch_size: transitions per actor–critic update
    :param buffer_size: replay buffer capacity
    :param gamma: discount factor
    :param tau: soft target update rate (the authors' 0.001 leaves the targets half at their
        initialisation after a 700-step run)
    :param scalarization: "alpha_weighted" (μ(s)·Q, the env's scalar reward), "sum", or another of
        ``simplex.SCALARIZATIONS``
    :param prior_coef: λ of the actor's pull λ·KL(prior ‖ α) towards ``prior``; it keeps the weights off
        the simplex's corners (see ``vector_td3``); 0: off
    :param prior: the mixture the actor is pulled towards, "natural" or "uniform" (an anchored actor:
        its anchor instead)
    :param actor_gradient: "critic" (DDPG: through the critic's action input) or "values" (the critic's
        per-domain values held constant: an exponentiated-gradient-like step; see ``vector_td3``); not
        with an anchored actor
    :param reward_ema: ξ of r̂_i ← ξ r̂_i + (1 − ξ) r_i / p_i; None: the raw reward (e.g. with
        env.reward_variant=authors, whose code has no average)
    :param warmup_steps: steps of the behaviour policy before the actor acts (None: 10% of the run)
    :param warmup_noise: σ of the behaviour policy's Gaussian noise on the natural weights
    :param warmup_behaviour: "natural" (natural weights plus noise) or "odm" (ODM's smoothed-mean bandit)
    :param exploration: "gaussian" (N(0, ``exploration_noise``) on the weights), "authors"
        (a − U(0, 1)/1000) or "none"
    :param exploration_noise: σ of the Gaussian exploration on the weights
    :param target_weights: the mixture the diagnostics' ``target_cosine`` measures the actor's steps
        against (e.g. the task's best static mixture): a list, a {domain: weight} mapping or a weights
        file such as a run's mixture.json, as ``agent.weights``; None: not logged
    :param holdout_every: every n-th transition is kept out of the replay buffer for
        ``q_return_spearman`` (0: none)
    :param diagnostics_window: steps of the reward signal-to-noise window
    :param seed: seed of the networks and the exploration noise (a run sets it to ``run.seed`` unless given)
    :param device: torch device of the networks
    """

    layers: int = option(2, "[1, inf)")
    width: int = option(256, "[1, inf)")
    lr_start: float = option(0.01, "(0, inf)")
    lr_end: float = option(0.001, "(0, inf)")
    batch_size: int = option(256, "[1, inf)")
    buffer_size: int = option(10_000, "[1, inf)")
    gamma: float = option(0.95, "[0, 1)")
    tau: float = option(0.005, "(0, 1]")
    scalarization: str = option("alpha_weighted", SCALARIZATIONS)
    prior_coef: float = option(3.0, "[0, inf)")
    prior: str = option("natural", PRIORS)
    actor_gradient: str = option("critic", ACTOR_GRADIENTS)
    reward_ema: float | None = option(0.9, "[0, 1)")
    warmup_steps: int | None = option(None, "[0, inf)")
    warmup_noise: float = option(0.02, "[0, inf)")
    warmup_behaviour: str = option("natural", BEHAVIOURS)
    exploration: str = option("gaussian", EXPLORATIONS)
    exploration_noise: float = option(0.02, "[0, inf)")
    target_weights: list[float] | dict[str, float] | str | None = None
    holdout_every: int = option(10, "[0, inf)")
    diagnostics_window: int = option(50, "[1, inf)")
    seed: int = 0
    device: str = "cpu"


@dataclass
class ACODMOptions(ActorCriticOptions):
    """Options of ``acodm`` (and, with their own additions, ``acodm-td3`` and ``acodm-released``):
    ``ActorCriticOptions``, and the form of its deterministic actor.

    :param actor: "softmax" (the paper: α = softmax of the network's outputs) or "anchored" (α =
        softmax(log π₀ + a(s)), started at π₀ and stepped along the value gaps as mirror descent, so a
        rare domain's weight moves as fast as a common one's; ``prior_coef`` pulls log α towards log π₀;
        warm-up perturbs π₀ instead of the natural weights; see ``vector_td3``)
    :param anchor: π₀ of the anchored actor, "uniform" or "natural"
    :param min_weight: the anchored actor's minimum probability δ per domain (as ADO's), k·δ < 1
    """

    actor: str = option("softmax", ACTORS)
    anchor: str = option("uniform", PRIORS)
    min_weight: float = option(0.01, "[0, 0.5)")  # k·δ < 1 is checked with k, when the agent is built


class ActorCriticAgent(Agent):
    """The AC-ODM loop on a vector-reward actor–critic (``algorithm``): warm-up on a behaviour policy, then
    the actor's weights with exploration, one actor–critic update per env step. ``ACODMAgent`` runs it on
    DDPG (and TD3), ``VectorSACAgent`` on SAC; its options are ``ActorCriticOptions``.

    Diagnostics: ``agents/diagnostics.py``.
    """

    algorithm: type[VectorTD3] | type[VectorSAC]
    Options = ActorCriticOptions
    target_weights_option = "target_weights"

    def __init__(self, spec: EnvSpec, **options: Any):
        super().__init__(spec)
        o = self.options = self.make_options(options)
        target = None if o.target_weights is None else read_weights(o.target_weights, spec.domains)
        self.diagnostics = Diagnostics(self.k, o.gamma, target, o.diagnostics_window, o.holdout_every)
        self.net_arch = [o.width] * o.layers
        self.batch_size = o.batch_size
        self.warmup_steps = max(1, spec.total_steps // 10) if o.warmup_steps is None else o.warmup_steps
        self.warmup_noise = o.warmup_noise
        self.exploration, self.exploration_noise = o.exploration, o.exploration_noise
        self.behaviour = EXP3Agent(spec, updater="smoothed_mean") if o.warmup_behaviour == "odm" else None
        self.rng = np.random.default_rng(o.seed)
        self.t = 0  # transitions observed
        uniform = np.full(self.k, 1.0 / self.k)
        actor_kwargs = self.actor_kwargs()
        self.start_weights = actor_kwargs.get("anchor", spec.natural_weights)  # what warm-up perturbs
        self.model: VectorTD3 = build_sb3_model(
            self.algorithm,
            spec,
            seed=o.seed,
            device=o.device,
            learning_rate=cosine_schedule(o.lr_start, o.lr_end),
            buffer_size=o.buffer_size,
            batch_size=self.batch_size,
            learning_starts=0,
            gamma=o.gamma,
            tau=o.tau,
            scalarization=o.scalarization,
            prior=spec.natural_weights if o.prior == "natural" else uniform,
            prior_coef=o.prior_coef,
            actor_gradient=o.actor_gradient,
            replay_buffer_kwargs={"reward_ema": o.reward_ema},
            policy_kwargs={"net_arch": self.net_arch, **actor_kwargs},
            **self.algorithm_options(),
        )

    def actor_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of the actor network (``ACODMAgent``'s anchored actor: π₀ and δ)."""
        return {}

    def algorithm_options(self) -> dict[str, Any]:
        """Extra keyword arguments for ``algorithm`` (the TD3 and SAC variants add their own)."""
        return {}

    def act(self, obs):
        if self.t < self.warmup_steps:
            if self.behaviour is not None:
                return self.behaviour.act(obs)
            return self._perturbed(self.start_weights, self.rng.normal(0.0, self.warmup_noise, self.k))
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

    def q_and_return(
        self, obs: np.ndarray, actions: np.ndarray, returns: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scalarised Q1(s, a) and scalarised returns, each with the transition's own action, and the vector
        Q1(s, a) (diagnostics)."""
        model = self.model
        a = th.as_tensor(actions, device=model.device)
        with th.no_grad():
            q_vector = model.critic.q1_forward(th.as_tensor(obs, device=model.device), a)
            q = model.scalarize(q_vector, a)
            g = model.scalarize(th.as_tensor(returns, dtype=th.float32, device=model.device), a)
        return q.cpu().numpy(), g.cpu().numpy(), q_vector.cpu().numpy()

    def update(self):
        if self.t == 0:
            return {}
        before = self.greedy(self._last_obs) if self.diagnostics.target is not None else None
        train = self.model.train_warmup if self.t <= self.warmup_steps else self.model.train
        stats = update_model(self.model, self.t, self.spec.total_steps, lambda: train(1, self.batch_size))
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
            raise AgentError(
                f"The saved {self.name} networks have hidden sizes {state['net_arch']}, not {self.net_arch}: set layers/width to match."
            )
        load_sb3_state(self.model, state["sb3"])
        self.t = int(state["t"])
        self.rng.bit_generator.state = state["rng"]
        if self.behaviour is not None:
            self.behaviour.load_state_dict(state["behaviour"])
        self.diagnostics.load_state_dict(state["diagnostics"])


class ACODMAgent(ActorCriticAgent):
    """AC-ODM on vector-reward DDPG (``acodm``), with the paper's softmax actor or the anchored one; its
    options are ``ACODMOptions``."""

    name = "acodm"
    algorithm = VectorDDPG
    Options = ACODMOptions

    def actor_kwargs(self) -> dict[str, Any]:
        o = self.options
        if not o.min_weight * self.k < 1.0:
            raise ConfigError(
                f"{self.name} min_weight={o.min_weight} must be below 1/k = {1 / self.k:.4g}, so the floors leave "
                "weight to move."
            )
        if o.actor != "anchored":
            return {}
        anchor = self.spec.natural_weights if o.anchor == "natural" else np.full(self.k, 1.0 / self.k)
        return {"anchor": anchor, "min_weight": o.min_weight}


@dataclass
class ACODMTD3Options(ACODMOptions):
    """Options of ``acodm-td3``: ``ACODMOptions``, and TD3's own (in SB3's normalised action space,
    half that on the weights).

    :param policy_delay: critic updates per actor update
    :param target_policy_noise: σ of the target policy smoothing noise
    :param target_noise_clip: clip of that noise
    """

    policy_delay: int = option(2, "[1, inf)")
    target_policy_noise: float = option(0.04, "[0, inf)")
    target_noise_clip: float = option(0.1, "[0, inf)")


class ACODMTD3Agent(ACODMAgent):
    """AC-ODM on vector-reward TD3 (``acodm-td3``): two critics (per-component minimum in the
    target), delayed actor updates, target smoothing; its options are ``ACODMTD3Options``."""

    name = "acodm-td3"
    algorithm = VectorTD3
    Options = ACODMTD3Options

    def algorithm_options(self):
        o = self.options
        return {
            "policy_delay": o.policy_delay,
            "target_policy_noise": o.target_policy_noise,
            "target_noise_clip": o.target_noise_clip,
        }


@dataclass
class VectorSACOptions(ActorCriticOptions):
    """Options of ``vector-sac``: ``ActorCriticOptions``, and SAC's own.

    :param ent_coef: SAC's temperature: "auto_0.05" (SB3's automatic tuning from 0.05), "auto" (from 1)
        or a fixed float; not tuned
    :param target_entropy: the entropy the automatic temperature aims at (None: (k − 1)·½·ln(2πe·0.02²),
        the entropy on the simplex of std 0.02 on each free weight, AC-ODM's exploration noise)
    :param exploration: "policy" (sample the policy after warm-up) or one of ``acodm``'s
    """

    ent_coef: float | str = "auto_0.05"
    target_entropy: float | None = None
    exploration: str = option("policy", (*EXPLORATIONS, "policy"))


class VectorSACAgent(ActorCriticAgent):
    """AC-ODM's loop on vector-reward SAC with a logistic-normal policy on the simplex (``vector-sac``,
    ``vector_sac.py``). Two critics (per-component minimum in the target); its warm-up fits the policy
    to the behaviour weights by maximum likelihood. Its options are ``VectorSACOptions``.
    """

    name = "vector-sac"
    algorithm = VectorSAC
    Options = VectorSACOptions

    def algorithm_options(self):
        o = self.options
        return {
            "ent_coef": o.ent_coef,
            "target_entropy": entropy_target(self.k) if o.target_entropy is None else o.target_entropy,
        }


@dataclass
class ACODMReleasedOptions(ACODMOptions):
    """Options of ``acodm-released``: ``ACODMOptions`` with the authors' code's choices as defaults.

    :param warmup_behaviour: ODM's smoothed-mean bandit, as their warm-up runs
    :param exploration: their a − U(0, 1)/1000
    :param scalarization: their actor loss, −mean Q over the domains
    :param prior_coef: none in their code
    :param reward_ema: none in their code
    :param actor: "softmax" only, their actor
    """

    actor: str = option("softmax", ("softmax",))
    warmup_behaviour: str = option("odm", BEHAVIOURS)
    exploration: str = option("authors", EXPLORATIONS)
    scalarization: str = option("sum", SCALARIZATIONS)
    prior_coef: float = option(0.0, "[0, inf)")
    reward_ema: float | None = option(None, "[0, 1)")


class ACODMReleasedAgent(ACODMAgent):
    """What the authors' released code runs (``acodm-released``): ODM's smoothed-mean warm-up, then the
    actor's weights with their exploration, but an actor that never learns (``ReleasedDDPG``: their code
    steps the critic's optimiser after the actor's loss). So after warm-up the mixture is a randomly
    initialised network's output; the released results rest on it. Its options are ``ACODMReleasedOptions``.
    """

    name = "acodm-released"
    algorithm = ReleasedDDPG
    Options = ACODMReleasedOptions


@dataclass
class FrozenOptions:
    """Options of ``frozen``.

    :param path: the file ``Agent.save`` wrote (a run's agent.pt), required; how that actor was trained is
        ``agent.trained`` (written by ``learn`` and proxy mode)
    """

    path: str | None = None


class FrozenActorAgent(Agent):
    """Proxy mode's target stage (``frozen``; the CLI's ``transfer``): a saved acodm/acodm-td3/vector-sac
    actor, acting greedily (vector-sac: softmax of its Gaussian's mean); its option is ``FrozenOptions``.

    Needs no reward, so the env skips its probes. Refuses a file made for other domains or another
    observation layout, and a corrupted file.
    """

    name = "frozen"
    Options = FrozenOptions
    needs_reward = False
    sources = {
        ACODMAgent.name: SoftmaxActor,
        ACODMTD3Agent.name: SoftmaxActor,
        ACODMReleasedAgent.name: SoftmaxActor,
        VectorSACAgent.name: LogisticNormalActor,
    }

    def __init__(self, spec: EnvSpec, path: str):
        super().__init__(spec)
        blob = read_agent_file(path)
        if blob["agent"] not in self.sources:
            raise AgentError(
                f"{path} holds a '{blob['agent']}' agent; a frozen actor must be saved by {' or '.join(self.sources)}."
            )
        spec.check(blob, str(path))
        obs_space = spec.observation_space
        try:
            state = blob["state"]
            policy = state["sb3"]["params"]["policy"]
            anchored = {}  # an anchored actor's π₀ and δ travel as buffers of its state
            if "actor.log_anchor" in policy:
                anchored = {
                    "anchor": policy["actor.log_anchor"].exp().numpy(),
                    "min_weight": float(policy["actor.min_weight"]),
                }
            self.actor = self.sources[blob["agent"]](
                obs_space,
                spec.action_space,
                list(state["net_arch"]),
                FlattenExtractor(obs_space),
                obs_space.shape[0],
                **anchored,
            )
            self.actor.load_state_dict(
                {k.removeprefix("actor."): v for k, v in policy.items() if k.startswith("actor.")}
            )
        except (KeyError, TypeError, RuntimeError) as exc:
            raise AgentError(f"{path} does not hold a loadable actor: {type(exc).__name__}: {str(exc)[:300]}") from None
        self.actor.set_training_mode(False)

    @classmethod
    def from_config(cls, spec: EnvSpec, cfg: AgentConfig) -> "FrozenActorAgent":
        path = cls.make_options(cfg.options).path
        if path is None:
            raise ConfigError(
                "agent 'frozen' needs agent.options.path: a file saved by an acodm, acodm-td3 or vector-sac run."
            )
        return cls(spec, path)

    def act(self, obs):
        return self._to_weights(self.actor.predict(obs, deterministic=True)[0])
