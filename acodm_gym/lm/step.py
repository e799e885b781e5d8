"""One LLM training step, written once for every backend.

``train_step`` holds the logic (per-domain losses from the step's own forward, the α-reweighted
objective, probes, non-finite handling); a backend only supplies forward, backward and the
optimiser step. ``TorchBackend`` is the single-process reference; ``DeepSpeedBackend``
(lm/deepspeed_backend.py) implements the same interface over its engine: ``forward``,
``backward(loss, last)``, ``grad_norm``, ``optimizer_step(apply)``, ``lr``, ``device``, ``model``,
``rank`` and ``world_size`` (a multi-rank backend averages gradients over ranks; ``train_step``
then trains on this rank's rows and sums losses and the probe's statistics over ranks: lm/distributed.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..data.sampler import Batch
from .distributed import all_reduce_sum_, shard_rows
from .probes import AlignmentProbe, WeightNormProbe

ALPHA_MIN = 1e-6  # objective weight kept for a domain with α_i = 0, so its gradient stays readable


@dataclass
class StepOutput:
    domain_losses: np.ndarray  # (k,) mean loss per domain on this batch, before the update; NaN if absent
    objective: float  # the loss the update descended
    finite: bool  # False: loss or gradient was non-finite and the update was skipped
    grad_norm: float
    lr: float
    reward: np.ndarray | None  # (k,) alignment reward W of the probe's variant (None without probe)
    weight_norms: np.ndarray  # (L,) ‖ω‖ after the step
    update_norms: np.ndarray  # (L,) ‖ω_t − ω_{t−1}‖


def lr_lambda(cfg: TrainConfig):
    """Linear warm-up from 10 % of the peak to the peak, then cosine decay to ``min_lr_ratio``."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return 0.1 + 0.9 * step / max(1, cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_optimizer(
    model: nn.Module, cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no decay on biases and norms) with the warm-up + cosine schedule."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=tuple(cfg.betas),
    )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))


def sequence_losses(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each row: (B, S, V), (B, S) → (B,)."""
    b, s, v = logits.shape
    # Shift the labels, not the logits: slicing (B, S, V) logits would copy them (and again in backward).
    labels = F.pad(input_ids[:, 1:], (0, 1), value=-100)
    loss = F.cross_entropy(logits.reshape(-1, v).float(), labels.reshape(-1), reduction="none", ignore_index=-100)
    return loss.view(b, s).sum(dim=1) / (s - 1)


class TorchBackend:
    """Plain single-process PyTorch: the embedded default and the reference for other backends."""

    rank, world_size = 0, 1  # a multi-rank backend (DeepSpeed) trains on its rank's rows and averages gradients

    def __init__(self, model: nn.Module, cfg: TrainConfig):
        self.model = model.to(cfg.device)
        self.device = torch.device(cfg.device)
        self.grad_clip = cfg.grad_clip
        self.optimizer, self.scheduler = build_optimizer(self.model, cfg)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids.to(self.device)).logits

    def backward(self, loss: torch.Tensor, last: bool = True) -> None:
        """Accumulate gradients; ``last`` marks the step's final micro-batch (where DeepSpeed reduces)."""
        loss.backward()

    def grad_norm(self) -> float:
        """Clip (if configured) and return the total gradient norm; non-finite if any gradient is."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.grad_clip if self.grad_clip and self.grad_clip > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, clip))

    def optimizer_step(self, apply: bool) -> None:
        """Apply the update (or drop it), then advance the LR schedule either way."""
        if apply:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    # A run's checkpoint (runs/checkpoint.py): every rank calls these with the same directory.
    checkpoint_files = ("model.pt",)

    def save_checkpoint(self, directory: Path) -> None:
        """Model, optimiser and schedule in ``directory/model.pt``."""
        torch.save(self.state_dict(), Path(directory) / "model.pt")

    def load_checkpoint(self, directory: Path) -> None:
        self.load_state_dict(torch.load(Path(directory) / "model.pt", map_location=self.device, weights_only=True))


def domain_coefficients(counts: np.ndarray, alpha: np.ndarray, loss_weighting: str) -> np.ndarray:
    """Objective weight of one sequence of each domain.

    alpha: Σ_i α_i ℓ_i with ℓ_i the mean over domain i's rows → α_i / n_i per row (the paper's
    θ ← θ − η Σ α_i ∇ℓ_i). mean: the plain batch mean → 1 / B per row.
    """
    n = np.maximum(counts, 1).astype(np.float64)
    if loss_weighting == "alpha":
        return np.maximum(alpha, ALPHA_MIN) / n
    return np.full(len(counts), 1.0 / counts.sum())


def domain_means(loss_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-domain mean loss from per-domain sums over a batch's rows; NaN for a domain absent from it."""
    means = np.full(len(counts), np.nan)
    present = counts > 0
    means[present] = loss_sums[present] / counts[present]
    return means


