"""Probes: what the environment reads off the model during a step, without extra passes.

* ``AlignmentProbe`` captures, on selected Linear layers, the input activations (forward hook)
  and the output gradients (tensor hook) of the backward pass the update already makes, and sums
  ``δᵀa`` per domain. Because the sampler groups rows by domain, each domain is one contiguous
  slice: one matmul per domain and layer, no k extra backwards. The per-domain gradients G
  (k × layer weight) are the sufficient statistic: they add over micro-batches and ranks, and
  their Gram matrix gives both reward variants.
* ``WeightNormProbe`` reads ‖ω‖ and the norm of the last update ‖ω_t − ω_{t−1}‖ of L layers.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class AlignmentProbe:
    def __init__(self, modules: list[nn.Linear], num_domains: int):
        self.modules = modules
        self.k = num_domains
        self.grads: list[torch.Tensor] = [
            torch.zeros(num_domains, *m.weight.shape, dtype=torch.float32, device=m.weight.device) for m in modules
        ]
        self._slices: list[tuple[int, int, int]] = []
        self._handles = [m.register_forward_hook(self._make_hook(j)) for j, m in enumerate(modules)]

    def set_rows(self, domain_ids: torch.Tensor) -> None:
        """Declare the (domain-grouped) rows of the next forward: a list of (domain, start, end)."""
        ids = domain_ids.tolist()
        slices, start = [], 0
        for r in range(1, len(ids) + 1):
            if r == len(ids) or ids[r] != ids[start]:
                slices.append((ids[start], start, r))
                start = r
        self._slices = slices

    def _make_hook(self, j: int):
        def forward_hook(module, inputs, output):
            if not output.requires_grad:  # evaluation or no_grad forward: nothing to probe
                return
            act = inputs[0].detach()
            slices = self._slices

            def grad_hook(grad: torch.Tensor) -> None:
                g = self.grads[j]
                for i, lo, hi in slices:
                    d = grad[lo:hi].reshape(-1, grad.shape[-1]).float()
                    a = act[lo:hi].reshape(-1, act.shape[-1]).float()
                    g[i].addmm_(d.t(), a)

            output.register_hook(grad_hook)

        return forward_hook

    def reset(self) -> None:
        for g in self.grads:
            g.zero_()

    def gram(self, scale: torch.Tensor) -> np.ndarray:
        """⟨∇ℓ_i, ∇ℓ_j⟩ over the probed layers, after rescaling domain i's sum of δᵀa by ``scale[i]``.

        ``scale`` undoes the loss weighting: under Σ α_i ℓ_i a domain-i row carries α_i/n_i, so
        ∇ℓ_i = (1/α_i)·Σ δᵀa. A domain absent from the batch has zero gradient.
        """
        total = torch.zeros(self.k, self.k, dtype=torch.float64)
        for g in self.grads:  # float32 matmul on the k weight-sized sums; scale the small k × k result
            flat = g.reshape(self.k, -1)
            total += (flat @ flat.t()).double().cpu()
        scale = scale.to(torch.float64).cpu()
        return (total * scale[:, None] * scale[None, :]).numpy()

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def alignment_reward(gram: np.ndarray, variant: str = "paper") -> np.ndarray:
    """Reward vector W from the Gram matrix of per-domain gradients.

    paper:   W_i = ⟨g_i, Σ_j g_j⟩ (row sums of the Gram matrix).
    authors: the authors' code: W_i = Σ_{j≠i}⟨g_i, g_j⟩ / mean_k ‖g_k‖, z-scored over domains and
             clamped to [−3, 3] (scale-free, so it reads the same early and late in training).
             A domain absent from the batch (zero gradient) gets 0 and is left out of the mean,
             norm and z-score, as it is in the paper variant.
    """
    if variant == "paper":
        return gram.sum(axis=1)
    if variant == "authors":
        diag = np.diag(gram)
        present = diag > 0
        out = np.zeros(len(diag))
        if not present.any():
            return out
        norm = np.sqrt(diag[present]).mean()
        w = ((gram.sum(axis=1) - diag) / max(norm, 1e-12))[present]
        std = w.std()
        out[present] = np.clip((w - w.mean()) / (std if std > 0 else 1.0), -3.0, 3.0)
        return out
    raise ValueError(f"Unknown reward variant '{variant}': use 'paper' or 'authors'.")


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
