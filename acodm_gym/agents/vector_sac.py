"""Vector-reward SAC on the simplex, built the way SB3 builds SAC (``SAC`` → ``SACPolicy`` → ``Actor``).

Policy: additive logistic-normal. k − 1 free logits z ~ N(μ(s), diag σ(s)²) and the k-th fixed at 0,
α = softmax(z, 0), i.e. α_i = e^{z_i} / (1 + Σ_{j<k} e^{z_j}) and z_i = ln(α_i / α_k). (A softmax of k
free logits is not injective on R^k, so it has no density to correct; pinning one logit makes
z ↦ α a bijection from R^{k−1} onto the open simplex.) Its Jacobian ∂z/∂(α_1..α_{k−1}) is
diag(1/α_i) + (1/α_k)·11ᵀ, of determinant 1 / Π_{i=1..k} α_i, so the density of α on the simplex,
with respect to Lebesgue measure on its first k − 1 coordinates, is

    p(α) = N(z(α); μ, σ) / Π_{i=1..k} α_i,   ln p(α) = ln N(z; μ, σ) − Σ_{i=1..k} ln α_i,

which integrates to 1 over {α_1..α_{k−1} ≥ 0, Σ ≤ 1} (checked by quadrature in the tests). SB3 maps
the actor's [−1, 1] output onto the Box [0, 1]^k, so the actor emits 2α − 1, as ``SoftmaxActor`` does;
the log-density is the one on the simplex above (the constant −(k − 1)·ln 2 of that affine map is
left out: it only shifts the entropy the temperature aims at). The greedy action (``predict(...,
deterministic=True)``) is softmax(μ, 0), the image of the Gaussian's mean.

Critic and scalarisation are VectorTD3's (``VectorObjective``): one output per domain, per-component
clipped double-Q, the actor ascending the scalarised Q divided by its spread, minus λ·KL(prior ‖ α).
The actor also pays SAC's entropy term: it descends

    −scalarised Q / spread(Q) + λ·KL(prior ‖ α) + c·ln p(α),   α ~ π(s) (reparameterised),

and c is tuned as SB3's SAC tunes it (ln c descends −ln c·(ln p + target entropy)). The critic's
target is y = r + γ(1 − d)·min_j Q̄_j(s', α') per component with α' ~ π(s'), without SAC's entropy
bonus: the bonus is a scalar with no per-domain share, and the actor measures Q in units of its
spread, so c weighs entropy against that normalised Q. Warm-up fits the actor by maximum likelihood
to the behaviour weights (−ln p(α_behaviour); its gradient is the Gaussian one in logit space, since
the Jacobian term has no parameters), so the policy starts with the behaviour's mean and spread, and
the critic to (1 + γ)·r, as VectorTD3 does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.distributions import DiagGaussianDistribution, sum_independent_dims
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac.policies import Actor, SACPolicy
from torch import nn
from torch.nn import functional as F

from ..errors import AgentError
from .vector_td3 import VectorCritic, VectorObjective, VectorReplayBuffer, mlp, weights_of

MIN_WEIGHT = 1e-4  # behaviour weights are clamped here before their logits are taken (z ≥ ln 1e-4 ≈ −9)


def pad_logits(z: th.Tensor) -> th.Tensor:
    """(…, k − 1) free logits → (…, k) with the last fixed at 0."""
    return F.pad(z, (0, 1))


def free_logits(weights: th.Tensor) -> th.Tensor:
    """The inverse of softmax(pad_logits(z)): z_i = ln(α_i / α_k), weights clamped at ``MIN_WEIGHT``."""
    log_w = weights.clamp_min(MIN_WEIGHT).log()
    return log_w[..., :-1] - log_w[..., -1:]


def entropy_target(k: int, weight_std: float = 0.02) -> float:
    """The entropy on the simplex of a Gaussian with std ``weight_std`` on each of k − 1 free weights:
    (k − 1)·½·ln(2πe·std²). The default, 0.02, is AC-ODM's exploration noise."""
    return (k - 1) * 0.5 * math.log(2 * math.pi * math.e * weight_std**2)


