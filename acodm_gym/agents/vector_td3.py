"""Vector-reward TD3 and DDPG on stable-baselines3, built the way SB3 builds itself.

The reward is a vector (one alignment value per domain), so the critic has one output per
domain and is trained per component on y = r + γ·Q̄(s', μ̄(s')). The actor ascends a scalarisation
of that vector:

- ``alpha_weighted`` (default): μ(s)·Q(s, μ(s)) = Σ_i α_i Q_i, the same scalarisation as the env's
  scalar reward (Σ α_i W_i, the first-order loss decrease of the α-weighted update). The gradient
  flows through both the weights and the critic's action input.
- ``sum``: Σ_i Q_i (``mean`` is the same up to scale, and any other scalarisation in ``simplex.SCALARIZATIONS`` works).

Both are linear in the weights wherever the critic is flat in its action input, so their maximum
over the simplex is a vertex: left alone, the actor puts all weight on one domain, its softmax
saturates and no gradient brings it back (measured: 0.95+ on one domain within five updates after
warm-up, and 3× the natural mixture's perplexity). The actor therefore ascends

    scalarised Q / spread(Q)  −  λ · KL(prior ‖ α)

- spread(Q): the across-domain standard deviation of Q, averaged over the batch and detached (as
  TD3+BC divides by mean |Q|), so λ means the same whatever the scale of the gradient alignments;
- KL(prior ‖ α) = Σ_i prior_i log(prior_i / α_i): a log barrier. Where Q is flat in the action, the
  optimum is α_i = λ·prior_i / (μ − Q̃_i), so every weight stays above prior_i·λ / (λ + max Q̃ − min Q̃)
  (Q̃ = Q / spread(Q), whose range is at most √(2(k − 1))), and its gradient on the logits, α − prior, does not
  vanish when the softmax saturates. ``prior`` is the natural mixture (the warm-up's weights).
  ``prior_coef`` λ = 0 recovers the unregularised actor.

``actor_gradient: values`` treats the critic's per-domain values as constants in Σ α_i Q_i, so the
actor's step on the logits is α_i (Q_i − Σ_j α_j Q_j) / spread: weight moves towards the domains the
critic values above the current mixture's average, as an exponentiated-gradient step would, instead
of along the critic's derivative in its action input, which the replay data (weights within a few
hundredths of each other) barely constrains. Needs ``alpha_weighted``.

The anchored actor (``anchor`` given) emits α = (1 − kδ)·softmax(log π₀ + a(s)) + δ: its network learns
the deviation a from the anchor π₀, with its output layer zeroed so it starts at π₀ exactly, and δ
(``min_weight``) is a minimum probability as ADO's. It steps as mirror descent (exponentiated gradient)
does: its surrogate −Σ_i (a_i − ā)·g_i + ½λ‖a − ā‖², g_i = (Q_i − Σ_j α_j Q_j) / spread(Q) with the values
held constant, has the gradient −(g_i − ḡ) + λ(a_i − ā) on a_i, which does not scale with α_i and sums to 0
over i (a common shift of a leaves α alone). On the softmax
actor the same value gap moves logit i by α_i·g_i, so a rare domain hardly moves (docs/findings.md, "Why AC-ODM
does not learn a better mixture here"). λ (``prior_coef``) pulls log α towards log π₀; where the values
are flat in the action the deviation settles at a_i − ā = (g_i − ḡ) / λ. The warm-up does not clone the
behaviour into it: it stays at π₀ until its own steps.

SB3 rejects a non-scalar reward from ``step()``, so the vector travels in ``info["vector_reward"]``
and ``VectorReplayBuffer.add`` reads it from there; ``VectorTD3`` therefore also runs under SB3's own
``learn()``. The actor is a softmax MLP; SB3 maps its TD3 actor's [−1, 1] output onto the Box
[0, 1]^k, so it emits 2p − 1 and ``predict`` returns p. ``VectorDDPG`` is ``VectorTD3`` with DDPG's
arguments, as SB3's DDPG is of TD3: the training code exists once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.type_aliases import ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.td3.policies import Actor, TD3Policy
from torch import nn
from torch.nn import functional as F

from ..envs.state import StepInfo
from ..errors import AgentError, NonFiniteLossError
from ..simplex import SCALARIZATIONS, importance_weighted_ema

# What the actor's gradient goes through: "critic" (DDPG's ∇_a Q: the weights and the critic's action input)
# or "values" (the per-domain values Q_i(s, a) as constants: only the weights' own factor in Σ α_i Q_i)
ACTOR_GRADIENTS = ("critic", "values")


def mlp(in_dim: int, out_dim: int, hidden: list[int], activation: type[nn.Module] = nn.ReLU) -> list[nn.Module]:
    """Linear → LayerNorm → activation per hidden layer, then a linear output (the paper's MLPs)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.LayerNorm(width), activation()]
        in_dim = width
    return layers + [nn.Linear(in_dim, out_dim)]


def cosine_schedule(start: float, end: float) -> Schedule:
    """Cosine decay from ``start`` to ``end`` as a function of SB3's progress_remaining (1 → 0)."""

    def rate(progress_remaining: float) -> float:
        return end + 0.5 * (start - end) * (1 + math.cos(math.pi * (1 - progress_remaining)))

    return rate


def weights_of(scaled: th.Tensor) -> th.Tensor:
    """Domain weights from actions in SB3's normalised space [−1, 1] (the inverse of 2p − 1)."""
    return (scaled + 1) / 2


class SoftmaxActor(Actor):
    """TD3 actor whose head is a softmax over domains, emitted as 2p − 1 for SB3's action scaling.

    :param anchor: π₀ of the anchored actor (module docstring); None: the paper's softmax of the outputs
    :param min_weight: δ, the anchored actor's minimum probability (k·δ < 1)
    """

    def __init__(self, *args, anchor: np.ndarray | None = None, min_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        # Replaces the tanh MLP that Actor.__init__ builds: LayerNorm + ReLU layers, softmax output.
        hidden = mlp(self.features_dim, get_action_dim(self.action_space), self.net_arch, self.activation_fn)
        self.mu = nn.Sequential(*hidden, nn.Softmax(dim=-1))
        self.anchored = anchor is not None
        if self.anchored:
            k = get_action_dim(self.action_space)
            if not 0.0 <= min_weight * k < 1.0:
                raise AgentError(f"min_weight={min_weight} must be >= 0 with k·min_weight < 1 ({k} domains).")
            log_anchor = np.log(np.asarray(anchor, dtype=np.float64) / np.sum(anchor))
            # buffers, so a saved actor carries them (``frozen`` rebuilds it from its state alone)
            self.register_buffer("log_anchor", th.as_tensor(log_anchor, dtype=th.float32))
            self.register_buffer("min_weight", th.tensor(float(min_weight)))
            nn.init.zeros_(hidden[-1].weight)  # a(s) = 0: the actor starts at π₀ whatever the state
            nn.init.zeros_(hidden[-1].bias)

    def deviation(self, obs: th.Tensor) -> th.Tensor:
        """The network's outputs: the logits (paper) or the anchored actor's deviation a(s)."""
        return self.mu[:-1](self.extract_features(obs, self.features_extractor))

    def logits(self, obs: th.Tensor) -> th.Tensor:
        """The pre-softmax outputs, for log-weights that stay finite when the softmax saturates."""
        a = self.deviation(obs)
        return a + self.log_anchor if self.anchored else a

    def weights_of_deviation(self, a: th.Tensor) -> th.Tensor:
        """The anchored actor's weights (1 − kδ)·softmax(log π₀ + a) + δ."""
        p = F.softmax(a + self.log_anchor, dim=-1)
        return (1 - a.shape[-1] * self.min_weight) * p + self.min_weight

    def forward(self, obs: th.Tensor) -> th.Tensor:
        if self.anchored:
            return 2 * self.weights_of_deviation(self.deviation(obs)) - 1
        return 2 * F.softmax(self.logits(obs), dim=-1) - 1


class VectorCritic(ContinuousCritic):
    """Q(s, a) with one output per reward component (domain) in each of its ``n_critics`` networks."""

    def __init__(
        self,
        *,
        reward_dim: int,
        net_arch: list[int],
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        **kwargs,
    ):
        super().__init__(net_arch=net_arch, features_dim=features_dim, activation_fn=activation_fn, **kwargs)
        self.reward_dim = reward_dim
        in_dim = features_dim + get_action_dim(self.action_space)
        self.q_networks = []
        for idx in range(self.n_critics):
            q_net = nn.Sequential(*mlp(in_dim, reward_dim, net_arch, activation_fn))
            self.add_module(f"qf{idx}", q_net)  # replaces the scalar network of the same name
            self.q_networks.append(q_net)


class VectorTD3Policy(TD3Policy):
    """TD3Policy whose ``make_actor`` builds the softmax actor and ``make_critic`` the vector critic."""

    def __init__(
        self, *args, reward_dim: int | None = None, anchor: np.ndarray | None = None, min_weight: float = 0.0, **kwargs
    ):
        self.reward_dim = reward_dim  # before super().__init__: its _build() calls make_critic
        self.anchor, self.min_weight = anchor, min_weight  # and make_actor
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor=None) -> SoftmaxActor:
        kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        if self.anchor is not None:
            kwargs.update(anchor=self.anchor, min_weight=self.min_weight)
        return SoftmaxActor(**kwargs).to(self.device)

    def make_critic(self, features_extractor=None) -> VectorCritic:
        kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return VectorCritic(reward_dim=self.reward_dim or get_action_dim(self.action_space), **kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        extra = {"reward_dim": self.reward_dim, "anchor": self.anchor, "min_weight": self.min_weight}
        return {**super()._get_constructor_parameters(), **extra}


class VectorReplayBuffer(ReplayBuffer):
    """Replay buffer with rewards of shape (N, n_envs, reward_dim), read from ``info["vector_reward"]``.

    ``reward_ema`` (ξ, None: off) stores the paper's importance-corrected average
    r̂_i ← ξ r̂_i + (1 − ξ) r_i / p_i instead of the raw vector (p = ``info["sampling_probs"]``);
    the average restarts after a done.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        *args,
        reward_dim: int | None = None,
        reward_ema: float | None = None,
        **kwargs,
    ):
        super().__init__(buffer_size, observation_space, action_space, *args, **kwargs)
        if reward_ema is not None and not 0.0 <= reward_ema < 1.0:
            raise AgentError(f"reward_ema={reward_ema} must be in [0, 1) (or None for the raw reward).")
        self.reward_dim = reward_dim or self.action_dim
        self.reward_ema = reward_ema
        self.rewards = np.zeros((self.buffer_size, self.n_envs, self.reward_dim), dtype=np.float32)
        self.ema = np.zeros((self.n_envs, self.reward_dim))

    def add(self, obs, next_obs, action, reward, done, infos: list[StepInfo]) -> None:
        self.store(obs, next_obs, action, self.reward_vector(infos, done), done, infos)

    def store(self, obs, next_obs, action, vector: np.ndarray, done, infos: list[StepInfo]) -> None:
        """Add a transition whose reward vector ``reward_vector`` already made."""
        super().add(obs, next_obs, action, vector, done, infos)

    def reward_vector(self, infos: list[StepInfo], done) -> np.ndarray:
        """The (n_envs, reward_dim) vector a transition stores, read from ``infos``; advances the average.

        Called for every transition, also one kept out of the buffer, so the average sees every step.
        """
        try:
            vector = np.stack([np.asarray(info["vector_reward"], dtype=np.float64) for info in infos])
        except KeyError:
            raise KeyError(
                "VectorReplayBuffer reads the reward vector from info['vector_reward'], which the env did not give."
            ) from None
        if vector.shape != (self.n_envs, self.reward_dim) or not np.all(np.isfinite(vector)):
            raise ValueError(
                f"info['vector_reward'] must be {self.reward_dim} finite values per env; got {vector.tolist()}."
            )
        if self.reward_ema is not None:
            probs = np.stack([info["sampling_probs"] for info in infos])
            self.ema = importance_weighted_ema(self.ema, vector, probs, self.reward_ema)
            vector = self.ema.copy()
            self.ema[np.asarray(done, dtype=bool).reshape(-1)] = 0.0
        return vector

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> ReplayBufferSamples:
        # As ReplayBuffer._get_samples, but the rewards keep their vector (B, reward_dim).
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        if self.optimize_memory_usage:
            next_obs = self.observations[(batch_inds + 1) % self.buffer_size, env_indices, :]
        else:
            next_obs = self.next_observations[batch_inds, env_indices, :]
        data = (
            self._normalize_obs(self.observations[batch_inds, env_indices, :], env),
            self.actions[batch_inds, env_indices, :],
            self._normalize_obs(next_obs, env),
            (self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])).reshape(-1, 1),
            self._normalize_reward(self.rewards[batch_inds, env_indices], env),
        )
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))


class VectorObjective:
    """What every vector-reward actor–critic here shares (mixed into SB3's TD3 and SAC): the checks of
    the scalarisation and prior options, the scalarisation, the per-component critic step with its TD
    error, the actor's spread-normalised objective with the prior pull, and the finite-loss guard."""

    _n_updates: int

    def _init_objective(
        self, scalarization: str, prior: np.ndarray | None, prior_coef: float, actor_gradient: str = "critic"
    ) -> None:
        if scalarization not in SCALARIZATIONS:
            raise AgentError(
                f"scalarization='{scalarization}' is not supported; choose one of {', '.join(SCALARIZATIONS)}."
            )
        if actor_gradient not in ACTOR_GRADIENTS:
            raise AgentError(
                f"actor_gradient='{actor_gradient}' is not supported; choose one of {', '.join(ACTOR_GRADIENTS)}."
            )
        if actor_gradient == "values" and scalarization != "alpha_weighted":
            raise AgentError(
                "actor_gradient='values' needs scalarization='alpha_weighted': Σ_i Q_i with the values held "
                "constant does not depend on the weights, so the actor would get no gradient."
            )
        self.actor_gradient = actor_gradient
        if not (prior_coef >= 0 and math.isfinite(prior_coef)):
            raise AgentError(
                f"prior_coef={prior_coef} must be a finite number >= 0 (0: no pull towards the prior mixture)."
            )
        if prior_coef > 0 and prior is None:
            raise AgentError(
                "prior_coef > 0 needs prior: the mixture the actor is pulled towards (e.g. the natural weights)."
            )
        self.scalarization = scalarization
        self.prior = None if prior is None else th.as_tensor(np.asarray(prior, dtype=np.float32) / np.sum(prior))
        self.prior_coef = float(prior_coef)

    def scalarize(self, q: th.Tensor, scaled_actions: th.Tensor) -> th.Tensor:
        """The scalar the actor ascends, per sample (see the module docstring)."""
        return SCALARIZATIONS.get(self.scalarization)(q, weights_of(scaled_actions))

    def critic_step(self, obs: th.Tensor, actions: th.Tensor, target: th.Tensor) -> float:
        """One step on Σ_critics MSE(Q, y); records the batch's mean |δ| of the first critic (``td_error``)."""
        qs = self.critic(obs, actions)
        self.td_error = (qs[0] - target).abs().mean().item()
        return self._optimize(self.critic.optimizer, sum(F.mse_loss(q, target) for q in qs), "critic")

    def scalarized_objective(self, obs: th.Tensor, logits: th.Tensor) -> th.Tensor:
        """−scalarised Q / spread(Q) + λ·KL(prior ‖ softmax(logits)) per sample, at the actions the logits give."""
        actions = 2 * F.softmax(logits, dim=-1) - 1
        q = self.critic.q1_forward(obs, actions)
        if self.actor_gradient == "values":
            q = q.detach()
        spread = (q.std(dim=1) if q.shape[1] > 1 else q.abs()).mean().detach().clamp_min(1e-8)
        loss = -self.scalarize(q, actions) / spread
        if self.prior_coef > 0:
            prior = self.prior.to(logits.device)
            loss = loss + self.prior_coef * (th.xlogy(prior, prior) - prior * F.log_softmax(logits, dim=-1)).sum(dim=1)
        return loss

    def _optimize(self, optimizer: th.optim.Optimizer, loss: th.Tensor, what: str) -> float:
        if not th.isfinite(loss):
            raise NonFiniteLossError(
                f"The {what} loss is {loss.item()} at update {self._n_updates}; learning stops before it writes "
                "non-finite weights. Lower the actor–critic learning rate or check the reward vectors."
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()


class VectorTD3(VectorObjective, TD3):
    """TD3 with a vector reward: per-component TD targets, actor on a scalarisation of Q.

    Overrides only ``train`` (split into a target, a critic step and an actor step, each testable)
    and adds ``train_warmup``: the paper's warm-up that clones the behaviour weights into the actor
    (MSE on the weights) and regresses the critic to (1 + γ)·r. A non-finite loss raises
    ``NonFiniteLossError`` before any optimiser step, so NaN never reaches the weights. With
    several critics, the target takes the per-component minimum (clipped double-Q per domain), and
    TD3's target smoothing noise is projected back onto the simplex.
    """

    policy_aliases = {"MlpPolicy": VectorTD3Policy}
    policy: VectorTD3Policy

    def __init__(
        self,
        policy: str | type[VectorTD3Policy] = "MlpPolicy",
        env=None,
        *,
        scalarization: str = "alpha_weighted",
        prior: np.ndarray | None = None,
        prior_coef: float = 0.0,
        actor_gradient: str = "critic",
        replay_buffer_class: type[ReplayBuffer] = VectorReplayBuffer,
        _init_setup_model: bool = True,
        **kwargs,
    ):
        self._init_objective(scalarization, prior, prior_coef, actor_gradient)
        super().__init__(policy, env, replay_buffer_class=replay_buffer_class, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    # -- the pieces of one update ----------------------------------------------------------------
    def td_target(self, data: ReplayBufferSamples) -> th.Tensor:
        """y = r + (1 − done)·γ·Q̄(s', μ̄(s')) per component, shape (B, reward_dim)."""
        with th.no_grad():
            next_actions = self.actor_target(data.next_observations)
            if self.target_policy_noise > 0:
                noise = (
                    th.randn_like(next_actions)
                    .mul_(self.target_policy_noise)
                    .clamp_(-self.target_noise_clip, self.target_noise_clip)
                )
                w = weights_of(next_actions + noise).clamp_min(0)
                next_actions = 2 * w / w.sum(dim=1, keepdim=True).clamp_min(1e-12) - 1
            next_q = th.stack(self.critic_target(data.next_observations, next_actions)).min(dim=0).values
            discounts = data.discounts if data.discounts is not None else self.gamma
            return data.rewards + (1 - data.dones) * discounts * next_q

    def actor_objective(self, obs: th.Tensor) -> th.Tensor:
        """The loss the actor descends: −scalarised Q / spread(Q) + λ·KL(prior ‖ α), or the anchored actor's
        mirror-descent surrogate (module docstring)."""
        if self.actor.anchored:
            return self.anchored_objective(obs).mean()
        return self.scalarized_objective(obs, self.actor.logits(obs)).mean()

    def anchored_objective(self, obs: th.Tensor) -> th.Tensor:
        """−Σ_i (a_i − ā)·g_i + ½λ‖a − ā‖² per sample, g the value gaps at the actor's weights (held constant).

        Centred, as α is: a shift of every a_i leaves α unchanged, and so must leave the objective. With the
        raw a_i·g_i (Σ_i g_i ≠ 0 away from uniform Q) every output's gradient took the same sign once the actor
        had moved, and Adam, which steps each coordinate by about its learning rate whatever its gradient's
        size, then shifted them all alike: the deviation froze where it was (measured: 86 % on one domain, its
        gradient pointing back, for four episodes)."""
        a = self.actor.deviation(obs)
        with th.no_grad():
            weights = self.actor.weights_of_deviation(a)
            q = self.critic.q1_forward(obs, 2 * weights - 1)
            spread = (q.std(dim=1) if q.shape[1] > 1 else q.abs()).mean().clamp_min(1e-8)
            gap = (q - (weights * q).sum(dim=1, keepdim=True)) / spread
        centred = a - a.mean(dim=1, keepdim=True)
        return -(centred * gap).sum(dim=1) + 0.5 * self.prior_coef * (centred**2).sum(dim=1)

    def actor_step(self, obs: th.Tensor) -> float:
        return self._optimize(self.actor.optimizer, self.actor_objective(obs), "actor")

    def clone_step(self, obs: th.Tensor, actions: th.Tensor) -> float:
        """Warm-up: fit the actor's weights to the behaviour weights as soft labels."""
        loss = F.mse_loss(weights_of(self.actor(obs)), weights_of(actions))
        return self._optimize(self.actor.optimizer, loss, "actor warm-up")

    def soft_update(self) -> None:
        polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
        polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
        polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
        polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)

    # -- SB3 entry points --------------------------------------------------------------------------
    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self._run_updates(gradient_steps, batch_size, warmup=False)

    def train_warmup(self, gradient_steps: int, batch_size: int = 100) -> None:
        self._run_updates(gradient_steps, batch_size, warmup=True)

    def _run_updates(self, gradient_steps: int, batch_size: int, warmup: bool) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])
        actor_losses, critic_losses = [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            target = (1 + self.gamma) * data.rewards if warmup else self.td_target(data)
            critic_losses.append(self.critic_step(data.observations, data.actions, target))
            if warmup or self._n_updates % self.policy_delay == 0:
                obs = data.observations
                if not (warmup and self.actor.anchored):  # the anchored actor stays at π₀ through warm-up
                    actor_losses.append(self.clone_step(obs, data.actions) if warmup else self.actor_step(obs))
                self.soft_update()
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        self.logger.record("train/td_error", self.td_error)
        if actor_losses:
            self.logger.record("train/clone_loss" if warmup else "train/actor_loss", np.mean(actor_losses))


class VectorDDPG(VectorTD3):
    """DDPG as a special case of VectorTD3: one critic, no policy delay, no target smoothing."""

    def __init__(
        self, policy: str | type[VectorTD3Policy] = "MlpPolicy", env=None, _init_setup_model: bool = True, **kwargs
    ):
        super().__init__(
            policy,
            env,
            policy_delay=1,
            target_policy_noise=0.0,
            target_noise_clip=0.0,
            _init_setup_model=False,
            **kwargs,
        )
        self.policy_kwargs.setdefault("n_critics", 1)
        if _init_setup_model:
            self._setup_model()


class ReleasedDDPG(VectorDDPG):
    """VectorDDPG as the authors' released code updates it (DANG-ai/AC-ODM, ``megatron/data/agent.py``):
    after the actor loss's backward pass it steps the critic's optimiser, never the actor's, in warm-up
    (where the critic has no gradient from the cloning loss, so nothing moves) and after it (where the
    critic takes a step along the actor loss's gradient). The actor keeps its random initialisation."""

    def actor_step(self, obs: th.Tensor) -> float:
        return self._optimize(self.critic.optimizer, self.actor_objective(obs), "actor")

    def clone_step(self, obs: th.Tensor, actions: th.Tensor) -> float:
        loss = F.mse_loss(weights_of(self.actor(obs)), weights_of(actions))
        return self._optimize(self.critic.optimizer, loss, "actor warm-up")