def train_step(
    backend,
    batch: Batch,
    alpha: np.ndarray,
    loss_weighting: str,
    micro_batch_size: int | None,
    alignment: AlignmentProbe | None,
    norms: WeightNormProbe,
) -> StepOutput:
    """Forward/backward over micro-batches, probe, and update; skip the update if anything is non-finite."""
    k = len(batch.counts)
    coef = domain_coefficients(batch.counts, alpha, loss_weighting)
    row_coef = torch.as_tensor(coef, dtype=torch.float32)[batch.domain_ids].to(backend.device)
    loss_sums = torch.zeros(k, dtype=torch.float64)
    objective = 0.0
    # Multi-rank (lm/distributed.py): this rank's rows of the global batch; the backend averages gradients
    # over ranks, so each rank backpropagates world × its share of the global objective.
    world = backend.world_size
    first, end = shard_rows(len(batch.domain_ids), backend.rank, world)
    size = micro_batch_size or (end - first)
    if alignment is not None:
        alignment.reset(batch.counts > 0)  # buffers for the domains in the global batch only
    for lo in range(first, end, size):
        hi = min(lo + size, end)
        ids, dom = batch.input_ids[lo:hi], batch.domain_ids[lo:hi]
        if alignment is not None:
            alignment.set_rows(dom)
        seq = sequence_losses(backend.forward(ids), ids.to(backend.device))
        loss = (seq * row_coef[lo:hi]).sum()
        backend.backward(loss * world if world > 1 else loss, last=hi >= end)
        loss_sums.index_add_(0, dom, seq.detach().double().cpu())
        objective += float(loss.detach())
    if world > 1:  # the global batch's per-domain loss sums and objective, on every rank
        totals = all_reduce_sum_(torch.cat([loss_sums, torch.tensor([objective], dtype=torch.float64)]))
        loss_sums, objective = totals[:k], float(totals[k])

    present = batch.counts > 0
    domain_losses = domain_means(loss_sums.numpy(), batch.counts)
    grad_norm = backend.grad_norm()
    finite = math.isfinite(objective) and math.isfinite(grad_norm)
    reward = None
    if finite and alignment is not None:  # W of the GLOBAL batch (the probe all-reduces what it needs)
        reward = alignment.reward(np.where(present, 1.0 / (np.maximum(batch.counts, 1) * coef * world), 0.0))
    norms.before_update()
    lr = backend.lr  # the rate this update uses (the schedule advances in optimizer_step)
    backend.optimizer_step(apply=finite)
    return StepOutput(
        domain_losses=domain_losses,
        objective=objective,
        finite=finite,
        grad_norm=grad_norm,
        lr=lr,
        reward=reward,
        weight_norms=norms.norms(),
        update_norms=norms.update_norms(),
    )


@torch.no_grad()
def evaluate_domains(backend, blocks: list[torch.Tensor], batch_size: int) -> np.ndarray:
    """Mean next-token loss per domain over fixed held-out blocks (one tensor of blocks per domain)."""
    model = backend.model
    was_training = model.training
    model.eval()
    out = []
    for domain_blocks in blocks:
        total, n = 0.0, 0
        for lo in range(0, len(domain_blocks), batch_size):
            ids = domain_blocks[lo : lo + batch_size]
            total += float(sequence_losses(backend.forward(ids), ids.to(backend.device)).sum())
            n += len(ids)
        out.append(total / max(n, 1))
    model.train(was_training)
    return np.array(out)
