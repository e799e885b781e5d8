"""Reuse a finished run, resume a stopped one, else train: what makes sweeps and multi-episode protocols
resumable (``compare``, ``reference``, ``learn``) without a second copy of the rule. A finished run is reused
only when its config, code version and corpus match (``provenance``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import yaml

from ..config import Config
from ..data.corpus import build_corpus
from ..data.token_corpus import TokenCorpus
from ..envs.state import StepInfo
from ..errors import ResumeError
from . import checkpoint, provenance, rundir
from .runner import prepare_config, run_dir_for, train

# A finished run may differ from the sweep's config in these keys (beyond what resuming accepts) and still be
# reused: report() recomputes every score from the task's references.
REUSE_ALLOWED = ("task.references",)


def same_run(cfg: Config) -> tuple[Path, bool]:
    """This config's run directory, and whether a run there has this config (up to what reuse allows)."""
    prepared = prepare_config(cfg)
    run_dir = run_dir_for(prepared)
    saved = run_dir / "config.yaml"
    same = saved.is_file() and not checkpoint.refused_changes(
        yaml.safe_load(saved.read_text()), prepared, REUSE_ALLOWED
    )
    return run_dir, same


def why_stale(run_dir: Path, cfg: Config, log: Callable[[str], None] = print) -> list[str]:
    """Why the finished run in ``run_dir`` is not a result of this code on ``cfg``'s corpus (empty: it is)."""
    summary = json.loads((run_dir / rundir.SUMMARY).read_text())
    corpus = checkpoint.corpus_fingerprint(TokenCorpus(build_corpus(cfg.data, log), verify=False))
    return provenance.stale_reasons(summary, corpus["fingerprint"])


def finished(cfg: Config, keep_stale: bool = False) -> bool:
    run_dir, same = same_run(cfg)
    return same and (run_dir / rundir.SUMMARY).is_file() and (keep_stale or not why_stale(run_dir, cfg))


def train_or_reuse(
    cfg: Config,
    log: Callable[[str], None] = print,
    overwrite: bool = False,
    needs: Sequence[str] = (),
    keep_stale: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
) -> Path:
    """Reuse a finished run of this config, code and corpus, resume a stopped one, else train (refusing
    other work unless ``overwrite``); returns the run directory.

    :param needs: files the caller reads from the run (e.g. ``agent.pt``); a finished run without them (a
        run restored from its record) is trained again.
    :param keep_stale: reuse a finished run of this config made by other code or on another corpus (saying
        so) instead of training it again
    :param on_step: passed to ``train`` (not called for a reused run)
    """
    run_dir, same = same_run(cfg)
    if not overwrite and same:
        if (run_dir / rundir.SUMMARY).is_file():
            stale = why_stale(run_dir, cfg, log)
            if stale and not keep_stale:
                log(f"{run_dir} finished earlier with this config but is stale ({'; '.join(stale)}): trained again")
                return train(cfg, log=log, overwrite=True, on_step=on_step).run_dir
            if stale:
                log(f"{run_dir} is stale ({'; '.join(stale)}): kept (keep_stale), its report names its code version")
            missing = [n for n in needs if not (run_dir / n).is_file()]
            if not missing:
                log(f"{run_dir} finished earlier with this config: reused")
                return run_dir
            log(f"{run_dir} finished earlier but lacks {', '.join(missing)} (a restored record): trained again")
            return train(cfg, log=log, overwrite=True, on_step=on_step).run_dir
        try:
            ckpt = checkpoint.find(run_dir, warn=lambda _: None)
        except ResumeError:
            pass  # stopped before its first checkpoint: start again
        else:
            stale = provenance.stale_reasons({"code": ckpt.meta.get("code")})
            if not stale or keep_stale:
                return train(cfg, log=log, resume=run_dir, on_step=on_step).run_dir
            log(f"{run_dir} stopped at a checkpoint of other code ({'; '.join(stale)}): trained again from the start")
            overwrite = True
    return train(cfg, log=log, overwrite=overwrite, on_step=on_step).run_dir
