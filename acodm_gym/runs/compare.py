"""The comparison job: every mixing method on one corpus, budget and seed list, then a report.

Methods run one after another (so their per-step times are comparable) into
``<out>/<method>-seed<s>/``; ``acodm-proxy`` is two runs: the proxy stage (AC-ODM on the small
proxy model, ``<out>/acodm-proxy-stage-seed<s>``) and the target stage (its frozen actor steering
the target model). ``report.md`` and the plots are written next to the run directories.

Sweeps resume instead of restarting: run again into the same ``out``, a run that finished with the
same config (apart from ``checkpoint.SAFE_KEYS``) is reused, and one that stopped is resumed from its
last checkpoint; ``overwrite=True`` (``--overwrite``) runs every method from scratch.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml

from ..config import Config, load_config
from . import checkpoint, plots, rundir
from .runner import prepare_config, run_dir_for, train

METHODS = ("natural", "uniform", "odm", "acodm", "acodm-proxy")


def proxy_config(cfg: Config) -> Config:
    """The proxy stage: AC-ODM on the smaller proxy model, same corpus and step budget."""
    return load_config(cfg, {"model": {"preset": cfg.run.proxy_model}, "agent": {"name": "acodm"}})


def run_method(
    cfg: Config, method: str, seed: int, out: Path, log: Callable[[str], None] = print, overwrite: bool = False
) -> Path:
    """Run one method for one seed (or reuse / resume an earlier attempt); returns the run directory holding its summary."""
    base = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=seed, out_dir=str(out)))
    if method != "acodm-proxy":
        run_cfg = load_config(base, {"agent": {"name": method}, "run": {"name": f"{method}-seed{seed}"}})
        return train_or_reuse(run_cfg, log, overwrite)
    stage = load_config(proxy_config(base), {"run": {"name": f"acodm-proxy-stage-seed{seed}"}})
    actor = train_or_reuse(stage, log, overwrite) / "agent.pt"
    target = load_config(
        base,
        {"agent": {"name": "frozen", "options": {"path": str(actor)}}, "run": {"name": f"acodm-proxy-seed{seed}"}},
    )
    return train_or_reuse(target, log, overwrite)


def train_or_reuse(cfg: Config, log: Callable[[str], None] = print, overwrite: bool = False) -> Path:
    """Reuse a finished run of this config, resume a stopped one, else train (refusing other work unless
    ``overwrite``); returns the run directory."""
    run_dir = run_dir_for(prepare_config(cfg))
    saved = run_dir / "config.yaml"
    same = saved.is_file() and not checkpoint.refused_changes(yaml.safe_load(saved.read_text()), prepare_config(cfg))
    if not overwrite and same:
        if (run_dir / rundir.SUMMARY).is_file():
            log(f"{run_dir} finished earlier with this config: reused")
            return run_dir
        try:
            checkpoint.find(run_dir, warn=lambda _: None)
        except checkpoint.ResumeError:
            pass  # stopped before its first checkpoint: start again
        else:
            return train(cfg, log=log, resume=run_dir).run_dir
    return train(cfg, log=log, overwrite=overwrite).run_dir


def compare(
    cfg: Config,
    seeds: Sequence[int],
    methods: Sequence[str] = METHODS,
    out: str | Path | None = None,
    log=print,
    overwrite: bool = False,
) -> Path:
    out = Path(out or Path(cfg.run.out_dir) / "compare")
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[str]] = {m: [] for m in methods}
    for seed in seeds:
        for method in methods:
            log(f"== {method} (seed {seed})")
            runs[method].append(str(run_method(cfg, method, seed, out, log, overwrite)))
            (out / "compare.json").write_text(json.dumps({"methods": list(methods), "seeds": list(seeds), "runs": runs}, indent=2))
    report(out)
    return out


def _load(run_dirs: list[str]) -> list[dict]:
    return [json.loads((Path(d) / "summary.json").read_text()) for d in run_dirs]


def steps_to_reach(summary: dict, target: float) -> int | None:
    """First evaluated step whose average validation perplexity is at or below ``target``."""
    for step, ppl in zip(summary["val_curve"]["steps"], summary["val_curve"]["avg_ppl"]):
        if ppl <= target:
            return step
    return None


def report(out: str | Path) -> Path:
    """Write ``report.md`` and the comparison plots from the run directories listed in compare.json."""
    out = Path(out)
    index = json.loads((out / "compare.json").read_text())
    summaries = {m: _load(d) for m, d in index["runs"].items() if d}
    domains = next(iter(summaries.values()))[0]["domains"]
    odm = summaries.get("odm")
    odm_best = {s["seed"]: min(s["val_curve"]["avg_ppl"]) for s in odm} if odm else {}

    header = ["method", "final avg val ppl", *domains, "steps to ODM best", "s/step"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    results: dict[str, dict] = {}
    for method, runs in summaries.items():
        final = np.array([s["final_val_ppl_avg"] for s in runs])
        per_domain = np.array([[s["final_val_ppl"][d] for d in domains] for s in runs]).mean(axis=0)
        reach = [steps_to_reach(s, odm_best[s["seed"]]) if s["seed"] in odm_best else None for s in runs]
        reached = [r for r in reach if r is not None]
        spread = f" ± {final.std():.2f}" if len(final) > 1 else ""
        reach_text = f"{np.mean(reached):.0f} ({len(reached)}/{len(reach)})" if reached else "not reached"
        row = [method, f"{final.mean():.2f}{spread}", *(f"{v:.1f}" for v in per_domain), reach_text, f"{np.mean([s['seconds_per_step'] for s in runs]):.3f}"]
        lines.append("| " + " | ".join(row) + " |")
        results[method] = {"seeds": [s["seed"] for s in runs], "final_val_ppl": final.tolist(), "steps_to_odm_best": reach}

    text = [
        "# Data-mixing comparison",
        "",
        f"Seeds: {index['seeds']}. Average and per-domain validation perplexity at the last step (mean over seeds, "
        "± standard deviation); steps to reach ODM's best average validation perplexity (mean over the seeds that "
        "reach it); wall-clock seconds per step (for acodm-proxy: the target stage).",
        "",
        *lines,
        "",
        "Plots: `val_ppl.png` (average validation perplexity over steps), `weights_<method>.png` (domain weights of "
        "each online method, first seed), `test_ppl.png` (per-domain test perplexity).",
    ]
    (out / "report.md").write_text("\n".join(text) + "\n")
    (out / "results.json").write_text(json.dumps({"methods": results}, indent=2))

    curves = {}
    for method, runs in summaries.items():
        steps = np.array(runs[0]["val_curve"]["steps"])
        curves[method] = (steps, np.mean([s["val_curve"]["avg_ppl"] for s in runs], axis=0))
    plots.plot_val_ppl(curves, out / "val_ppl.png")
    plots.plot_domain_ppl(
        {m: np.mean([[s["test_ppl"][d] for d in domains] for s in runs], axis=0) for m, runs in summaries.items()},
        domains,
        out / "test_ppl.png",
    )
    for method in summaries:
        if method in ("natural", "uniform"):
            continue
        mixture = json.loads((Path(index["runs"][method][0]) / "mixture.json").read_text())
        sched = mixture["schedule"]
        plots.plot_weights(np.array(sched["steps"]), np.array(sched["weights"]), domains, out / f"weights_{method}.png", f"Domain weights ({method})")
    return out / "report.md"
