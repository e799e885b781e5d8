"""The paper's importance-corrected reward average, shared by the env wrapper and the replay buffer."""
from __future__ import annotations

import numpy as np


def importance_weighted_ema(ema: np.ndarray | None, reward: np.ndarray, probs: np.ndarray, xi: float) -> np.ndarray:
    """r̂ ← ξ·r̂ + (1 − ξ)·r / p, starting from r̂ = 0 (``ema=None``).

    p is the probability with which the step's batch drew each domain, so domains the mixture
    already favours are not rewarded merely for being sampled often.
    """
    corrected = np.asarray(reward) / np.maximum(probs, 1e-12)
    return (1 - xi) * corrected if ema is None else xi * ema + (1 - xi) * corrected
