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
finite values: nothing is ever NaN.
"""
from __future__ import annotations

import math

import numpy as np


def observation_layout(k: int, L: int) -> dict[str, slice]:
    """Where each part of the state lives in the flat observation (size 3k + 1 + 2L)."""
    return {
        "samples_seen": slice(0, k),
        "step": slice(k, k + 1),
        "loss": slice(k + 1, 2 * k + 1),
        "loss_change": slice(2 * k + 1, 3 * k + 1),
        "weight_norm": slice(3 * k + 1, 3 * k + 1 + L),
        "update_norm": slice(3 * k + 1 + L, 3 * k + 1 + 2 * L),
    }


class TrainingState:
    def __init__(self, total_steps: int, vocab_size: int, initial_losses: np.ndarray, initial_norms: np.ndarray):
        self.total_steps = total_steps
        self.log_vocab = math.log(vocab_size)
        self.losses = np.asarray(initial_losses, dtype=np.float64).copy()
        self.loss_change = np.zeros(len(self.losses))
        self.initial_norms = np.asarray(initial_norms, dtype=np.float64).copy()
        self.weight_norms = self.initial_norms.copy()
        self.update_norms = np.zeros(len(self.initial_norms))

    @property
    def size(self) -> int:
        return 3 * len(self.losses) + 1 + 2 * len(self.initial_norms)

    def record(self, domain_losses: np.ndarray, weight_norms: np.ndarray, update_norms: np.ndarray) -> None:
        """One step's measurements (NaN loss: domain absent from the batch)."""
        losses = np.where(np.isnan(domain_losses), self.losses, domain_losses)
        self.loss_change = np.clip((losses - self.losses) / self.losses, -1.0, 1.0)
        self.losses = losses
        if np.all(np.isfinite(weight_norms)) and np.all(np.isfinite(update_norms)):
            self.weight_norms, self.update_norms = np.asarray(weight_norms), np.asarray(update_norms)

    def observation(self, samples_seen: np.ndarray, step: int) -> np.ndarray:
        total = samples_seen.sum()
        shares = samples_seen / total if total else np.full(len(self.losses), 1.0 / len(self.losses))
        rel_update = self.update_norms / np.maximum(self.weight_norms, 1e-12)
        update_feature = np.clip((np.log10(np.maximum(rel_update, 1e-12)) + 4.0) / 2.0, -2.0, 2.0)
        parts = [
            shares,
            [step / self.total_steps],
            self.losses / self.log_vocab,
            self.loss_change,
            self.weight_norms / self.initial_norms,
            update_feature,
        ]
        return np.concatenate(parts).astype(np.float32)

    def state_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, np.asarray(value, dtype=np.float64) if isinstance(value, list) else value)
