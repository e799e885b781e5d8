"""Multi-process lockstep: every rank steps the same environment and sees the same numbers.

A multi-rank run (``torchrun --nproc_per_node N train_env.py train train.backend=deepspeed`` or
``deepspeed --num_gpus N train_env.py train train.backend=deepspeed``) keeps one environment per
rank, all in the same state:

* the run seed is rank 0's, so every rank builds the same model and the same seeded sampler;
* every rank samples the same GLOBAL batch (so the sampler's state stays identical everywhere) and
  trains on its own contiguous slice of rows (``shard_rows``);
* the per-domain loss sums, the objective and the alignment probe's statistics are summed over
  ranks (``all_reduce_sum_``) before anything is derived from them, so the observation, the
  objective coefficients α_i / n_i (global n_i) and the reward W (of the GLOBAL per-domain
  gradients, cross-rank terms included: S = Σ_j g_j then k numbers, or the per-domain gradients
  or sketches for a Gram matrix; lm/probes.py) are those of the global batch;
* only rank 0 runs the agent; its domain weights are broadcast (``from_main``) inside
  ``PretrainEnv.step``, so the other ranks may pass ``None`` as their action.

Every helper here is a no-op in a single process (no process group, or a world of one), so the
single-process torch backend never pays for any of it. Nothing here imports DeepSpeed.
"""

from __future__ import annotations

import atexit
import os
import socket
from datetime import timedelta
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from ..config import TrainConfig
from ..errors import ConfigError, InputError, RankLostError, RunFailure
from .deepspeed_import import import_deepspeed
from .watchdog import Watchdog

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_watchdog: Watchdog | None = None  # multi-rank: started with the process group (lm/watchdog.py)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: from the process group once it exists, else from the launcher's RANK."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0: the one that runs the agent and writes the run directory, logs and plots."""
    return rank() == 0


