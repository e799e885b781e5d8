"""Reward variants (``env.reward_variant``): the per-domain alignment reward W from a step's domain gradients.

A variant reads the step's ``Alignments``: ⟨g_i, S⟩ with S = Σ_{j∈target} g_j, which the probe
(lm/probes.py) measures without the k × k Gram matrix, and, for a variant that declares ``needs_gram``, the
Gram matrix ⟨g_i, g_j⟩ itself, which costs the k per-domain gradients across ranks. Every formula lives
here, once; the probe, the tests and the benchmarks all read W through ``REWARD_VARIANTS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .registry import Registry


@dataclass
class Alignments:
    """One step's gradient alignments over the k domains (0 for a domain absent from the batch).

    :param target_alignment: ⟨g_i, S⟩, S = Σ_{j∈target} g_j (k values)
    :param target: the domains S sums over (k booleans)
    :param gram: ⟨g_i, g_j⟩ (k × k), for a variant that ``needs_gram`` (else None)
    """

    target_alignment: np.ndarray
    target: np.ndarray
    gram: np.ndarray | None = None

    @classmethod
    def from_gram(cls, gram: np.ndarray, target: np.ndarray | None = None) -> "Alignments":
        target = np.ones(len(gram), dtype=bool) if target is None else np.asarray(target, dtype=bool)
        return cls(gram[:, target].sum(axis=1), target, gram)


@dataclass(frozen=True)
class RewardVariant:
    """:param reward: ``Alignments`` → W (k values)
    :param needs_gram: whether it reads ``Alignments.gram`` (the probe then gathers every domain's gradient)"""

    reward: Callable[[Alignments], np.ndarray]
    needs_gram: bool = False


def paper(a: Alignments) -> np.ndarray:
    """The paper: W_i = ⟨g_i, Σ_j g_j⟩ (the sum over the target domains)."""
    return np.asarray(a.target_alignment, dtype=np.float64)


def authors(a: Alignments) -> np.ndarray:
    """The authors' code: W_i = Σ_{j≠i}⟨g_i, g_j⟩ / mean_k ‖g_k‖, z-scored over domains and clamped to [−3, 3]
    (scale-free, so it reads the same early and late in training). A domain absent from the batch (zero
    gradient) gets 0 and is left out of the mean, norm and z-score, as it is in the paper variant."""
    diag = np.diag(a.gram)
    present = diag > 0
    out = np.zeros(len(diag))
    if not present.any():
        return out
    norm = np.sqrt(diag[present]).mean()
    w = ((a.target_alignment - diag * a.target) / max(norm, 1e-12))[present]
    std = w.std()
    out[present] = np.clip((w - w.mean()) / (std if std > 0 else 1.0), -3.0, 3.0)
    return out


# A variant of your own: REWARD_VARIANTS.register("mine", RewardVariant(reward, needs_gram)), or the entry point group.
REWARD_VARIANTS = Registry(
    "reward variant",
    "env.reward_variant",
    "acodm_gym.reward_variants",
    {"paper": RewardVariant(paper), "authors": RewardVariant(authors, needs_gram=True)},
    add_with="acodm_gym.rewards.REWARD_VARIANTS.register('NAME', RewardVariant(reward, needs_gram))",
)


def alignment_reward(gram: np.ndarray, variant: str = "paper", target: np.ndarray | None = None) -> np.ndarray:
    """W of ``variant`` from the Gram matrix of per-domain gradients; the sums over j run over ``target``
    (k booleans; None: every domain)."""
    if variant not in REWARD_VARIANTS:
        raise ValueError(f"Unknown reward variant '{variant}': use one of {', '.join(REWARD_VARIANTS)}.")
    return REWARD_VARIANTS.get(variant).reward(Alignments.from_gram(gram, target))
