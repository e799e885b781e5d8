"""Checkpoints of a run, written atomically, and the checks a resumed run must pass.

A checkpoint holds everything the run needs to continue as if it had never stopped::

    RUN_DIR/checkpoints/
        step-000100/            one complete checkpoint
            meta.json           written last: format, step, world size, backend, ZeRO stage, the full
                                config, the corpus and model fingerprints, and every file's size
            state.pt            run level (rank 0): the env's state (step, tokens, training state,
                                sampler RNG and per-domain positions/epochs/counts, non-finite
                                counters, np_random), the runner's metrics so far, elapsed seconds,
                                metrics.csv's length, the next observation, the spaces' RNG
            agent.pt            the agent (Agent.save: networks, targets, optimisers, replay buffer
                                with its reward EMA, counters, RNG)
            model.pt            torch backend: model, optimiser, LR schedule
            deepspeed/state/    deepspeed backend: DeepSpeed's own checkpoint (model states; at ZeRO
                                1/2 one optimiser partition per rank) with the LR schedule
            rng-rank<r>.pt      each rank's python, numpy and torch (and CUDA) RNG states
        latest                  the name of the newest complete checkpoint

Writing (``save``, called by every rank): rank 0 makes ``step-000100.tmp-<pid>/``; every rank writes
its backend files and RNG; rank 0 writes the run-level files, fsyncs everything, writes
``meta.json``, renames the directory to ``step-000100`` (``os.replace``) and then replaces
``latest``. A crash or a full disk at any point leaves the previous checkpoint and ``latest``
untouched; a failed write removes the partial directory and raises ``CheckpointError``.

Reading (``find``): the checkpoint ``latest`` names, if it is complete (``meta.json`` present and
every file it lists there with the recorded size); else, with a warning, the newest complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from .. import __version__
from ..config import Config
from ..errors import CheckpointError, ResumeError
from ..lm import distributed
from ..rng import capture_rng, restore_rng, restore_space_rng, space_rng
from . import provenance, rundir

FORMAT = 1
DIR = rundir.CHECKPOINTS
LATEST = "latest"
_STEP = re.compile(r"^step-(\d+)$")
_TMP = re.compile(r"^(step-\d+|latest)\.tmp-\d+$")

# Config keys a resumed run may change: they decide what is shown, logged or kept, or how fast it
# runs, not what is computed (train.threads can change the last bits of float sums, see docs/checkpoints.md).
SAFE_KEYS = (
    "run.out_dir",
    "run.name",
    "run.progress",
    "run.tensorboard",
    "run.plots",
    "run.checkpoint_interval",
    "run.keep_checkpoints",
    "run.proxy_model",
    "train.threads",
    "train.dist_timeout",
    "data.cache_dir",
    "env.eval_interval",
    "agent.options.target_weights",  # only what the diagnostics' target_cosine is measured against
    "learn",  # which training episodes a learned method runs, not what one computes (its frozen runs record it)
    "proxy.episodes",  # likewise for proxy mode's stage (its target's frozen agent records it)
)


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / DIR


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def _steps(root: Path) -> list[tuple[int, Path]]:
    """Checkpoint directories under ``root`` (complete or not), newest step first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return sorted(found, reverse=True)


# -- fingerprints ---------------------------------------------------------------------------------
def corpus_fingerprint(corpus) -> dict[str, Any]:
    """What identifies a built corpus, free of where it lives: domains, token counts and checksums, tokenizer."""
    manifest = corpus.manifest
    content = {
        "vocab_size": manifest.get("vocab_size"),
        "dtype": manifest.get("dtype"),
        "eos_id": manifest.get("eos_id"),
        "domains": [
            {k: d.get(k) for k in ("name", "tokens", "documents", "bytes", "checksums")}
            for d in manifest.get("domains", [])
        ],
    }
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode())
    tokenizer = Path(corpus.root) / manifest.get("tokenizer", "tokenizer.json")
    if tokenizer.is_file():
        digest.update(tokenizer.read_bytes())
    inputs = (manifest.get("inputs") or {}).get("fingerprint")
    return {
        "root": str(corpus.root),
        "domains": list(corpus.domains),
        "fingerprint": digest.hexdigest()[:16],
        "inputs": inputs,
    }


def model_signature(model: torch.nn.Module) -> dict[str, Any]:
    """The model's class, parameter count and a hash of its parameter names and shapes."""
    shapes = [(name, list(p.shape)) for name, p in model.named_parameters()]
    return {
        "class": type(model).__name__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "shapes": hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16],
    }