class LogisticNormalDistribution(DiagGaussianDistribution):
    """α = softmax(z, 0), z ~ N(μ, σ) in R^{k−1}; actions 2α − 1 (module docstring)."""

    def __init__(self, k: int):
        super().__init__(k - 1)
        self.k = k
        self.logits: th.Tensor | None = None  # the last sample's z, for its log-density without inverting α

    def log_prob_logits(self, z: th.Tensor) -> th.Tensor:
        """ln p(α(z)) = ln N(z; μ, σ) − Σ_i ln α_i on the simplex."""
        return sum_independent_dims(self.distribution.log_prob(z)) - F.log_softmax(pad_logits(z), dim=-1).sum(dim=-1)

    def log_prob(self, actions: th.Tensor, logits: th.Tensor | None = None) -> th.Tensor:
        return self.log_prob_logits(free_logits(weights_of(actions)) if logits is None else logits)

    def entropy(self) -> None:  # no closed form, as for SB3's squashed Gaussian
        return None

    def sample(self) -> th.Tensor:
        self.logits = self.distribution.rsample()
        return 2 * F.softmax(pad_logits(self.logits), dim=-1) - 1

    def mode(self) -> th.Tensor:
        self.logits = self.distribution.mean
        return 2 * F.softmax(pad_logits(self.logits), dim=-1) - 1

    def log_prob_from_params(self, mean_actions: th.Tensor, log_std: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(mean_actions, log_std)
        return actions, self.log_prob(actions, self.logits)


class LogisticNormalActor(Actor):
    """SAC's actor with k − 1 Gaussian logits and the logistic-normal distribution (no gSDE).

    Its hidden layers are the paper's (Linear → LayerNorm → activation), as in VectorTD3's actor.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.use_sde:
            raise AgentError(
                "vector-sac does not support gSDE (use_sde): its policy is a logistic-normal on the simplex."
            )
        k = get_action_dim(self.action_space)
        hidden = mlp(self.features_dim, 1, self.net_arch, self.activation_fn)[:-1]  # the hidden layers only
        self.latent_pi = nn.Sequential(*hidden)
        last = self.net_arch[-1] if self.net_arch else self.features_dim
        self.action_dist = LogisticNormalDistribution(k)
        self.mu, self.log_std = nn.Linear(last, k - 1), nn.Linear(last, k - 1)

    def sample_logits(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Reparameterised padded logits (B, k) of α ~ π(s) and ln p(α), (B,)."""
        mean, log_std, _ = self.get_action_dist_params(obs)
        dist = self.action_dist.proba_distribution(mean, log_std)
        z = dist.distribution.rsample()
        return pad_logits(z), dist.log_prob_logits(z)

    def log_prob_of(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """ln p(α) of given actions (2α − 1) under π(s)."""
        mean, log_std, _ = self.get_action_dist_params(obs)
        return self.action_dist.proba_distribution(mean, log_std).log_prob(actions)


class VectorSACPolicy(SACPolicy):
    """SACPolicy whose ``make_actor`` builds the logistic-normal actor and ``make_critic`` the vector critic."""

    def __init__(self, *args, reward_dim: int | None = None, **kwargs):
        self.reward_dim = reward_dim  # before super().__init__: its _build() calls make_critic
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor=None) -> LogisticNormalActor:
        return LogisticNormalActor(**self._update_features_extractor(self.actor_kwargs, features_extractor)).to(
            self.device
        )

    def make_critic(self, features_extractor=None) -> VectorCritic:
        kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return VectorCritic(reward_dim=self.reward_dim or get_action_dim(self.action_space), **kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "reward_dim": self.reward_dim}


class VectorSAC(VectorObjective, SAC):
    """SAC with a vector reward on the simplex (module docstring). Overrides ``train`` and adds
    ``train_warmup``; ``scalarization``, ``prior``, ``prior_coef`` and ``actor_gradient`` are VectorTD3's. A non-finite loss
    raises ``NonFiniteLossError`` before any optimiser step."""

    policy_aliases = {"MlpPolicy": VectorSACPolicy}
    policy: VectorSACPolicy
    actor: LogisticNormalActor

    def __init__(
        self,
        policy: str | type[VectorSACPolicy] = "MlpPolicy",
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
        """y = r + (1 − done)·γ·min_j Q̄_j(s', α') per component, α' ~ π(s'), shape (B, reward_dim)."""
        with th.no_grad():
            next_actions = 2 * F.softmax(self.actor.sample_logits(data.next_observations)[0], dim=-1) - 1
            next_q = th.stack(self.critic_target(data.next_observations, next_actions)).min(dim=0).values
            discounts = data.discounts if data.discounts is not None else self.gamma
            return data.rewards + (1 - data.dones) * discounts * next_q

    def entropy_coef(self, log_prob: th.Tensor) -> th.Tensor:
        """The temperature c for this update; with ``ent_coef="auto"`` first one step of SB3's SAC on ln c."""
        if self.ent_coef_optimizer is None:
            return self.ent_coef_tensor
        coef = th.exp(self.log_ent_coef.detach())
        loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
        self._optimize(self.ent_coef_optimizer, loss, "entropy coefficient")
        return coef

    def actor_objective(self, obs: th.Tensor, logits: th.Tensor, log_prob: th.Tensor, coef: th.Tensor) -> th.Tensor:
        """−scalarised Q / spread(Q) + λ·KL(prior ‖ α) + c·ln p(α), averaged over the batch."""
        return (self.scalarized_objective(obs, logits) + coef * log_prob).mean()

    def actor_step(self, obs: th.Tensor, coef: th.Tensor, sample: tuple[th.Tensor, th.Tensor] | None = None) -> float:
        """One actor step on ``actor_objective`` at ``sample`` (padded logits, ln p) of π(obs), or a fresh one."""
        logits, log_prob = self.actor.sample_logits(obs) if sample is None else sample
        return self._optimize(self.actor.optimizer, self.actor_objective(obs, logits, log_prob, coef), "actor")

    def clone_step(self, obs: th.Tensor, actions: th.Tensor) -> float:
        """Warm-up: maximum likelihood of the behaviour weights, −ln p(α_behaviour)."""
        return self._optimize(self.actor.optimizer, -self.actor.log_prob_of(obs, actions).mean(), "actor warm-up")

    # -- SB3 entry points --------------------------------------------------------------------------
    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        self._run_updates(gradient_steps, batch_size, warmup=False)

    def train_warmup(self, gradient_steps: int, batch_size: int = 64) -> None:
        self._run_updates(gradient_steps, batch_size, warmup=True)

    def _run_updates(self, gradient_steps: int, batch_size: int, warmup: bool) -> None:
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        self._update_learning_rate(
            optimizers + ([self.ent_coef_optimizer] if self.ent_coef_optimizer is not None else [])
        )
        actor_losses, critic_losses, coefs = [], [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            obs = data.observations
            if warmup:
                critic_losses.append(self.critic_step(obs, data.actions, (1 + self.gamma) * data.rewards))
                actor_losses.append(self.clone_step(obs, data.actions))
            else:
                logits, log_prob = self.actor.sample_logits(obs)
                coef = self.entropy_coef(log_prob)
                coefs.append(coef.item())
                critic_losses.append(self.critic_step(obs, data.actions, self.td_target(data)))
                actor_losses.append(self.actor_step(obs, coef, (logits, log_prob)))
            if self._n_updates % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        self.logger.record("train/td_error", self.td_error)
        self.logger.record("train/clone_loss" if warmup else "train/actor_loss", np.mean(actor_losses))
        if coefs:
            self.logger.record("train/ent_coef", np.mean(coefs))
