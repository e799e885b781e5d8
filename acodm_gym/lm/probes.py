"""Probes: what the environment reads off the model during a step, without extra passes.

* ``AlignmentProbe`` captures, on selected Linear layers, the input activations (forward hook)
  and the output gradients (tensor hook) of the backward pass the update already makes, and sums
  ``δᵀa`` per domain. Because the sampler groups rows by domain, each domain is one contiguous
  slice: one matmul per domain and layer, no k extra backwards. It keeps, per probed layer and
  per domain PRESENT in the batch, either the exact gradient (out × in) or, with ``sketch=[p, q]``,
  its Kronecker sketch P_out (δᵀa) P_inᵀ (p × q; LoGra-style, computed on the fly as (δP_outᵀ)ᵀ(aP_inᵀ)):
  memory and communication k·p·q per layer, not k × weight; inner products unbiased over the projections.
  What crosses ranks per step (``allreduce_bytes``):
    - a variant without the Gram matrix (paper): S = Σ_j g_j (one weight-sized buffer per layer, or its p × q sketch), then the k
      numbers ⟨g_i^local, S⟩ (W_i = ⟨g_i, S⟩ is linear in g_i, so cross-rank terms are kept): P + k
      values exact, p·q per layer + k sketched;
    - a variant that needs the Gram matrix (authors): the k per-domain gradients (k·P values) or sketches
      (k·p·q per layer).
* ``WeightNormProbe`` reads ‖ω‖ and the norm of the last update ‖ω_t − ω_{t−1}‖ of L layers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import check_sketch
from ..rewards import REWARD_VARIANTS, Alignments
from .distributed import all_reduce_sum_, is_distributed


class AlignmentProbe:
    """The per-domain gradient-alignment reward W from the update's own backward pass.

    :param modules: the probed Linear layers
    :param num_domains: k
    :param variant: a reward variant (``rewards.REWARD_VARIANTS``: ``paper``, W_i = ⟨g_i, Σ_j g_j⟩, or ``authors``)
    :param sketch: None for the exact gradients, or [p, q]: sketch sizes of each layer's output and
        input side (1 ≤ p ≤ out, 1 ≤ q ≤ in)
    :param seed: seed of the random projections (the run seed: the same on every rank)
    :param target: the domains whose gradients W aligns with (k booleans): S = Σ_{j∈target} g_j; None:
        every domain (the paper's whole-corpus S). A target-domain task aligns with its eval domains, as DoGE's
        out-of-domain mode does, so planted junk or the sources do not set the direction they are scored on.
    """

    def __init__(
        self,
        modules: list[nn.Linear],
        num_domains: int,
        variant: str = "paper",
        sketch: list[int] | None = None,
        seed: int = 0,
        target: np.ndarray | None = None,
    ):
        if variant not in REWARD_VARIANTS:
            raise ValueError(f"Unknown reward variant '{variant}': use one of {', '.join(REWARD_VARIANTS)}.")
        self.modules = modules
        self.k = num_domains
        self.variant = variant
        self._needs_gram = REWARD_VARIANTS.get(variant).needs_gram
        self.target = np.ones(num_domains, dtype=bool) if target is None else np.asarray(target, dtype=bool)
        if self.target.shape != (num_domains,) or not self.target.any():
            raise ValueError(f"AlignmentProbe target must be {num_domains} booleans with at least one set.")
        if sketch is not None:
            check_sketch(sketch, [tuple(m.weight.shape) for m in modules])
        self.sketch = None if sketch is None else tuple(sketch)
        self.proj: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: (P_out p × out, P_in q × in)
        if self.sketch is not None:
            self.proj = [self._projections(m, j, seed) for j, m in enumerate(modules)]
        self.grads: list[torch.Tensor] = []  # per layer: (present domains, out, in) or (present domains, p, q)
        self.present = np.zeros(num_domains, dtype=bool)
        self._row = torch.full((num_domains,), -1, dtype=torch.long)  # domain → its row in ``grads`` (-1: absent)
        self.reduced_bytes = 0  # bytes this probe all-reduced over ranks in the last step (0 in one process)
        self._slices: list[tuple[int, int, int]] = []
        self._handles = [m.register_forward_hook(self._make_hook(j)) for j, m in enumerate(modules)]

    def _projections(self, m: nn.Linear, j: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """P_out (p × out) and P_in (q × in): random orthonormal rows scaled by √(out/p) (√(in/q)), so
        E[P_outᵀP_out] = I and E⟨P_out X P_inᵀ, P_out Y P_inᵀ⟩ = ⟨X, Y⟩; orthogonal rows have less variance
        than Gaussian ones, and a full-size side is exact. Drawn on the CPU from (seed, layer): the same on every rank."""
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, j]).generate_state(1)[0]))

        def rows(n: int, size: int) -> torch.Tensor:
            q, _ = torch.linalg.qr(torch.randn(size, n, generator=gen, dtype=torch.float64))  # size × n, orthonormal
            return (q.t() * (size / n) ** 0.5).float().to(m.weight.device)

        out_f, in_f = m.weight.shape
        return rows(self.sketch[0], out_f), rows(self.sketch[1], in_f)

    def reset(self, present: np.ndarray | None = None) -> None:
        """Start a step: buffers for the domains present in the global batch (None: all k); none for the others."""
        present = np.ones(self.k, dtype=bool) if present is None else np.asarray(present, dtype=bool)
        if self.grads and np.array_equal(present, self.present):
            for g in self.grads:
                g.zero_()
            return
        self.grads = []  # free the old buffers before allocating the new ones
        self.present = present.copy()
        n = int(present.sum())
        self._row = torch.full((self.k,), -1, dtype=torch.long)
        self._row[torch.from_numpy(np.flatnonzero(present))] = torch.arange(n)
        for m in self.modules:
            shape = tuple(m.weight.shape) if self.sketch is None else self.sketch
            self.grads.append(torch.zeros(n, *shape, dtype=torch.float32, device=m.weight.device))

    def set_rows(self, domain_ids: torch.Tensor) -> None:
        """Declare the (domain-grouped) rows of the next forward: a list of (buffer row, start, end)."""
        if not self.grads:
            raise RuntimeError("AlignmentProbe.set_rows before reset(present): start each step with reset.")
        rows = self._row[domain_ids.cpu()]
        if bool((rows < 0).any()):
            missing = sorted(set(domain_ids[rows < 0].tolist()))
            raise ValueError(f"Rows of domains {missing} were not declared present in reset(present).")
        ids = rows.tolist()
        slices, start = [], 0
        for r in range(1, len(ids) + 1):
            if r == len(ids) or ids[r] != ids[start]:
                slices.append((ids[start], start, r))
                start = r
        self._slices = slices

    def _make_hook(self, j: int):
        def forward_hook(module, inputs, output):
            if not output.requires_grad or not self.grads:  # evaluation, no_grad, or no step started: nothing to probe
                return
            act = inputs[0].detach()
            slices = self._slices

            def grad_hook(grad: torch.Tensor) -> None:
                g = self.grads[j]
                d_all, a_all = grad.float(), act.float()
                if self.sketch is not None:  # project each side once for the whole micro-batch
                    p_out, p_in = self.proj[j]
                    d_all, a_all = d_all @ p_out.t(), a_all @ p_in.t()
                for i, lo, hi in slices:
                    d = d_all[lo:hi].reshape(-1, d_all.shape[-1])
                    a = a_all[lo:hi].reshape(-1, a_all.shape[-1])
                    g[i].addmm_(d.t(), a)

            output.register_hook(grad_hook)

        return forward_hook

    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if is_distributed():
            self.reduced_bytes += tensor.numel() * tensor.element_size()
        return all_reduce_sum_(tensor)

    def _scale(self, scale) -> torch.Tensor:
        return torch.as_tensor(np.asarray(scale, dtype=np.float64)[self.present])

    def gram(self, scale) -> np.ndarray:
        """⟨∇ℓ_i, ∇ℓ_j⟩ over the probed layers (of the GLOBAL batch: all-reduces the per-domain buffers; once a
        step), after rescaling domain i's sum of δᵀa by ``scale[i]``; with a sketch, the unbiased estimate.

        ``scale`` undoes the loss weighting: under Σ α_i ℓ_i a domain-i row carries α_i/n_i, so
        ∇ℓ_i = (1/α_i)·Σ δᵀa. A domain absent from the batch has zero gradient.
        """
        self.reduced_bytes = 0
        n = int(self.present.sum())
        total = torch.zeros(n, n, dtype=torch.float64)
        for g in self.grads:  # float32 matmul on the k weight-sized sums; scale the small k × k result
            flat = self._all_reduce(g).reshape(n, -1)
            total += (flat @ flat.t()).double().cpu()
        s = self._scale(scale)
        out = np.zeros((self.k, self.k))
        out[np.ix_(self.present, self.present)] = (total * s[:, None] * s[None, :]).numpy()
        return out

    def reward(self, scale) -> np.ndarray:
        """W (k values, 0 for absent domains) of the global batch, for this probe's variant; once a step."""
        if self._needs_gram:
            alignments = Alignments.from_gram(self.gram(scale), self.target)
        else:
            alignments = Alignments(self.target_alignment(scale), self.target)
        return REWARD_VARIANTS.get(self.variant).reward(alignments)

    def target_alignment(self, scale) -> np.ndarray:
        """⟨g_i, S⟩ with S = Σ_{j∈target} g_j (k values, 0 for absent domains) without the Gram matrix: per layer,
        S (one weight- or sketch-sized buffer) is all-reduced, then the k numbers ⟨g_i^rank, S⟩ are summed over ranks
        (a sketch is linear in g, so the same holds for the sketches)."""
        self.reduced_bytes = 0
        s64 = self._scale(scale)
        s_target = s64 * torch.from_numpy(self.target[self.present])  # a domain outside the target adds nothing to S
        w_local = torch.zeros(len(s64), dtype=torch.float64)
        for g in self.grads:
            flat = g.reshape(len(s64), -1)
            s_vec = self._all_reduce(
                s_target.to(flat) @ flat
            )  # S of the global batch: one weight- (or sketch-) sized buffer
            w_local += (flat @ s_vec).double().cpu()
        w = self._all_reduce(w_local * s64)  # the k numbers ⟨g_i^rank, S⟩, summed over ranks
        out = np.zeros(self.k)
        out[self.present] = w.numpy()
        return out

    def allreduce_bytes(self) -> int:
        """Bytes ``reward`` all-reduces per step over ranks, from the buffers (float32 values, float64 W)."""
        n = int(self.present.sum()) if self.grads else self.k
        per_domain = self.sketch[0] * self.sketch[1] if self.sketch is not None else None
        values = sum(per_domain or m.weight.numel() for m in self.modules)  # one domain's values, all layers
        if not self._needs_gram:
            return 4 * values + 8 * n
        return 4 * n * values

    def allocated_bytes(self) -> int:
        """Bytes of the tensors this probe holds: per-domain buffers and (sketch) projections."""
        held = self.grads + [t for pair in self.proj for t in pair]
        return sum(t.numel() * t.element_size() for t in held)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class WeightNormProbe:
    def __init__(self, modules: list[nn.Linear]):
        self.modules = modules
        self._unique = list({id(m): m for m in modules}.values())
        self._before: dict[int, torch.Tensor] = {}

    def norms(self) -> np.ndarray:
        return np.array([m.weight.detach().float().norm().item() for m in self.modules])

    def before_update(self) -> None:
        self._before = {id(m): m.weight.detach().clone() for m in self._unique}

    def update_norms(self) -> np.ndarray:
        """‖ω_t − ω_{t−1}‖ per probed layer, for the update made since ``before_update``."""
        deltas = {id(m): (m.weight.detach() - self._before[id(m)]).float().norm().item() for m in self._unique}
        self._before = {}
        return np.array([deltas[id(m)] for m in self.modules])
