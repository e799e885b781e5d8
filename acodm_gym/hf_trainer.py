"""Domain mixing with the Hugging Face ``transformers.Trainer``: a DomainMixer chooses the weights.

``MixingTrainer`` is a Trainer whose training batches come from the mixer's P_α::

    mixer = DomainMixer(corpus, model, "odm", total_steps=500, batch_size=16, seq_len=128)
    args = TrainingArguments("out", max_steps=500, per_device_train_batch_size=8, gradient_accumulation_steps=2)
    MixingTrainer(mixer, model=model, args=args).train()  # logs weight/<domain>, writes out/mixture.json

One optimiser step is one mixer step: the mixer draws a batch of
``per_device_train_batch_size × gradient_accumulation_steps`` rows (its ``batch_size``), the Trainer
trains on it as that many micro-batches, and after the optimiser step the mixer observes the
losses of all its rows at once. Observing per micro-batch would feed the agent states in which
the model has not changed (the weight-norm probes would read a zero update) and spend
``total_steps`` on micro-batches. The objective is the mixer's Σ_i α_i ℓ_i over the whole step
(``weight_losses=False``: the plain mean over its rows).

The training data loader is built here rather than by the Trainer: Accelerate's loader reads one
batch ahead, which would draw step t+1 from α before the mixer has seen step t's losses, and the
Trainer's column filter would drop the rows' loss weights. Single process only, with no data
loader workers (each worker would hold its own copy of the mixer, which would never learn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from transformers import Trainer, TrainerCallback

from .errors import ConfigError
from .lm.step import sequence_losses
from .mixing import DomainMixer

MIXTURE_FILE = "mixture.json"


class MixedBatches(IterableDataset):
    """Endless micro-batches ``{"input_ids", "loss_weights"}``: one P_α draw split into ``micro_batches`` parts.

    Rows keep the mixer's order (grouped by domain), so the step's losses concatenate back into the
    order ``DomainMixer.observe`` expects. Summed over the whole draw, ``loss_weights · ℓ`` is the
    step's objective: Σ_i α_i ℓ_i, or the rows' mean with ``weight_losses=False``.
    """

    def __init__(self, mixer: DomainMixer, micro_batches: int = 1, weight_losses: bool = True):
        batch_size = mixer.sampler.batch_size
        if batch_size % micro_batches:
            raise ConfigError(
                f"The mixer's batch_size={batch_size} does not split into {micro_batches} equal micro-batches."
            )
        self.mixer, self.micro_batches, self.weight_losses = mixer, micro_batches, weight_losses

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if get_worker_info() is not None:
            raise RuntimeError(
                "MixedBatches runs in a data loader worker, which holds a copy of the mixer that never sees the "
                "losses: load it in the main process (num_workers=0, TrainingArguments(dataloader_num_workers=0))."
            )
        while True:
            batch = self.mixer.next_batch()
            rows = len(batch.domain_ids)
            weights = self.mixer.loss_weights(batch) if self.weight_losses else torch.full((rows,), 1.0 / rows)
            for part in torch.arange(rows).chunk(self.micro_batches):
                yield {"input_ids": batch.input_ids[part], "loss_weights": weights[part]}


class MixerCallback(TrainerCallback):
    """Feeds the mixer each optimiser step's sequence losses after the update; exports α(t) at the end."""

    def __init__(self, mixer: DomainMixer):
        self.mixer = mixer
        self.step_losses: list[torch.Tensor] = []  # per-sequence losses of this step's micro-batches, in order

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step != self.mixer.step:
            raise RuntimeError(
                f"The Trainer starts at step {state.global_step} but the mixer is at step {self.mixer.step}: "
                "checkpoints hold the model, not the mixer's agent and sampler. Train from step 0 with a new DomainMixer."
            )

    def on_step_end(self, args, state, control, **kwargs):
        self.mixer.observe(torch.cat(self.step_losses))
        self.step_losses.clear()

    def on_train_end(self, args, state, control, **kwargs):
        self.mixer.export(Path(args.output_dir) / MIXTURE_FILE)


class MixingTrainer(Trainer):
    """A Trainer that trains on batches drawn from ``mixer`` and lets it observe every optimiser step.

    The mixer must read the Trainer's model. Each training log holds the step's objective as ``loss``
    and the latest weights as ``weight/<domain>``; the weight schedule goes to
    ``<output_dir>/mixture.json`` (reusable as agent 'static') when training ends. Batches that did
    not come from the mixer (evaluation) keep the Trainer's own loss.
    """

    loss_is_scaled_for_ga = True  # compute_loss returns this micro-batch's share of the step's objective

    def __init__(self, mixer: DomainMixer, *args: Any, weight_losses: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        a = self.args
        if a.dataloader_num_workers > 0:
            raise ConfigError(
                f"dataloader_num_workers={a.dataloader_num_workers}: each worker would draw from its own copy of the "
                "mixer, which never sees the losses. Set TrainingArguments(dataloader_num_workers=0)."
            )
        if a.world_size > 1:
            raise ConfigError(
                f"MixingTrainer runs in one process (world size {a.world_size}): every rank would draw the same "
                "batches from its own mixer. Launch a single process."
            )
        step_rows = a.train_batch_size * a.gradient_accumulation_steps
        if mixer.sampler.batch_size != step_rows:
            raise ConfigError(
                f"DomainMixer(batch_size={mixer.sampler.batch_size}) must equal the rows of one optimiser step, "
                f"per_device_train_batch_size × gradient_accumulation_steps = {step_rows}."
            )
        if a.max_steps != mixer.spec.total_steps:
            raise ConfigError(
                f"TrainingArguments(max_steps={a.max_steps}) must equal DomainMixer(total_steps={mixer.spec.total_steps}): "
                "the agent reads training progress as step / total_steps."
            )
        self.mixer = mixer
        self.train_dataset = MixedBatches(mixer, a.gradient_accumulation_steps, weight_losses)
        self.mixer_callback = MixerCallback(mixer)
        self.add_callback(self.mixer_callback)

    def get_train_dataloader(self) -> DataLoader:
        """A plain loader that draws each batch only when the Trainer asks for it (see the module docstring)."""
        return DataLoader(self.train_dataset, batch_size=None)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "loss_weights" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(input_ids=inputs["input_ids"])
        seq_loss = sequence_losses(outputs.logits, inputs["input_ids"])
        self.mixer_callback.step_losses.append(seq_loss.detach())
        loss = (seq_loss * inputs["loss_weights"]).sum()
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log
            logs.update({f"weight/{d}": float(w) for d, w in zip(self.mixer.spec.domains, self.mixer.weights)})
        super().log(logs, start_time)