# -- writing --------------------------------------------------------------------------------------
def _write_file(path: Path, write: Callable[[Path], None]) -> None:
    """Every file rank 0 writes into a checkpoint goes through here (tests simulate a full disk by patching it)."""
    write(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> dict[str, int]:
    """fsync every file and directory under ``root``; returns each file's size by relative path."""
    sizes = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            _fsync(path)
            sizes[str(path.relative_to(root))] = path.stat().st_size
        _fsync(Path(dirpath))
    return dict(sorted(sizes.items()))


def _agree(error: BaseException | None, step: int, tmp: Path, run_dir: Path, previous: int | None) -> None:
    """Raise ``CheckpointError`` on every rank if any rank failed (rank 0 removes the partial directory)."""
    failed = int(distributed.all_reduce_sum_(torch.tensor([1.0 if error is not None else 0.0], dtype=torch.float64))[0])
    if not failed:
        return
    if distributed.is_main_process():
        shutil.rmtree(tmp, ignore_errors=True)
    reason = "another rank failed to write its part (see that rank's error)" if error is None else rundir.reason(error)
    if previous is not None:
        kept = (
            f"the previous checkpoint ({checkpoints_dir(run_dir) / step_name(previous)}) is intact. Free disk space, then "
            f"continue from it with: acodm-gym train --resume {run_dir}"
        )
    else:  # nothing to resume from: saying --resume would only lead to "no checkpoint"
        kept = "no earlier checkpoint exists, so there is nothing to resume. Free disk space, then start the run again"
    raise CheckpointError(
        f"Writing the checkpoint of step {step} failed ({reason}); the run stops here and {kept}."
    ) from error


def save(
    run_dir: Path,
    cfg: Config,
    env,
    agent,
    runner_state: dict[str, Any],
    previous: int | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the checkpoint of ``env.t`` (a collective: every rank calls it) and prune old ones."""
    run_dir = Path(run_dir)
    step = int(env.t)
    root = checkpoints_dir(run_dir)
    main = distributed.is_main_process()
    pid = distributed.broadcast_int(os.getpid())  # every rank writes into rank 0's temporary directory
    final = root / step_name(step)
    tmp = root / f"{final.name}.tmp-{pid}"

    error: BaseException | None = None
    if main:
        try:
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        except OSError as exc:
            error = exc
    _agree(error, step, tmp, run_dir, previous)

    try:  # every rank: its backend files (DeepSpeed: its ZeRO partition) and its RNG
        env.backend.save_checkpoint(tmp)
        _write_file(tmp / f"rng-rank{distributed.rank()}.pt", lambda p: torch.save(capture_rng(), p))
    except Exception as exc:  # noqa: BLE001 - torch.save reports a full disk as RuntimeError
        error = exc
    _agree(error, step, tmp, run_dir, previous)

    if main:
        try:
            _commit(run_dir, cfg, env, agent, runner_state, tmp, final)
        except Exception as exc:  # noqa: BLE001 - torch.save reports a full disk as RuntimeError
            error = exc
    _agree(error, step, tmp, run_dir, previous)
    if main:
        prune(root, step, cfg.run.keep_checkpoints)
    distributed.barrier()
    return final


def _commit(run_dir: Path, cfg: Config, env, agent, runner_state: dict, tmp: Path, final: Path) -> None:
    """Rank 0: run-level files, fsync, meta.json, rename into place, then the ``latest`` pointer."""
    state = {
        "env": env.state_dict(),
        "runner": runner_state,
        "spaces": {"action": space_rng(env.action_space), "observation": space_rng(env.observation_space)},
    }
    _write_file(tmp / "state.pt", lambda p: torch.save(state, p))
    if agent is not None:
        _write_file(tmp / "agent.pt", agent.save)
    files = _sync_tree(tmp)
    meta = {
        "format": FORMAT,
        "step": int(env.t),
        "total_steps": cfg.train.total_steps,
        "agent": cfg.agent.name,
        "backend": cfg.train.backend,
        "zero_stage": getattr(env.backend, "zero_stage", None),
        "world_size": distributed.world_size(),
        "corpus": corpus_fingerprint(env.corpus),
        "model": model_signature(env.backend.model),
        "config": cfg.to_dict(),
        "csv_bytes": int(runner_state.get("csv_bytes", 0)),  # metrics.csv's length at this step
        "files": files,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "acodm_gym": __version__,
        "code": provenance.code_version(),  # a sweep does not continue a run of other code (reuse.train_or_reuse)
    }
    _write_file(tmp / "meta.json", lambda p: _write_synced(p, json.dumps(meta, indent=1)))
    _fsync(tmp)
    if final.exists():  # a checkpoint of an abandoned timeline (after a fallback to an older one)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(final.parent)
    pointer = final.parent / f"{LATEST}.tmp-{os.getpid()}"
    _write_file(pointer, lambda p: _write_synced(p, final.name + "\n"))
    os.replace(pointer, final.parent / LATEST)
    _fsync(final.parent)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def prune(root: Path, current: int, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints up to ``current``; remove later ones (an abandoned
    timeline) and temporary directories left by a crash."""
    kept = 0
    for step, path in _steps(root):
        if step <= current and kept < keep:
            kept += 1
            continue
        shutil.rmtree(path, ignore_errors=True)
    for path in root.iterdir():
        if _TMP.match(path.name) and not path.name.endswith(f".tmp-{os.getpid()}"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


# -- reading --------------------------------------------------------------------------------------
def verify(path: Path) -> dict[str, Any]:
    """``meta.json`` of a complete checkpoint; ``ValueError`` saying what is wrong otherwise."""
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise ValueError("no meta.json: its write never finished")
    try:
        meta = json.loads(meta_path.read_text())
        files = dict(meta["files"])
        int(meta["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"meta.json is unreadable ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint format {meta.get('format')}, this version reads format {FORMAT}")
    for rel, size in files.items():
        file = path / rel
        if not file.is_file():
            raise ValueError(f"{rel} is missing")
        if file.stat().st_size != size:
            raise ValueError(f"{rel} has {file.stat().st_size} bytes, {size} were written")
    return meta


def find(run_dir: str | Path, warn: Callable[[str], None] = print) -> Checkpoint:
    """The checkpoint to resume ``run_dir`` from: ``latest`` if complete, else the newest complete one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResumeError(f"Cannot resume {run_dir}: no such run directory.")
    root = checkpoints_dir(run_dir)
    candidates = _steps(root)
    if not candidates:
        raise ResumeError(
            f"Cannot resume {run_dir}: it holds no checkpoint ({root} is missing or empty). Checkpoints are written every "
            "run.checkpoint_interval steps (0: never); a run stopped before its first one must start again."
        )
    pointer = None
    try:
        pointer = (root / LATEST).read_text().strip()
    except OSError:
        pass
    ordered = sorted(candidates, key=lambda c: (c[1].name != pointer, -c[0]))
    if pointer is None or not any(p.name == pointer for _, p in candidates):
        warn(f"warning: {root / LATEST} is missing or names no checkpoint; using the newest complete one")
    for _, path in ordered:
        try:
            return Checkpoint(path, verify(path))
        except ValueError as exc:
            warn(f"warning: checkpoint {path} is incomplete or corrupt ({exc}); falling back to the previous one")
    raise ResumeError(
        f"Cannot resume {run_dir}: none of its checkpoints ({', '.join(p.name for _, p in candidates)}) is complete."
    )


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as dotted keys (``train.lr``); an empty section is one value."""
    if isinstance(d, dict) and (d or not prefix):
        out: dict[str, Any] = {}
        for key, value in d.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: d}


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two config dicts: key → (saved, current).

    A key the saved config lacks (one added to the project after it was written) counts as its
    default: new keys default to what the code did before them.
    """
    missing = object()
    a, b = flatten(saved), flatten(current)
    for key, value in flatten(Config().to_dict()).items():
        if not any(k == key or k.startswith(key + ".") or key.startswith(k + ".") for k in a):
            a[key] = value
    out = {}
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, missing), b.get(key, missing)
        if old != new:
            out[key] = (None if old is missing else old, None if new is missing else new)
    return out


def _covered(key: str, allowed: Iterable[str]) -> bool:
    return any(key == a or key.startswith(a + ".") for a in allowed)


def refused_changes(
    saved: dict[str, Any], cfg: Config, allow_changes: Sequence[str] = ()
) -> dict[str, tuple[Any, Any]]:
    """The changes from the ``saved`` config dict to ``cfg`` that would not continue the same run."""
    changes = config_changes(saved, cfg.to_dict())
    return {k: v for k, v in changes.items() if not _covered(k, SAFE_KEYS) and not _covered(k, allow_changes)}


def check_resumable(
    ckpt: Checkpoint, cfg: Config, allow_changes: Sequence[str] = (), run_dir: Path | None = None
) -> None:
    """Refuse, naming what differs, a config or world size that would not continue the same run."""
    where = run_dir or ckpt.path.parent.parent
    refused = refused_changes(ckpt.meta["config"], cfg, allow_changes)
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise ResumeError(
            f"Cannot resume {where} from {ckpt.path.name}: the config differs from the checkpoint's in {listed}. "
            "These keys change what the run computes, so it would not continue the same run. Undo the change, or accept it "
            f"knowingly with --allow-change {','.join(refused)} (train(..., allow_changes=[...])). Keys that may change on resume: {', '.join(SAFE_KEYS)}."
        )
    world = distributed.world_size()
    if int(ckpt.meta.get("world_size", 1)) != world:
        raise ResumeError(
            f"Cannot resume {where} from {ckpt.path.name}: it was written by {ckpt.meta['world_size']} ranks and this run has "
            f"{world}. The DeepSpeed optimiser state is partitioned per rank: launch {ckpt.meta['world_size']} ranks "
            f"(torchrun --nproc_per_node {ckpt.meta['world_size']} ...)."
        )


def _why(exc: BaseException) -> str:
    """A load error in a few words (torch's advice to retry with ``weights_only=False`` cannot mend a damaged file)."""
    text = str(exc)
    return type(exc).__name__ if "weights_only" in text else f"{type(exc).__name__}: {text[:300]}"


def _load(path: Path, what: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a damaged file
        raise ResumeError(
            f"{path} ({what}) is unreadable although its size is right ({_why(exc)}): the file is damaged. "
            f"Delete {path.parent} to resume from the checkpoint before it."
        ) from None


def restore(ckpt: Checkpoint, env, agent) -> dict[str, Any]:
    """Load ``ckpt`` into a freshly reset ``env`` (and, on rank 0, ``agent``); returns the runner's state.

    The global RNG states are restored last: building the agent and the model re-seeds them.
    """
    corpus = corpus_fingerprint(env.corpus)
    saved = ckpt.meta["corpus"]
    if corpus["fingerprint"] != saved["fingerprint"]:
        rebuilt = saved["root"] == corpus["root"] and saved.get("inputs") not in (None, corpus["inputs"])
        raise ResumeError(
            f"{ckpt.path} was written for another corpus ({saved['root']}: domains {saved['domains']}, fingerprint "
            f"{saved['fingerprint']}); this run reads {corpus['root']} (domains {corpus['domains']}, fingerprint "
            f"{corpus['fingerprint']})"
            + (": the corpus' input files changed since, so it was rebuilt" if rebuilt else "")
            + ". A checkpoint only continues on the corpus it was trained on"
            + (": restore its input files." if rebuilt else ".")
        )
    env.corpus.verify()  # every token file against its checksum, whatever the corpus' size
    model = model_signature(env.backend.model)
    if model != ckpt.meta["model"]:
        raise ResumeError(
            f"{ckpt.path} was written for another model ({ckpt.meta['model']}); this run builds {model}. "
            "A checkpoint only continues the model it was trained on: resume with its model.* settings."
        )
    distributed.barrier()
    state = _load(ckpt.path / "state.pt", "run state")
    env.load_state_dict(state["env"])
    try:
        env.backend.load_checkpoint(ckpt.path)
    except Exception as exc:  # noqa: BLE001 - torch raises several unrelated types for a damaged file
        files = ", ".join(str(ckpt.path / f) for f in env.backend.checkpoint_files) or str(ckpt.path / "deepspeed")
        raise ResumeError(
            f"The model/optimiser state {files} does not load although its size is right ({_why(exc)}). "
            f"Delete {ckpt.path} to resume from the checkpoint before it."
        ) from None
    if agent is not None:
        try:
            agent.load(ckpt.path / "agent.pt")
        except ValueError as exc:
            raise ResumeError(f"{exc} Delete {ckpt.path} to resume from the checkpoint before it.") from None
    restore_space_rng(env.action_space, state["spaces"]["action"])
    restore_space_rng(env.observation_space, state["spaces"]["observation"])
    restore_rng(_load(ckpt.path / f"rng-rank{distributed.rank()}.pt", "RNG states"))
    return state["runner"]


def check_metrics(run_dir: Path, size: int, step: int) -> None:
    """metrics.csv must hold at least the ``size`` bytes it had at the checkpoint, ending with ``step``'s row."""
    path = Path(run_dir) / "metrics.csv"
    have = path.stat().st_size if path.is_file() else -1
    if have < size:
        raise ResumeError(
            f"{path} has {max(have, 0)} bytes but had {size} at the checkpoint of step {step}: its rows are lost, so the "
            "resumed run's metrics would have a gap. Restore the file, or start the run again."
        )
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 65536))
        tail = fh.read(size - max(0, size - 65536)).decode("utf-8", errors="replace")
    last = tail.rstrip("\r\n").rsplit("\n", 1)[-1].split(",", 1)[0]
    if step and last != str(step):
        raise ResumeError(
            f"{path} does not end with step {step}'s row at the checkpoint's length ({size} bytes): was it edited?"
        )
