"""Per-step metrics: one CSV row per step (fixed columns) and TensorBoard scalars.

The agent's diagnostics (``agents/diagnostics.py``) are columns ``diag/<name>``, empty where the
agent gave none that step; every other statistic of ``update()`` goes to TensorBoard only. Without
reward computation (``env.compute_reward: false``: static agents, frozen actors, ODM) the reward and
diagnostics columns are left out rather than logged as a constant 0 or always empty.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..agents.diagnostics import DIAGNOSTICS
from ..envs.state import StepInfo
from .checkpoint import flatten

PER_DOMAIN = ("weight", "loss", "reward", "epochs", "val_ppl")


class MetricsLogger:
    def __init__(
        self,
        run_dir: Path,
        domains: list[str],
        tensorboard: bool = True,
        resume_from: tuple[int, int] | None = None,
        rewards: bool = True,
        config: Mapping[str, Any] | None = None,
    ):
        """``resume_from`` (bytes, step): continue a resumed run's CSV, cut back to its first ``bytes``
        (its length at the checkpoint of ``step``), and hide TensorBoard events after ``step``.
        ``rewards``: whether the env computes rewards (else no ``reward`` columns). ``config``: the run's
        config as a dict, written to TensorBoard as hparams when the run starts."""
        self.domains = domains
        self.rewards = rewards
        reward = ["reward"] if rewards else []
        self.columns = [
            "step",
            "tokens",
            "objective",
            "lr",
            "grad_norm",
            *reward,
            "skipped",
            "val_ppl_avg",
            "val_metric",
        ]
        self.columns += [f"{part}/{d}" for part in PER_DOMAIN if rewards or part != "reward" for d in domains]
        self.columns += [f"diag/{name}" for name in DIAGNOSTICS] if rewards else []
        if resume_from is None:
            self._fh = open(run_dir / "metrics.csv", "w", newline="")
            self._csv = csv.DictWriter(self._fh, fieldnames=self.columns)
            self._csv.writeheader()
        else:
            with open(run_dir / "metrics.csv", "r+b") as fh:
                fh.truncate(resume_from[0])
            self._fh = open(run_dir / "metrics.csv", "a", newline="")
            self._csv = csv.DictWriter(self._fh, fieldnames=self.columns)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_from[1] + 1 if resume_from is not None else None
            self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)
            if config is not None and resume_from is None:
                self._log_hparams(config)

    def _log_hparams(self, config: Mapping[str, Any]) -> None:
        """The config as TensorBoard hparams, one per dotted key (lists and nulls as JSON text), so runs can be
        compared by their settings; the task metric and the objective are the hparams' metrics."""
        from torch.utils.tensorboard.summary import hparams

        flat = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in flatten(config).items()}
        for summary in hparams(flat, {"val_metric": None, "objective": None}):
            self._tb._get_file_writer().add_summary(summary)

    def flush(self) -> int:
        """Write everything logged so far to disk; returns the CSV's length in bytes."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if self._tb is not None:
            self._tb.flush()
        return os.fstat(self._fh.fileno()).st_size

    def log(self, info: StepInfo, reward: float, agent_stats: dict[str, float]) -> dict[str, Any]:
        row: dict[str, Any] = {
            "step": info["step"],
            "tokens": info["tokens"],
            "objective": info["objective"],
            "lr": info["lr"],
            "grad_norm": info["grad_norm"],
            "reward": reward,
            "skipped": int(info["skipped"]),
            "val_ppl_avg": float(np.mean(info["val_ppl"])) if "val_ppl" in info else "",
            "val_metric": info.get("val_metric", ""),  # the task metric: geometric mean over task.eval_domains
        }
        sources = {
            "weight": info["domain_weights"],
            "loss": info["domain_losses"],
            "reward": info["vector_reward"],
            "epochs": info["epochs"],
            "val_ppl": info.get("val_ppl"),
        }
        if not self.rewards:
            del row["reward"], sources["reward"]
        for part, values in sources.items():
            for d, v in zip(self.domains, values if values is not None else [""] * len(self.domains)):
                row[f"{part}/{d}"] = v if v == "" else float(v)
        for name in DIAGNOSTICS if self.rewards else ():
            row[f"diag/{name}"] = float(agent_stats[name]) if name in agent_stats else ""
        self._csv.writerow(row)
        if self._tb is not None:
            step = info["step"]
            for key, value in row.items():
                if key != "step" and not key.startswith("diag/") and value != "" and math.isfinite(float(value)):
                    self._tb.add_scalar(key, float(value), step)
            for key, value in agent_stats.items():
                self._tb.add_scalar(f"agent/{key}", float(value), step)
        return row

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: Path) -> dict[str, np.ndarray]:
    """A metrics CSV as columns of floats (NaN where a value was not logged that step)."""
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    return {key: np.array([float(r[key]) if r[key] != "" else np.nan for r in rows]) for key in rows[0]}
