"""AC-ODM's six-part training state, kept from per-step measurements and flattened for agents.

Shared by PretrainEnv and by ``DomainMixer`` (an agent steering the user's own training loop), so
an agent reads the same observation wherever it runs. Every part is free of model size, so a
policy learned on a small proxy reads a larger target the same way:

====================  ====  =========================================================
part                  size  value
====================  ====  =========================================================
samples seen          k     n_i / Σ_j n_j (share of all sequences drawn so far)
step                  1     t / T
loss                  k     ℓ_i / ln V on this step's batch, before its update
loss change           k     (ℓ_i(t) − ℓ_i(t−1)) / ℓ_i(t−1), clipped to [−1, 1]
weight norm           L     ‖ω_l(t)‖ / ‖ω_l(0)‖ of L FFN output layers at evenly spaced depths
update norm           L     (log10(‖ω_l(t) − ω_l(t−1)‖ / ‖ω_l(t)‖) + 4) / 2, clipped to [−2, 2]
====================  ====  =========================================================

A domain absent from a batch keeps its last loss (change 0), and non-finite norms keep their last
finite values: nothing is ever NaN. Each part is a ``StatePart`` registered in ``registry.STATE_PARTS``
(its order is the observation's); a part of your own is registered there too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, TypedDict

import numpy as np
from gymnasium import spaces
from torch import nn

from ..config import ModelConfig
from ..data.sampler import Batch
from ..lm.models import evenly_spaced_layers, probe_layers
from ..lm.probes import WeightNormProbe
from ..registry import STATE_PARTS


@dataclass(frozen=True)
class StatePart:
    """One part of the observation.

    :param size: its length, from k (domains) and L (norm probes)
    :param value: its values, from the ``TrainingState``, the sequences drawn per domain so far and the step
    """

    size: Callable[[int, int], int]
    value: Callable[["TrainingState", np.ndarray, int], Any]


def _shares(state: "TrainingState", samples_seen: np.ndarray, step: int) -> np.ndarray:
    total = samples_seen.sum()
    return samples_seen / total if total else np.full(len(state.losses), 1.0 / len(state.losses))


def _update_feature(state: "TrainingState", samples_seen: np.ndarray, step: int) -> np.ndarray:
    rel_update = state.update_norms / np.maximum(state.weight_norms, 1e-12)
    return np.clip((np.log10(np.maximum(rel_update, 1e-12)) + 4.0) / 2.0, -2.0, 2.0)


# The six parts of the table above (registry.STATE_PARTS names them, in this order).
SAMPLES_SEEN = StatePart(lambda k, L: k, _shares)
STEP = StatePart(lambda k, L: 1, lambda state, seen, step: [step / state.total_steps])
LOSS = StatePart(lambda k, L: k, lambda state, seen, step: state.losses / state.log_vocab)
LOSS_CHANGE = StatePart(lambda k, L: k, lambda state, seen, step: state.loss_change)
WEIGHT_NORM = StatePart(lambda k, L: L, lambda state, seen, step: state.weight_norms / state.initial_norms)
UPDATE_NORM = StatePart(lambda k, L: L, _update_feature)


def part_sizes(k: int, L: int) -> dict[str, int]:
    """The size of each part, in observation order."""
    return {part: STATE_PARTS.get(part).size(k, L) for part in STATE_PARTS}


def observation_layout(k: int, L: int) -> dict[str, slice]:
    """Where each part of the state lives in the flat observation (size 3k + 1 + 2L)."""
    layout, start = {}, 0
    for part, size in part_sizes(k, L).items():
        layout[part], start = slice(start, start + size), start + size
    return layout


def state_spaces(k: int, L: int) -> tuple[spaces.Box, spaces.Box, spaces.Box]:
    """The observation space (the flat state), the action space (a weight per domain in [0, 1]) and
    the reward space (W, a value per domain)."""
    size = sum(part_sizes(k, L).values())
    return (
        spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32),
        spaces.Box(0.0, 1.0, shape=(k,), dtype=np.float32),
        spaces.Box(-np.inf, np.inf, shape=(k,), dtype=np.float32),
    )


def norm_probe(model: nn.Module, model_cfg: ModelConfig, L: int) -> WeightNormProbe:
    """The weight-norm probe of the state: L FFN output layers at evenly spaced depths."""
    modules = [m for _, m in probe_layers(model, model_cfg)]
    return WeightNormProbe([modules[i] for i in evenly_spaced_layers(len(modules), L)])


class TrainingState:
    def __init__(self, total_steps: int, vocab_size: int, initial_losses: np.ndarray, initial_norms: np.ndarray):
        self.total_steps = total_steps
        self.log_vocab = math.log(vocab_size)
        self.losses = np.asarray(initial_losses, dtype=np.float64).copy()
        self.loss_change = np.zeros(len(self.losses))
        self.initial_norms = np.asarray(initial_norms, dtype=np.float64).copy()
        self.weight_norms = self.initial_norms.copy()
        self.update_norms = np.zeros(len(self.initial_norms))

    def record(self, domain_losses: np.ndarray, weight_norms: np.ndarray, update_norms: np.ndarray) -> None:
        """One step's measurements (NaN loss: domain absent from the batch)."""
        losses = np.where(np.isnan(domain_losses), self.losses, domain_losses)
        self.loss_change = np.clip((losses - self.losses) / self.losses, -1.0, 1.0)
        self.losses = losses
        if np.all(np.isfinite(weight_norms)) and np.all(np.isfinite(update_norms)):
            self.weight_norms, self.update_norms = np.asarray(weight_norms), np.asarray(update_norms)

    def observation(self, samples_seen: np.ndarray, step: int) -> np.ndarray:
        parts = [np.ravel(STATE_PARTS.get(part).value(self, samples_seen, step)) for part in STATE_PARTS]
        return np.concatenate(parts).astype(np.float32)

    def state_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, np.asarray(value, dtype=np.float64) if isinstance(value, list) else value)