def local_world_size() -> int:
    """Ranks on this machine (torchrun: LOCAL_WORLD_SIZE; the deepspeed launcher: LOCAL_SIZE)."""
    for var in ("LOCAL_WORLD_SIZE", "LOCAL_SIZE"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    return max(1, world_size())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shard_rows(n_rows: int, rank_: int, world: int) -> tuple[int, int]:
    """This rank's contiguous slice [first, last) of a global batch of ``n_rows`` rows."""
    if n_rows % world:
        raise ConfigError(
            f"The global batch of {n_rows} rows cannot be split evenly over {world} ranks: set train.batch_size "
            f"to a multiple of the world size {world}."
        )
    per = n_rows // world
    return rank_ * per, (rank_ + 1) * per


def check_launch(cfg: TrainConfig) -> None:
    """Refuse a multi-process launch of the single-process torch backend (every rank would train alone)."""
    if cfg.backend == "torch" and world_size() > 1:
        raise ConfigError(
            f"This process was launched as one of {world_size()} ranks (WORLD_SIZE={world_size()}), but "
            "train.backend=torch trains in a single process: add train.backend=deepspeed, or launch one process."
        )


def prepare_environment(cfg: TrainConfig) -> None:
    """Launch variables and threads for a DeepSpeed process, before DeepSpeed is imported.

    * DS_ACCELERATOR=cpu when training on CPU (DeepSpeed picks its accelerator once, at import).
    * A process started without a launcher becomes rank 0 of a world of one (RANK, WORLD_SIZE,
      LOCAL_RANK, MASTER_ADDR and a free MASTER_PORT); without them DeepSpeed would try MPI.
    * Threads: ``train.threads`` if set; else, when several ranks share this machine and the launcher
      left OMP_NUM_THREADS unset (the deepspeed launcher does), cores / local ranks per rank.
    """
    if str(cfg.device).startswith("cpu"):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if not all(v in os.environ for v in LAUNCH_VARS):
        if any(v in os.environ for v in ("RANK", "WORLD_SIZE")) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            missing = [v for v in LAUNCH_VARS if v not in os.environ]
            raise ConfigError(
                f"Incomplete launch environment: {', '.join(missing)} unset; start the ranks with torchrun or deepspeed."
            )
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    if not cfg.threads and "OMP_NUM_THREADS" not in os.environ and local_world_size() > 1:
        torch.set_num_threads(threads_per_rank())


def threads_per_rank() -> int:
    """The cores this process may use, shared among the ranks on this machine (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // local_world_size())


def setup(cfg: TrainConfig) -> None:
    """What ``PretrainEnv`` calls first: refuse a multi-rank torch backend; start DeepSpeed's process group."""
    check_launch(cfg)
    if cfg.backend == "deepspeed":
        init_process_group(cfg)


def init_process_group(cfg: TrainConfig) -> None:
    """Start (once per process) the process group DeepSpeed trains in, with ``train.dist_timeout``.

    The timeout bounds the world group's collectives; with more than one rank a watchdog
    (lm/watchdog.py) stops this rank, with one line, once another has been silent that long, whatever
    group it waits in. CPU uses gloo, CUDA nccl (the accelerator's).
    """
    global _watchdog
    if dist.is_available() and dist.is_initialized():
        return
    prepare_environment(cfg)
    deepspeed = import_deepspeed(cfg.device)
    disable_shm_comm()
    deepspeed.init_distributed(
        timeout=timedelta(seconds=float(cfg.dist_timeout)), auto_mpi_discovery=False, verbose=False
    )
    atexit.register(shutdown)
    if world_size() > 1:
        _watchdog = Watchdog(cfg.dist_timeout, rank(), world_size()).start()


def limit_timeouts(groups: list, cfg: TrainConfig) -> None:
    """Give ``groups`` ``train.dist_timeout``: DeepSpeed's data-parallel group is a ``new_group`` clone of
    the world made with torch's default timeout (30 min on gloo, 10 on nccl), not the world's."""
    from torch.distributed.distributed_c10d import _set_pg_timeout  # torch's setter for an existing group

    for group in {id(g): g for g in groups if g is not None}.values():
        _set_pg_timeout(timedelta(seconds=float(cfg.dist_timeout)), group)


def set_resume_hint(hint: Callable[[], str]) -> None:
    """What the one line about a lost rank ends with (the runner: the last checkpoint and ``--resume``)."""
    if _watchdog is not None:
        _watchdog.hint = hint


def raise_if_rank_lost(exc: BaseException) -> None:
    """After ``exc`` (e.g. a collective's timeout): ``RankLostError`` naming the rank that went silent, if one did."""
    if _watchdog is None or isinstance(exc, (RunFailure, InputError)) or not isinstance(exc, RuntimeError):
        return
    lost = _watchdog.lost_ranks()
    if lost and _watchdog.claim():
        raise RankLostError(_watchdog.message(lost, "stopped answering")) from None


def shutdown() -> None:
    """Tear the process group down before the interpreter exits (registered at ``atexit``).

    Left to the interpreter's teardown, gloo's threads are destroyed in no particular order and a
    finished rank can abort with "terminate called without an active exception" (SIGABRT), which
    torchrun reports as a failed run (measured: about one in three two-rank test launches). Not after
    a lost rank: tearing down a group whose peer is gone can block.
    """
    if _watchdog is not None and _watchdog.reported.is_set():
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def disable_shm_comm() -> None:
    """Do not build DeepSpeed's CPU shared-memory all-reduce op.

    DeepSpeed JIT-compiles it (about 45 s on 2 cores, then cached) the first time a CPU process
    group starts, although it serves only ``inference_all_reduce`` (tensor-parallel inference);
    training collectives go through torch.distributed (gloo). Set ACODM_DS_SHM_COMM=1 to keep it.
    """
    if os.environ.get("ACODM_DS_SHM_COMM") == "1":
        return
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def _comm_device() -> torch.device:
    """Where collective buffers must live: CUDA for nccl, CPU otherwise."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks, in place (no-op in a single process); returns it."""
    if not is_distributed():
        return tensor
    device = _comm_device()
    if tensor.device == device:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    else:
        buf = tensor.to(device)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        tensor.copy_(buf)
    return tensor


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def broadcast_array(value: np.ndarray | None, shape: tuple[int, ...], src: int = 0) -> np.ndarray:
    """Rank ``src``'s float64 array on every rank (other ranks may pass None)."""
    if not is_distributed():
        return np.asarray(value, dtype=np.float64)
    buf = torch.zeros(shape, dtype=torch.float64, device=_comm_device())
    if dist.get_rank() == src:
        buf.copy_(torch.as_tensor(np.asarray(value, dtype=np.float64)))
    dist.broadcast(buf, src=src)
    return buf.cpu().numpy()


def broadcast_int(value: int, src: int = 0) -> int:
    """Rank ``src``'s integer on every rank (a seed, a step count)."""
    if not is_distributed():
        return int(value)
    return int(broadcast_array(np.array([float(value)]), (1,), src)[0])


def from_main(make: Callable[[], np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """``make()`` evaluated on rank 0 only and its result broadcast to every rank.

    If ``make`` raises on rank 0 (an invalid action), rank 0 first broadcasts NaN so the other ranks
    raise too instead of waiting in the next collective until the timeout.
    """
    if not is_distributed():
        return make()
    if dist.get_rank() == 0:
        try:
            value = np.asarray(make(), dtype=np.float64)
        except BaseException:
            broadcast_array(np.full(shape, np.nan), shape)
            raise
        return broadcast_array(value, shape)
    value = broadcast_array(None, shape)
    if np.isnan(value).any():
        raise RuntimeError("Rank 0 failed to produce the value every rank waits for (see rank 0's error).")
    return value
