"""Domain mixing inside your own training loop: an agent picks the weights, you train.

``DomainMixer`` pairs the P_α sampler with an agent that needs no reward (a frozen actor from a
proxy run, ODM's EXP3, or a static mixture) and keeps the same six-part state the environment
observes, read off your model::

    mixer = DomainMixer(corpus, model, {"name": "frozen", "options": {"path": "runs/x/agent.pt"}},
                        total_steps=T, batch_size=16, seq_len=128)
    for step in range(T):
        batch = mixer.next_batch()                              # drawn from P_α
        seq_loss = sequence_losses(model(batch.input_ids).logits, batch.input_ids)
        (seq_loss * mixer.loss_weights(batch)).sum().backward() # Σ α_i ℓ_i, or use seq_loss.mean()
        optimizer.step(); optimizer.zero_grad()
        mixer.observe(seq_loss.detach())                        # losses before this update

``mixer.export(path)`` writes the weight schedule and mean mixture (``mixture.json``), which a
later run reuses as a static mixture. See examples/own_training_loop.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .agents import Agent, EnvSpec, make_agent
from .agents.static import write_mixture
from .config import AgentConfig, ModelConfig
from .data.sampler import Batch, DomainSampler
from .data.token_corpus import TokenCorpus
from .envs.state import TrainingState, norm_probe, observation_layout, state_spaces, step_info
from .errors import ConfigError
from .lm.step import domain_coefficients, domain_means
from .simplex import action_to_weights


class DomainMixer:
    def __init__(
        self,
        corpus: TokenCorpus,
        model: nn.Module,
        agent: Agent | AgentConfig | Mapping[str, Any] | str = "natural",
        *,
        total_steps: int,
        batch_size: int,
        seq_len: int,
        num_norm_probes: int = 4,
        exploration_share: float = 0.1,
        probe_module: str | None = None,
        seed: int = 0,
    ):
        self.corpus, self.k = corpus, len(corpus.domains)
        arch = getattr(getattr(model, "config", None), "model_type", "gpt_neox")
        if arch not in ("gpt_neox", "llama") and probe_module is None:
            raise ConfigError(
                f"Model type '{arch}' has no default probe layer: pass probe_module (its FFN output Linear)."
            )
        model_cfg = ModelConfig(arch=arch if arch in ("gpt_neox", "llama") else "gpt_neox", probe_module=probe_module)
        self.norms = norm_probe(model, model_cfg, num_norm_probes)
        observation_space, action_space, _ = state_spaces(self.k, num_norm_probes)
        self.spec = EnvSpec(
            observation_space,
            action_space,
            list(corpus.domains),
            corpus.natural_weights(),
            observation_layout(self.k, num_norm_probes),
            total_steps,
        )
        if isinstance(agent, Agent):
            self.agent = agent
        else:
            cfg = (
                AgentConfig(name=agent)
                if isinstance(agent, str)
                else agent
                if isinstance(agent, AgentConfig)
                else AgentConfig(**agent)
            )
            self.agent = make_agent(cfg, self.spec)
        if self.agent.needs_reward:
            raise ConfigError(
                f"Agent '{self.agent.name}' learns from the alignment reward, which your loop does not compute: "
                "train it in PretrainEnv (acodm-gym proxy) and steer your loop with the frozen actor (agent 'frozen')."
            )
        self.sampler = DomainSampler(
            corpus, seq_len, batch_size, exploration_share, exploration_floor=self.agent.exploration_floor, seed=seed
        )
        loss_at_init = np.full(self.k, np.log(corpus.vocab_size))  # an untrained model's loss; replaced at step 1
        self.state = TrainingState(total_steps, corpus.vocab_size, loss_at_init, self.norms.norms())
        self.step = 0
        self.schedule: list[np.ndarray] = []
        self._obs = self.state.observation(self.sampler.samples_seen, 0)
        self._pending: tuple[np.ndarray, Batch] | None = None

    @property
    def weights(self) -> np.ndarray:
        """The weights of the last batch drawn (the natural weights before the first)."""
        return self.schedule[-1].copy() if self.schedule else self.spec.natural_weights.copy()

    def next_batch(self) -> Batch:
        """Ask the agent for α on the current state and draw a batch from P_α (rows grouped by domain)."""
        alpha = action_to_weights(self.agent.act(self._obs), self.k)
        self.norms.before_update()
        batch = self.sampler.sample(alpha)
        self._pending = (alpha, batch)
        self.schedule.append(alpha)
        return batch

    def loss_weights(self, batch: Batch) -> torch.Tensor:
        """Per-row weights that turn sequence losses into the paper's objective Σ_i α_i ℓ_i."""
        coef = domain_coefficients(batch.counts, self._pending[0], "alpha")
        return torch.as_tensor(coef, dtype=torch.float32)[batch.domain_ids]

    def observe(self, sequence_losses: torch.Tensor) -> None:
        """Feed the batch's per-sequence losses (from its own forward) after the optimiser step."""
        if self._pending is None:
            raise RuntimeError("observe() follows next_batch(): draw a batch first.")
        alpha, batch = self._pending
        losses = torch.as_tensor(sequence_losses).detach().double().cpu().reshape(-1)
        if losses.shape[0] != len(batch.domain_ids):
            raise ValueError(f"Got {losses.shape[0]} sequence losses for a batch of {len(batch.domain_ids)} rows.")
        sums = torch.zeros(self.k, dtype=torch.float64).index_add_(0, batch.domain_ids, losses).numpy()
        self.state.record(domain_means(sums, batch.counts), self.norms.norms(), self.norms.update_norms())
        self.step += 1
        obs = self.state.observation(self.sampler.samples_seen, self.step)
        info = step_info(self.step, alpha, batch, self.state, np.zeros(self.k))  # no reward in your loop
        self.agent.observe(self._obs, alpha, 0.0, obs, info)
        self.agent.update()
        self._obs, self._pending = obs, None

    def export(self, path: str | Path) -> Path:
        """Write the weight schedule α(t) and its mean as ``mixture.json`` (reusable: agent 'static')."""
        return write_mixture(path, self.spec.domains, list(range(1, len(self.schedule) + 1)), np.array(self.schedule))
