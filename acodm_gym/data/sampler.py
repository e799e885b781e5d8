"""The P_α batch sampler: pick a domain by α, then a sequence uniformly inside it.

A batch reserves an exploration floor (``max(1, share·B/k)`` sequences per domain, the paper's 10 %)
and draws the rest from α. Inside a domain, sequences are visited without replacement in a seeded
order; when a domain runs out a new epoch starts with a fresh order, and epochs are counted so the
metrics show how often small domains were repeated. Rows are grouped by domain, which lets the
reward probe read each domain's gradient from one contiguous slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CorpusError
from .token_corpus import TokenCorpus


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, seq_len) int64, rows grouped by domain
    domain_ids: torch.Tensor  # (B,) int64
    counts: np.ndarray  # (k,) sequences per domain in this batch
    probs: np.ndarray  # (k,) probability that a sequence of this batch comes from each domain


class DomainSampler:
    def __init__(
        self,
        corpus: TokenCorpus,
        seq_len: int,
        batch_size: int,
        exploration_share: float = 0.1,
        exploration_floor: bool = True,
        seed: int = 0,
    ):
        self.corpus, self.seq_len, self.batch_size = corpus, seq_len, batch_size
        self.k = len(corpus.domains)
        self.floor = max(1, int(exploration_share * batch_size / self.k)) if exploration_floor else 0
        if self.floor * self.k > batch_size:
            raise CorpusError(
                f"train.batch_size={batch_size} cannot hold one sequence from each of the {self.k} domains: "
                f"raise the batch size to at least {self.k} or set train.exploration_floor=false."
            )
        self.n_blocks = np.array([len(corpus.tokens(d)) // seq_len for d in corpus.domains])
        empty = [d for d, n in zip(corpus.domains, self.n_blocks) if n == 0]
        if empty:
            raise CorpusError(
                f"Domains {empty} hold fewer than seq_len={seq_len} training tokens: add text or drop them."
            )
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.epoch = np.zeros(self.k, dtype=np.int64)  # completed passes per domain
        self.position = np.zeros(self.k, dtype=np.int64)  # next index in the current epoch's order
        self.samples_seen = np.zeros(self.k, dtype=np.int64)
        self._orders: dict[int, np.ndarray] = {}

    def probabilities(self, alpha: np.ndarray) -> np.ndarray:
        """Per-domain probability of a batch sequence: floor share plus α over the rest."""
        free = self.batch_size - self.floor * self.k
        return (self.floor + free * alpha) / self.batch_size

    def _order(self, i: int) -> np.ndarray:
        cached = self._orders.get(i)
        if cached is None or cached[0] != self.epoch[i]:
            perm = np.random.default_rng([self.seed, i, int(self.epoch[i])]).permutation(self.n_blocks[i])
            self._orders[i] = cached = (self.epoch[i], perm)
        return cached[1]

    def _take(self, i: int, n: int) -> np.ndarray:
        out = []
        while n > 0:
            order = self._order(i)
            chunk = order[self.position[i] : self.position[i] + n]
            out.append(chunk)
            self.position[i] += len(chunk)
            n -= len(chunk)
            if self.position[i] >= self.n_blocks[i]:
                self.epoch[i] += 1
                self.position[i] = 0
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def sample(self, alpha: np.ndarray) -> Batch:
        free = self.batch_size - self.floor * self.k
        counts = self.floor + self.rng.multinomial(free, alpha)
        rows, ids = [], []
        for i, n in enumerate(counts):
            if n == 0:
                continue
            tokens = self.corpus.tokens(self.corpus.domains[i])
            for b in self._take(i, int(n)):
                rows.append(tokens[b * self.seq_len : (b + 1) * self.seq_len])
            ids.extend([i] * int(n))
        self.samples_seen += counts
        return Batch(
            input_ids=torch.from_numpy(np.stack(rows).astype(np.int64)),
            domain_ids=torch.tensor(ids, dtype=torch.int64),
            counts=counts,
            probs=self.probabilities(alpha),
        )

    def epochs(self) -> np.ndarray:
        """Passes over each domain's training data so far (fractional)."""
        return self.epoch + self.position / self.n_blocks

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "epoch": self.epoch.tolist(),
            "position": self.position.tolist(),
            "samples_seen": self.samples_seen.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.seed = state.get("seed", self.seed)  # the per-epoch orders derive from it
        self.rng.bit_generator.state = state["rng"]
        self.epoch = np.array(state["epoch"], dtype=np.int64)
        self.position = np.array(state["position"], dtype=np.int64)
        self.samples_seen = np.array(state["samples_seen"], dtype=np.int64)
        self._orders.clear()
