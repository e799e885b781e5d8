"""The corpus seen as more domains than it has (k = 22 from 8): shared by the benchmarks."""

from __future__ import annotations

import numpy as np

from acodm_gym.data.token_corpus import TokenCorpus


class SubDomainCorpus:
    """The corpus seen as ``k`` domains: each real domain's training tokens split into block ranges.

    Only what DomainSampler reads (``domains``, ``tokens``, ``natural_weights``). The probe needs
    nothing but rows grouped by domain id, so k = 22 sub-domains exercise it as 22 domains would.
    """

    def __init__(self, corpus: TokenCorpus, k: int, seq_len: int):
        parents = list(corpus.domains)
        if k < len(parents):
            raise ValueError(f"Cannot split {len(parents)} domains into fewer ({k}) sub-domains.")
        base, extra = divmod(k, len(parents))
        self.domains, self._tokens = [], {}
        for j, d in enumerate(parents):
            parts = base + (1 if j < extra else 0)
            tokens = corpus.tokens(d)
            blocks = len(tokens) // seq_len
            edges = [round(i * blocks / parts) for i in range(parts + 1)]
            for i in range(parts):
                name = f"{d}/{i}"
                self.domains.append(name)
                self._tokens[name] = tokens[edges[i] * seq_len : edges[i + 1] * seq_len]

    def tokens(self, domain: str, split: str = "train") -> np.ndarray:
        return self._tokens[domain]

    def natural_weights(self) -> np.ndarray:
        n = np.array([len(self._tokens[d]) for d in self.domains], dtype=np.float64)
        return n / n.sum()