class _StepInfoExtra(TypedDict, total=False):
    """What only PretrainEnv's steps report (DomainMixer cannot know it), and what only some steps report."""

    tokens: int  # tokens trained on so far
    samples_seen: np.ndarray  # (k,) sequences drawn per domain so far
    epochs: np.ndarray  # (k,) passes over each domain's training text
    objective: float  # the loss the update descended
    grad_norm: float
    lr: float
    skipped: bool  # the update was skipped (non-finite loss or gradient)
    skipped_steps: int  # skipped updates so far
    val_loss: np.ndarray  # (k,) every env.eval_interval steps and at the last step
    val_ppl: np.ndarray
    val_metric: float
    final_val_loss: np.ndarray  # the last step of an episode: PretrainEnv.episode_result() (task.eval_tokens)
    final_val_metric: float
    final_val_metric_arith: float
    test_loss: np.ndarray
    test_ppl: np.ndarray
    test_metric: float
    test_metric_arith: float
    score: float | None
    vector_reward_raw: np.ndarray  # ImportanceWeightedRewardEMA: the vector before smoothing


class StepInfo(_StepInfoExtra):
    """The ``info`` of a step, read by agents, the reward wrapper, the replay buffer, the logger and the runner."""

    step: int  # steps taken, this one included
    domain_weights: np.ndarray  # (k,) α this step trained with
    sampling_probs: np.ndarray  # (k,) the probability each domain's rows were drawn with (α with the floor)
    domain_counts: np.ndarray  # (k,) rows of each domain in the batch
    domain_losses: np.ndarray  # (k,) the state's per-domain losses (the last seen for a domain absent from the batch)
    vector_reward: np.ndarray  # (k,) W (zeros where no reward is computed)


def step_info(step: int, alpha: np.ndarray, batch: Batch, state: TrainingState, vector_reward: np.ndarray) -> StepInfo:
    """The part of a step's ``info`` that PretrainEnv and DomainMixer both report (copies, safe to keep)."""
    return StepInfo(
        step=step,
        domain_weights=alpha.copy(),
        sampling_probs=batch.probs.copy(),
        domain_counts=batch.counts.copy(),
        domain_losses=state.losses.copy(),
        vector_reward=np.array(vector_reward, dtype=np.float64),
    )
