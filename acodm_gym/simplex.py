"""Domain weights on the simplex, and the rewards read through them: shared by every layer, at the bottom.

PretrainEnv maps an action onto the simplex with ``action_to_weights``, agents check their own actions with
it, ``DomainMixer`` reads its agent's weights with it; ``SCALARIZATIONS`` turn the env's reward vector into the
stock agents' scalar (``scalarize``) and a vector critic's Q into its actor's objective (agents/vector_td3.py);
``importance_weighted_ema`` is the paper's smoothed reward, used by the env wrapper and the replay buffer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .registry import Registry

# Scalarisations (``env.scalarization``, ``agent.options.scalarization``): a name → ``f(vector, alpha)``, the scalar
# of a reward (or Q) vector under the mixture α, over the last axis of numpy arrays and torch tensors alike.
# Your own: SCALARIZATIONS.register("NAME", f), or the entry point group.
SCALARIZATIONS = Registry(
    "scalarisation",
    "env.scalarization",
    "acodm_gym.scalarizations",
    {
        "alpha_weighted": lambda vector, alpha: (alpha * vector).sum(-1),
        "sum": lambda vector, alpha: vector.sum(-1),
        "mean": lambda vector, alpha: vector.mean(-1),
    },
    add_with="acodm_gym.simplex.SCALARIZATIONS.register('NAME', f)",
)


def scalarize(vector: np.ndarray, alpha: np.ndarray, mode: str) -> float:
    """The scalar reward of a reward vector under the mixture α (envs/pretrain_env.py's module docstring);
    ConfigError for a scalarisation that is not registered."""
    return float(SCALARIZATIONS.get(mode)(np.asarray(vector, dtype=np.float64), np.asarray(alpha, dtype=np.float64)))


def action_to_weights(action: Any, k: int) -> np.ndarray:
    """Domain weights from an action: negatives count as 0, then divide by the sum (order-preserving).

    All zeros (a corner of the box) means uniform. Raises ``ValueError`` for a non-numeric action, a
    wrong shape, NaN/inf, or an action with negative entries and nothing positive.
    """
    a = np.asarray(action)
    if a.dtype.kind not in "biuf":
        raise ValueError(
            f"Action {_short_repr(action)} is not numeric: give {k} float domain weights, shape ({k},), in [0, 1]."
        )
    a = a.astype(np.float64)
    if a.shape != (k,):
        raise ValueError(f"Action has shape {a.shape}; expected ({k},), one weight per domain.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"Action {a.tolist()} holds NaN or inf; give finite domain weights.")
    positive = np.maximum(a, 0.0)
    with np.errstate(over="ignore"):
        total = positive.sum()
    if not np.isfinite(total):  # huge weights overflow the sum: scale them down first
        positive = positive / positive.max()
        total = positive.sum()
    if total > 0:
        return positive / total
    if np.any(a < 0):
        raise ValueError(
            f"Action {a.tolist()} has no positive weight: give at least one weight > 0 (all zeros means uniform)."
        )
    return np.full(k, 1.0 / k)


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def importance_weighted_ema(ema: np.ndarray | None, reward: np.ndarray, probs: np.ndarray, xi: float) -> np.ndarray:
    """r̂ ← ξ·r̂ + (1 − ξ)·r / p, starting from r̂ = 0 (``ema=None``).

    p is the probability with which the step's batch drew each domain, so domains the mixture
    already favours are not rewarded merely for being sampled often.
    """
    corrected = np.asarray(reward) / np.maximum(probs, 1e-12)
    return (1 - xi) * corrected if ema is None else xi * ema + (1 - xi) * corrected
