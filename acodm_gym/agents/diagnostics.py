"""Per-step diagnostics that show where a mixing agent's learning signal is lost.

Each learning agent returns these from ``update()`` under the names in ``DIAGNOSTICS`` (the runner
writes them to metrics.csv as ``diag/<name>``, empty where an agent has no such value that step):

- ``td_error``: mean |δ| = mean_{b,i} |Q1_i(s_b, a_b) − y_{b,i}| over the last critic batch and the
  reward components (the first critic; y the TD target, or (1 + γ)·r in warm-up). Units of W.
- ``q_return_spearman``: Spearman rank correlation between the scalarised Q(s, a) and the realised
  scalarised discounted return of HELD-OUT transitions: every ``holdout_every``-th transition is
  kept out of the replay buffer (its reward still advances the reward average), so the critic never
  trains on it. Its return G_t = Σ_{j<H} γ^j r_{t+j} (the same reward vector the critic learns, from
  every later transition, held out or not) is truncated at H = ⌈ln 0.01 / ln γ⌉ steps (γ^H ≤ 0.01;
  H = 90 for γ = 0.95) and known H steps later; both Q and G are scalarised with the transition's own
  action (Σ_i a_i·x_i for ``alpha_weighted``, Σ_i x_i for ``sum``). Computed on the most recent
  ``holdout_size`` held-out transitions whose return is known, from 5 of them on.
- ``reward_signal``, ``reward_noise``, ``reward_snr``: over the last ``window`` steps of the env's
  per-step reward vector W (``info["vector_reward"]``): signal = std_i(mean_t W_{t,i}), the spread of
  the domains' mean rewards (the gaps an agent must rank); noise = mean_i std_t(W_{t,i}), how much one
  domain's reward varies from step to step; snr = signal / noise. snr ≪ 1: one step's W ranks the
  domains by chance, so only long averages carry the signal. From 2 steps on.
- ``target_cosine``: cosine between the change of the greedy weights over the update, Δ = α_after −
  α_before (at the latest observation), and the direction towards ``target_weights``, target − α_before.
  Both lie in the simplex's tangent plane (they sum to 0). +1: the update moves straight towards the
  target. Only with ``target_weights``, and only where the update moved the weights.
- ``weight_entropy``: −Σ_i α_i ln α_i of the greedy weights after the update (ln k: uniform; 0: one domain).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable

import numpy as np

from ..errors import AgentError

DIAGNOSTICS = (
    "td_error",
    "q_return_spearman",
    "q_domain_spearman",
    "reward_signal",
    "reward_noise",
    "reward_snr",
    "target_cosine",
    "weight_entropy",
)
MIN_HELDOUT = 5
# (obs, actions, vector returns) -> (scalarised Q, scalarised returns, vector Q (n, k))
QAndReturn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    x = np.asarray(x, dtype=np.float64)
    sorted_x = np.sort(x)
    return (np.searchsorted(sorted_x, x, side="left") + np.searchsorted(sorted_x, x, side="right") + 1) / 2


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of the ranks; NaN where either side is constant."""
    rx, ry = ranks(x) - (len(x) + 1) / 2, ranks(y) - (len(y) + 1) / 2
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def reward_snr(rewards: np.ndarray) -> dict[str, float]:
    """Signal, noise and their ratio for rewards of shape (steps, k) (see the module docstring)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    signal = float(rewards.mean(axis=0).std(ddof=1)) if rewards.shape[1] > 1 else 0.0
    noise = float(rewards.std(axis=0, ddof=1).mean())
    return {"reward_signal": signal, "reward_noise": noise, "reward_snr": signal / noise if noise > 0 else float("nan")}


def target_cosine(before: np.ndarray, after: np.ndarray, target: np.ndarray) -> float | None:
    """cos(α_after − α_before, target − α_before); None where either direction is zero."""
    step, towards = np.asarray(after) - before, np.asarray(target) - before
    norm = float(np.linalg.norm(step) * np.linalg.norm(towards))
    return float(step @ towards / norm) if norm > 1e-12 else None


def entropy(weights: np.ndarray) -> float:
    w = np.asarray(weights, dtype=np.float64)
    return float(-(w * np.log(np.maximum(w, 1e-300))).sum())


def return_horizon(gamma: float) -> int:
    """H with γ^H ≤ 0.01: the truncation of the realised returns."""
    return max(1, math.ceil(math.log(0.01) / math.log(gamma))) if 0 < gamma < 1 else 1


class Diagnostics:
    """The running state behind the diagnostics: the reward window and the held-out transitions.

    :param k: number of domains
    :param gamma: the critic's discount (None: the agent has no critic, no held-out transitions)
    :param target_weights: the mixture ``target_cosine`` measures against (None: not logged)
    :param window: steps in the reward signal-to-noise window
    :param holdout_every: every this-many-th transition is held out of training (0: none, no Spearman)
    :param holdout_size: the Spearman correlation uses at most this many most recent held-out transitions
    """

    def __init__(
        self,
        k: int,
        gamma: float | None = None,
        target_weights: np.ndarray | None = None,
        window: int = 50,
        holdout_every: int = 10,
        holdout_size: int = 64,
    ):
        if int(window) < 2:
            raise AgentError(
                f"diagnostics_window={window} must be at least 2 steps (a standard deviation across steps)."
            )
        if int(holdout_every) < 0 or int(holdout_every) == 1:
            raise AgentError(
                f"holdout_every={holdout_every} must be 0 (no held-out transitions) or at least 2 "
                "(1 would hold out every transition and leave the critic nothing to train on)."
            )
        self.k = k
        self.target = None if target_weights is None else self._simplex(target_weights, k)
        self.horizon = return_horizon(gamma) if gamma is not None else None
        self.gamma = gamma
        self.holdout_every = int(holdout_every) if gamma is not None else 0
        self.rewards: deque[np.ndarray] = deque(maxlen=int(window))
        self.pending: list[dict[str, Any]] = []  # held out, return not yet known
        self.heldout: deque[dict[str, Any]] = deque(maxlen=int(holdout_size))
        self.seen = 0  # transitions recorded

    @staticmethod
    def _simplex(weights, k: int) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (k,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise AgentError(
                f"target_weights {np.asarray(weights).tolist()} must be {k} finite non-negative numbers with a "
                "positive sum (the mixture, one weight per domain, that target_cosine measures against)."
            )
        return w / w.sum()

    def holds_out(self) -> bool:
        """Whether the next transition is held out of training."""
        return self.holdout_every > 0 and self.seen % self.holdout_every == self.holdout_every - 1

    def record(
        self, raw_reward: np.ndarray, obs=None, action=None, learned_reward=None, held_out: bool = False
    ) -> None:
        """One step: the env's W (for the SNR) and, for a critic, the transition and the reward it learns."""
        self.rewards.append(np.asarray(raw_reward, dtype=np.float64).copy())
        self.seen += 1
        if self.horizon is None:
            return
        if held_out:
            self.pending.append(
                {
                    "obs": np.asarray(obs, np.float32).copy(),
                    "action": np.asarray(action, np.float32).copy(),
                    "ret": np.zeros(self.k),
                    "age": 0,
                }
            )
        r = np.asarray(learned_reward, dtype=np.float64)
        for item in self.pending:
            item["ret"] = item["ret"] + self.gamma ** item["age"] * r
            item["age"] += 1
        while self.pending and self.pending[0]["age"] >= self.horizon:
            self.heldout.append(self.pending.pop(0))

    def stats(
        self, before: np.ndarray | None = None, after: np.ndarray | None = None, q_and_return: QAndReturn | None = None
    ) -> dict[str, float]:
        """The diagnostics available now. ``before``/``after``: greedy weights around the update;
        ``q_and_return(obs, actions, returns)``: scalarised Q, scalarised returns and the vector Q of held-out
        transitions."""
        out: dict[str, float] = {}
        if len(self.rewards) >= 2:
            out.update(reward_snr(np.stack(self.rewards)))
        if after is not None:
            out["weight_entropy"] = entropy(after)
            if self.target is not None and before is not None:
                cosine = target_cosine(before, after, self.target)
                if cosine is not None:
                    out["target_cosine"] = cosine
        if q_and_return is not None and len(self.heldout) >= MIN_HELDOUT:
            items = list(self.heldout)
            returns = np.stack([i["ret"] for i in items])
            q, g, q_vector = q_and_return(
                np.stack([i["obs"] for i in items]), np.stack([i["action"] for i in items]), returns
            )
            out["q_return_spearman"] = spearman(q, g)
            if self.k > 1:
                out["q_domain_spearman"] = spearman(np.asarray(q_vector).mean(axis=0), returns.mean(axis=0))
        return {k: v for k, v in out.items() if math.isfinite(v)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "rewards": [r.tolist() for r in self.rewards],
            "pending": [_pack(i) for i in self.pending],
            "heldout": [_pack(i) for i in self.heldout],
            "seen": self.seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rewards.clear()
        self.rewards.extend(np.asarray(r, np.float64) for r in state["rewards"])
        self.pending = [_unpack(i) for i in state["pending"]]
        self.heldout.clear()
        self.heldout.extend(_unpack(i) for i in state["heldout"])
        self.seen = int(state["seen"])


def _pack(item: dict[str, Any]) -> dict[str, Any]:
    """A held-out transition as plain Python values (saved agents are read back with ``weights_only``)."""
    return {
        "obs": item["obs"].tolist(),
        "action": item["action"].tolist(),
        "ret": item["ret"].tolist(),
        "age": item["age"],
    }


def _unpack(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "obs": np.asarray(item["obs"], np.float32),
        "action": np.asarray(item["action"], np.float32),
        "ret": np.asarray(item["ret"], np.float64),
        "age": int(item["age"]),
    }
