"""The DeepSpeed training backend: ``train_step``'s forward/backward/step over a DeepSpeed engine.

Select it with ``train.backend: deepspeed`` and a DeepSpeed JSON config, ``train.deepspeed_config``
(a path, or a name under configs/deepspeed/: ``zero0``, ``zero1``, ``zero2``). It implements the
same backend interface as ``TorchBackend`` (``forward``, ``backward``, ``grad_norm``,
``optimizer_step``, ``lr``, ``device``, ``model``, ``rank``, ``world_size``, ``state_dict``), so the
step logic lives once, in ``train_step``, and the two backends cannot drift.

What the acodm config decides and the JSON may not (they are written into the engine's config):

* the optimiser and schedule: a client ``torch.optim.AdamW`` and the warm-up + cosine LambdaLR of
  ``lm.step.build_optimizer`` (a JSON ``optimizer`` / ``scheduler`` section is refused; DeepSpeed's
  FusedAdam/CPUAdam would JIT-compile for a minute and differ from the reference);
* batch sizes: the env's global batch is ``train.batch_size`` rows, split evenly over ranks, and a
  rank's share is processed in micro-batches of ``train.micro_batch_size`` (one optimiser step);
* gradient clipping: ``train.grad_clip``; ``bf16.enabled: "auto"`` means bf16 on CUDA, fp32 on CPU.

The JSON holds what is DeepSpeed's own: the ZeRO stage and its buckets, communication options.

Semantics kept equal to the torch backend (tested against it):

* DeepSpeed averages gradients over ranks; ``train_step`` backpropagates world_size × the local
  share of the global objective, so the update descends exactly Σ_i α_i ℓ_i of the global batch.
* ``grad_norm`` is the global norm before clipping, identical on every rank: at stage 0 it is
  ``clip_grad_norm_`` over the all-reduced gradients (and clips them, as the torch backend does);
  at stages 1–2 the ZeRO optimiser's own norm over the partitioned gradients (a collective), which
  it then clips with in ``step``.
* A non-finite loss or norm skips the update on every rank (the decision is made from all-reduced
  numbers) and the LR schedule advances either way.

ZeRO stage 3 is refused: it partitions every weight, and the probes read whole weights (norms,
Gram matrix) and the gradient hooks' weight-shaped buffers; see ``SUPPORTED_STAGES``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import CONFIG_DIR, TrainConfig
from ..errors import ConfigError, ResumeError
from . import distributed
from .deepspeed_import import import_deepspeed
from .step import build_optimizer

SUPPORTED_STAGES = (0, 1, 2)
# Keys the backend writes from the acodm config; a JSON value for them is overridden (and logged).
OWNED_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping")


def resolve_deepspeed_config(name: str | Path) -> Path:
    """A JSON path as given (or relative to the package's configs/), else a name under configs/deepspeed/."""
    path = Path(name).expanduser()
    candidates = [path, CONFIG_DIR / path, CONFIG_DIR / "deepspeed" / path, CONFIG_DIR / "deepspeed" / f"{name}.json"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in (CONFIG_DIR / "deepspeed").glob("*.json"))
    raise ConfigError(
        f"DeepSpeed config '{name}' not found: give a JSON path or one of {', '.join(names)} (configs/deepspeed/)."
    )


def load_deepspeed_config(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(source, dict):
        return json.loads(json.dumps(source))  # a deep copy
    path = resolve_deepspeed_config(source)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"DeepSpeed config {path} is not valid JSON: {exc}") from None


def engine_config(cfg: TrainConfig, world: int, on_cuda: bool) -> dict[str, Any]:
    """The DeepSpeed config the engine gets: the JSON plus what the acodm config owns."""
    ds = load_deepspeed_config(cfg.deepspeed_config)
    for section in ("optimizer", "scheduler"):
        if section in ds:
            raise ConfigError(
                f"train.deepspeed_config sets '{section}': remove it; the DeepSpeed backend uses the same AdamW and "
                "warm-up + cosine schedule as the torch backend (train.lr, train.betas, train.weight_decay, train.warmup_steps)."
            )
    if ds.get("fp16", {}).get("enabled") in (True, "true", "auto"):
        raise ConfigError('train.deepspeed_config enables fp16: use bf16 ("bf16": {"enabled": "auto"}) instead.')
    stage = int(ds.get("zero_optimization", {}).get("stage", 0))
    if stage not in SUPPORTED_STAGES:
        raise ConfigError(
            f"train.deepspeed_config uses ZeRO stage {stage}; the DeepSpeed backend supports stages "
            f"{', '.join(map(str, SUPPORTED_STAGES))}. Stage 3 partitions every weight, and the environment's probes "
            "(weight norms, the per-domain gradient Gram matrix) read whole weights: use zero2 (configs/deepspeed/zero2.json)."
        )
    local = cfg.batch_size // world
    micro = min(cfg.micro_batch_size or local, local)
    n_micro = math.ceil(local / micro)
    ds.update(
        train_micro_batch_size_per_gpu=micro,
        gradient_accumulation_steps=n_micro,
        train_batch_size=micro * n_micro * world,
        # Stage 0: the backend clips with torch's clip_grad_norm_ (as TorchBackend); ZeRO 1/2 clip the partitions.
        gradient_clipping=float(cfg.grad_clip or 0.0) if stage > 0 else 0.0,
    )
    bf16 = ds.setdefault("bf16", {"enabled": "auto"})
    if bf16.get("enabled", False) == "auto":
        bf16["enabled"] = on_cuda
    if bf16.get("enabled") and not on_cuda:
        raise ConfigError(
            'bf16 training needs CUDA; on CPU set "bf16": {"enabled": "auto"} (fp32) in train.deepspeed_config.'
        )
    ds.setdefault("steps_per_print", None)
    ds.setdefault("zero_allow_untested_optimizer", True)
    return ds


class DeepSpeedBackend:
    """A DeepSpeed engine (ZeRO 0–2) behind the backend interface of ``lm.step``."""

    def __init__(self, model: nn.Module, cfg: TrainConfig):
        distributed.prepare_environment(cfg)
        deepspeed = import_deepspeed(cfg.device)
        distributed.init_process_group(cfg)
        from deepspeed.accelerator import get_accelerator

        self.rank = distributed.rank()
        self.world_size = distributed.world_size()
        distributed.shard_rows(cfg.batch_size, self.rank, self.world_size)  # raises unless the batch splits evenly
        accel = get_accelerator()
        on_cuda = accel.device_name() == "cuda"
        self.device = (
            torch.device(accel.device_name(int(os.environ.get("LOCAL_RANK", "0")))) if on_cuda else torch.device("cpu")
        )
        if on_cuda:
            accel.set_device(self.device.index)
        self.config = engine_config(cfg, self.world_size, on_cuda)
        self.zero_stage = int(self.config.get("zero_optimization", {}).get("stage", 0))
        self.grad_clip = cfg.grad_clip
        model = model.to(self.device)
        self.optimizer, self.scheduler = build_optimizer(model, cfg)
        with warnings.catch_warnings():  # its lazy imports (torch.compile, mkldnn) touch deprecated torch.jit APIs
            warnings.simplefilter("ignore", DeprecationWarning)
            self.engine, *_ = deepspeed.initialize(
                model=model, optimizer=self.optimizer, config=self.config, dist_init_required=False
            )
        distributed.limit_timeouts([self.engine.data_parallel_group, self.engine.seq_data_parallel_group], cfg)
        self.model = self.engine.module
        if self.zero_stage > 0 and not all(
            hasattr(self.engine.optimizer, a) for a in ("scaled_global_norm", "check_grad_overflow")
        ):
            raise ConfigError(  # e.g. a precision mix DeepSpeed serves with another optimiser wrapper
                f"DeepSpeed wrapped the optimiser in {type(self.engine.optimizer).__name__}, not its ZeRO 1/2 optimiser: this "
                "backend reads the gradient norm and skips steps through the latter. Use zero0, or fp32/bf16 without extra precision options."
            )

    # -- the backend interface of lm.step ------------------------------------------------------
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.engine(input_ids=input_ids.to(self.device)).logits

    def backward(self, loss: torch.Tensor, last: bool = True) -> None:
        """Accumulate this micro-batch's gradients; ``last``: the step's final micro-batch (reduce now)."""
        self.engine.set_gradient_accumulation_boundary(last)
        self.engine.backward(loss, scale_wrt_gas=False)

    def grad_norm(self) -> float:
        """Global gradient norm before clipping, the same on every rank; non-finite if any gradient is."""
        if self.zero_stage == 0:
            params = [p for p in self.model.parameters() if p.grad is not None]
            clip = self.grad_clip if self.grad_clip and self.grad_clip > 0 else float("inf")
            return float(torch.nn.utils.clip_grad_norm_(params, clip))
        opt = self.engine.optimizer
        norm = float(opt.scaled_global_norm()) / float(getattr(opt, "loss_scale", 1.0))
        return norm if norm >= 0 else float("inf")  # ZeRO reports a non-finite norm as -1

    def optimizer_step(self, apply: bool) -> None:
        """Apply the update (or drop it, on every rank alike), then advance the LR schedule either way."""
        if self.zero_stage == 0 and not apply:
            self.engine.zero_grad()
        elif apply:
            self.engine.step()
            if not self.engine.was_step_applied():
                raise RuntimeError(
                    "DeepSpeed skipped an update the backend found finite: its overflow check and train_step disagree."
                )
        else:
            self._skip_zero_step()
        self.scheduler.step()

    def _skip_zero_step(self) -> None:
        """Drop a ZeRO 1/2 update through the optimiser's own overflow path (frees and resets its gradients).

        It takes that path by itself on a non-finite norm; forcing it also covers a non-finite loss
        whose gradients happen to be finite, so the decision stays train_step's.
        """
        opt = self.engine.optimizer
        check = opt.check_grad_overflow
        opt.check_grad_overflow = True
        opt.check_overflow = lambda *args, **kwargs: setattr(opt, "overflow", True)
        try:
            self.engine.step()
        finally:
            del opt.check_overflow
            opt.check_grad_overflow = check
        if self.engine.was_step_applied():  # pragma: no cover - would mean DeepSpeed's internals changed
            raise RuntimeError("DeepSpeed applied an update the backend asked it to skip.")

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        """Model, optimiser and schedule. At ZeRO 1/2 the optimiser part is this rank's partition:
        save one state per rank and load it into the same rank of the same world size and stage."""
        return {
            "model": self.model.state_dict(),
            "optimizer": _detached(self.engine.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "zero_stage": self.zero_stage,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        where = (state.get("zero_stage"), state.get("rank"), state.get("world_size"))
        if where != (self.zero_stage, self.rank, self.world_size):
            raise ResumeError(
                f"This state was saved by rank {where[1]} of {where[2]} at ZeRO stage {where[0]}; this backend is rank "
                f"{self.rank} of {self.world_size} at stage {self.zero_stage}."
            )
        self.model.load_state_dict(state["model"])
        if self.zero_stage == 0:
            self.engine.optimizer.load_state_dict(state["optimizer"])
        else:  # the fp32 partitions are rebuilt from the (fp32 or bf16) weights just loaded
            self.engine.optimizer.load_state_dict([state["optimizer"]], load_optimizer_states=True)
        self.scheduler.load_state_dict(state["scheduler"])

    # A run's checkpoint (runs/checkpoint.py): every rank calls these with the same directory.
    checkpoint_files = ()  # DeepSpeed names its own files under deepspeed/

    def save_checkpoint(self, directory: Path) -> None:
        """DeepSpeed's own format under ``directory/deepspeed/``: the model states (rank 0) and, at
        ZeRO 1/2, one optimiser partition per rank; the LR schedule travels as client state. A
        collective: every rank must call it."""
        self.engine.save_checkpoint(
            str(Path(directory) / "deepspeed"),
            tag=CHECKPOINT_TAG,
            client_state={"scheduler": self.scheduler.state_dict()},
            save_latest=False,
        )

    def load_checkpoint(self, directory: Path) -> None:
        """Load what ``save_checkpoint`` wrote, into the same rank of the same world size and ZeRO stage."""
        path, client = self.engine.load_checkpoint(
            str(Path(directory) / "deepspeed"),
            tag=CHECKPOINT_TAG,
            load_optimizer_states=True,
            load_lr_scheduler_states=False,
        )
        if path is None or "scheduler" not in (client or {}):
            raise ResumeError(
                f"{Path(directory) / 'deepspeed'} holds no DeepSpeed checkpoint '{CHECKPOINT_TAG}' written by this backend."
            )
        self.scheduler.load_state_dict(client["scheduler"])


CHECKPOINT_TAG = "state"


def _detached(obj: Any) -> Any:
    """``obj`` with every tensor detached (ZeRO hands out its fp32 partitions as non-leaf views)."""
    if torch.is_tensor(obj):
        return obj.detach()
    if isinstance(obj, dict):
        return {k: _detached(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detached(v) for v in obj)
    return obj
