"""Reference scores of a benchmark task: natural, uniform and the best static mixture a budgeted search finds.

``acodm-gym reference --task NAME`` (``references(task, ...)``) works in four stages, on the
validation split only, one run after another into ``<out>/``:

1. **Random search**: ``random_runs`` short static runs (``search_steps`` steps, seed 0) of mixtures
   drawn from Dirichlet distributions around uniform (half with concentration 1 per domain, broad;
   half with 4, near uniform), plus natural and uniform at the same budget.
2. **Regression refinement** (RegMix-style): a ridge regression of the log validation metric on the
   log weights of every search run so far predicts the metric of 20,000 fresh Dirichlet candidates
   (around uniform and around the best run); the ``refine_runs`` best-predicted are run.
3. **Coordinate steps**: from the best run so far, each domain's weight halved in turn
   (renormalised), one run each (k runs).
4. **Final references**: natural, uniform and the search's best mixture (lowest validation metric)
   at the task's full budget with every seed in ``seeds``, scored on validation and test.

A search run ends with the evaluation a run reads during training (``env.eval_batches`` batches per
domain), not the task's final one (``task.eval_tokens``): the search only ranks mixtures, and a larger
evaluation would cost more than the 200 training steps it ranks. The final references, which every
run's score is measured against, read ``task.eval_tokens``.

Every run is an ordinary run directory; a finished one of the same config is read back and a
stopped one resumed (``reuse.train_or_reuse``), so an interrupted reference computation continues
where it stopped. The result,
``<out>/references.json`` (``--ship [PATH]``: also PATH, by default the task's own reference file in a source
checkout, ``config.task_references_file``; never inside an installed package),
records the values per seed, the search, the budget, the command, the date, and whether the task
discriminates: the best static mixture must beat natural by at least 5× the pooled seed standard
deviation of the two on the task metric.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml

from ..config import CONFIG_DIR, TASK_DIR, Config, check_search, load_config, task_references_file
from ..data.corpus import open_corpus
from ..envs.task import corpus_signature, final_eval_sequences
from ..errors import ConfigError
from .reuse import train_or_reuse

DISCRIMINATION = 5.0  # best static must beat natural by this many pooled seed standard deviations


def static_run(cfg: Config, out: Path, name: str, weights, seed: int, steps: int | None, log) -> dict:
    """One static-mixture run (``weights``: a list, or the agent names natural / uniform); its summary."""
    agent = (
        {"name": weights} if isinstance(weights, str) else {"name": "static", "weights": [float(w) for w in weights]}
    )
    overrides = {"agent": agent, "run": {"name": name, "out_dir": str(out), "seed": seed}}
    if steps is not None:  # a short search run: validation at its end only, nothing kept but the summary
        overrides["train"] = {"total_steps": steps, "warmup_steps": min(cfg.train.warmup_steps, steps // 4)}
        overrides["env"] = {"eval_interval": steps}
        overrides["task"] = {"eval_tokens": None}  # ranked at the training-time evaluation size (cheap)
        overrides["run"].update(checkpoint_interval=0, plots=False, tensorboard=False)
    log(f"== {name}: {agent['name']} {np.round(weights, 3).tolist() if not isinstance(weights, str) else ''}")
    run_dir = train_or_reuse(load_config(cfg, overrides), log)  # a finished run of this config is read back
    return json.loads((run_dir / "summary.json").read_text())


def _set_aside_other_mixture(run_dir: Path, weights: np.ndarray, log) -> None:
    """A best-static run of another mixture (the search has since found a better one) is renamed, not rerun over."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    old = yaml.safe_load(saved.read_text())["agent"].get("weights")
    if old is not None and np.allclose(old, weights):
        return
    n = 0
    while run_dir.with_name(f"{run_dir.name}.superseded-{n}").exists():
        n += 1
    run_dir.rename(run_dir.with_name(f"{run_dir.name}.superseded-{n}"))
    log(f"   {run_dir} ran another mixture than the search's best now: moved to {run_dir.name}.superseded-{n}")


def _features(weights: np.ndarray) -> np.ndarray:
    return np.concatenate([np.log(np.clip(weights, 1e-4, None)), np.ones((len(weights), 1))], axis=1)


def _predict_best(
    weights: np.ndarray, metric: np.ndarray, anchor: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """RegMix-style: ridge regression of log metric on log weights; the ``n`` best-predicted fresh candidates
    (at most ``n``: 0 gives none)."""
    if n < 1:
        return np.empty((0, weights.shape[1]))
    x, y = _features(weights), np.log(metric)
    coef = np.linalg.solve(x.T @ x + 1e-2 * np.eye(x.shape[1]), x.T @ y)
    k = weights.shape[1]
    candidates = np.concatenate([rng.dirichlet(np.full(k, 2.0), 10_000), rng.dirichlet(20.0 * anchor + 0.5, 10_000)])
    order = np.argsort(_features(candidates) @ coef)
    chosen: list[np.ndarray] = []
    for i in order:  # the best predictions, kept apart from each other
        if all(np.abs(candidates[i] - c).sum() > 0.1 for c in chosen):
            chosen.append(candidates[i])
        if len(chosen) == n:
            break
    return np.array(chosen)


def _reference(summaries: list[dict], weights: Sequence[float]) -> dict:
    return {
        "weights": [float(w) for w in weights],
        "seeds": [s["seed"] for s in summaries],
        "val_metric": [s["val_metric"] for s in summaries],
        "test_metric": [s["test_metric"] for s in summaries],
        "val_metric_arith": [s["val_metric_arith"] for s in summaries],
        "test_metric_arith": [s["test_metric_arith"] for s in summaries],
        "runs": [s["run_dir"] for s in summaries],
    }


def _discrimination(natural: list[float], best: list[float]) -> dict:
    pooled = (
        float(np.sqrt((np.var(natural, ddof=1) + np.var(best, ddof=1)) / 2))
        if min(len(natural), len(best)) > 1
        else None
    )
    gap = float(np.mean(natural) - np.mean(best))
    ratio = gap / pooled if pooled else None
    return {
        "gap": gap,
        "pooled_std": pooled,
        "gap_over_std": ratio,
        "discriminates": bool(ratio is not None and ratio >= DISCRIMINATION),
    }


def heldout_sequence_losses(model, corpus, cfg: Config, domain: str, split: str, sequences: int | None = None):
    """Per-sequence mean losses of ``model`` on the first ``sequences`` blocks of one domain and split
    (None: as many as the final evaluation reads, ``final_eval_sequences``)."""
    import torch

    from ..lm.step import sequence_losses

    n = final_eval_sequences(cfg, domain) if sequences is None else sequences
    blocks = torch.from_numpy(corpus.blocks(domain, split, cfg.model.seq_len, n))
    with torch.no_grad():
        return torch.cat([sequence_losses(model(b).logits, b) for b in blocks.split(cfg.train.batch_size)]).numpy()


def log_metric_se(samples: Sequence[np.ndarray]) -> float:
    """The standard error of a log task metric (the mean over domains of each domain's mean per-sequence
    loss) from each domain's per-sequence values: sqrt(Σ_d s_d² / n_d) / D."""
    return float(np.sqrt(sum(x.var(ddof=1) / len(x) for x in samples)) / len(samples))


def evaluation_noise(
    cfg: Config,
    corpus,
    natural_dir: Path,
    best_dir: Path,
    natural_values: Sequence[float],
    best_values: Sequence[float],
) -> dict:
    """How much of the metric's spread is the evaluation set, next to the seeds' spread, per split.

    log metric = mean over eval domains of the domain's mean loss. Two standard errors from the
    per-sequence losses of the trained natural and best-static models (seed 0) on the evaluation blocks:

    * ``metric_rel_se``: of one model's log metric, sqrt(Σ_d s_d² / n_d) / D: how far the metric
      would move on another evaluation set of the same size (the absolute perplexity);
    * ``paired_rel_se``: of the difference between the two models' log metrics on the same blocks,
      from the per-sequence differences. Every method is scored on the same blocks, so this is the
      evaluation noise in a comparison, the normalised score included.

    Each is set against the seeds' spread of the log metric (``natural_values`` and ``best_values``: the
    validation metric of every seed, the spread pooled over the two),
    with the tokens per domain it would take for it to be a third of that (it shrinks as 1/sqrt(n)).
    """
    from transformers import AutoModelForCausalLM

    eval_domains = cfg.task.eval_domains or list(corpus.domains)
    natural = AutoModelForCausalLM.from_pretrained(natural_dir / "model").eval()
    best = AutoModelForCausalLM.from_pretrained(best_dir / "model").eval()
    seed_var = [np.var(np.log(v), ddof=1) for v in (natural_values, best_values) if len(v) > 1]
    seed_std = float(np.sqrt(np.mean(seed_var))) if seed_var else None
    result: dict = {"runs": [str(natural_dir), str(best_dir)], "seed_rel_std": seed_std}
    for split in ("validation", "test"):
        a = [heldout_sequence_losses(natural, corpus, cfg, d, split) for d in eval_domains]
        b = [heldout_sequence_losses(best, corpus, cfg, d, split) for d in eval_domains]
        n = len(a[-1])
        figures = {}
        for name, samples in (("metric", a), ("paired", [x - y for x, y in zip(a, b)])):
            se = log_metric_se(samples)
            needed = int(np.ceil(n * (se / (seed_std / 3)) ** 2)) * cfg.model.seq_len if seed_std else None
            figures[f"{name}_rel_se"] = se
            figures[f"{name}_tokens_per_domain_for_se_third_of_seed_std"] = needed
        result[split] = {"sequences_per_domain": n, "tokens_per_domain": n * cfg.model.seq_len, **figures}
    return result


def _evaluation(task: str, cfg: Config, corpus, out: Path, seed: int, finals: dict, log) -> dict | None:
    """The evaluation noise, from the seed-``seed`` natural and best-static models; where those runs were
    restored from records (no model), the figures recorded before (in ``out`` or the shipped file)."""
    natural, best = out / f"natural-seed{seed}", out / f"best-static-seed{seed}"
    if (natural / "model").is_dir() and (best / "model").is_dir():
        return evaluation_noise(
            cfg,
            corpus,
            natural,
            best,
            [s["val_metric"] for s in finals["natural"]],
            [s["val_metric"] for s in finals["best_static"]],
        )
    for path in (out / "references.json", task_references_file(task)):
        earlier = json.loads(path.read_text()).get("evaluation") if path.is_file() else None
        if earlier:
            log(f"no model in {natural} or {best} (restored runs): evaluation noise as recorded in {path}")
            return earlier
    log(f"no model in {natural} or {best} (restored runs): evaluation noise not measured")
    return None


def ship_path(task: str, ship: bool | str | Path) -> Path | None:
    """Where ``--ship`` writes: the path given (a directory: ``<task>.references.json`` in it), else the task's
    own reference file if it lies in a source checkout; writing into an installed package is refused (an
    upgrade would drop it, and the package may be shared)."""
    if ship is False or ship is None:
        return None
    if ship is not True:
        path = Path(ship).expanduser()
        return path / f"{task}.references.json" if path.is_dir() else path
    path = task_references_file(task)
    installed = any(part in ("site-packages", "dist-packages") for part in path.resolve().parts)
    if installed or (path.parent == TASK_DIR and not (CONFIG_DIR.parent.parent / "setup.cfg").is_file()):
        raise ConfigError(
            f"--ship would write {path}, inside the installed package: give where to write it instead, "
            f"--ship PATH (e.g. --ship {task}.references.json), then use it with task.references=PATH."
        )
    return path


def references(
    task: str,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    random_runs: int = 12,
    refine_runs: int = 4,
    search_steps: int = 200,
    ship: bool | str | Path = False,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict:
    """Compute (or continue computing) the references of ``task``; returns what references.json holds.

    :param task: a task under configs/tasks/
    :param overrides: config overrides on top of the task (e.g. a smaller budget)
    :param out: where the run directories and references.json go (default: runs/tasks/<task>)
    :param seeds: seeds of the final natural, uniform and best-static runs (at least 3 for the acceptance test)
    :param random_runs: Dirichlet mixtures of the random-search stage
    :param refine_runs: mixtures proposed by the regression stage
    :param search_steps: steps of each search run (the final runs use the task's budget)
    :param ship: also write the result to this path (``True``: the task's own reference file, in a source
        checkout only: ``ship_path``)
    :param command: the command line, recorded in the file
    """
    check_search(seeds, random_runs, refine_runs, search_steps)
    cfg = load_config(None, [*overrides, "task.references=none"], task=task)  # the references are what this computes
    shipped = ship_path(task, ship)  # refused before any run
    out = Path(out or Path(cfg.run.out_dir) / "tasks" / task)
    out.mkdir(parents=True, exist_ok=True)
    corpus = open_corpus(cfg.data, log=log)
    k, natural = len(corpus.domains), corpus.natural_weights()
    rng = np.random.default_rng(0)
    proposals = [rng.dirichlet(np.full(k, 1.0 if i % 2 == 0 else 4.0)) for i in range(random_runs)]
    started = time.time()

    search: list[dict] = []
    for name, weights in [("natural", natural), ("uniform", np.full(k, 1.0 / k))] + [
        (f"{i:02d}", w) for i, w in enumerate(proposals)
    ]:
        summary = static_run(cfg, out, f"search-{name}", weights, 0, search_steps, log)
        search.append(
            {
                "name": f"search-{name}",
                "stage": "random",
                "weights": np.asarray(weights).tolist(),
                "val_metric": summary["val_metric"],
            }
        )
    best_so_far = np.array(min(search, key=lambda r: r["val_metric"])["weights"])
    tried = np.array([r["weights"] for r in search])
    for i, weights in enumerate(
        _predict_best(tried, np.array([r["val_metric"] for r in search]), best_so_far, refine_runs, rng)
    ):
        summary = static_run(cfg, out, f"search-refine-{i:02d}", weights, 0, search_steps, log)
        search.append(
            {
                "name": f"search-refine-{i:02d}",
                "stage": "refine",
                "weights": weights.tolist(),
                "val_metric": summary["val_metric"],
            }
        )
    # coordinate steps from the best so far: each domain's weight halved in turn (renormalised)
    start = np.array(min(search, key=lambda r: r["val_metric"])["weights"])
    for i in range(k):
        weights = start.copy()
        weights[i] /= 2
        weights /= weights.sum()
        summary = static_run(cfg, out, f"search-coord-{i:02d}", weights, 0, search_steps, log)
        search.append(
            {
                "name": f"search-coord-{i:02d}",
                "stage": "coordinate",
                "weights": weights.tolist(),
                "val_metric": summary["val_metric"],
            }
        )
    best = np.array(min(search, key=lambda r: r["val_metric"])["weights"])
    log(f"best static mixture of {len(search)} search runs: {dict(zip(corpus.domains, best.round(3).tolist()))}")

    finals: dict[str, list[dict]] = {"natural": [], "uniform": [], "best_static": []}
    for seed in seeds:
        for kind, weights in (("natural", "natural"), ("uniform", "uniform"), ("best_static", best)):
            name = f"{'best-static' if kind == 'best_static' else kind}-seed{seed}"
            if kind == "best_static":
                _set_aside_other_mixture(out / name, best, log)
            summary = static_run(cfg, out, name, weights, seed, None, log)
            finals[kind].append({**summary, "run_dir": str(out / name)})
    result = {
        "task": task,
        "metric": "geometric mean of the per-domain perplexities over eval_domains (exp of their mean loss)",
        "eval_domains": cfg.task.eval_domains or list(corpus.domains),
        "domains": list(corpus.domains),
        "corpus": corpus_signature(corpus, cfg),
        "references": {
            "natural": _reference(finals["natural"], natural),
            "uniform": _reference(finals["uniform"], np.full(k, 1.0 / k)),
            "best_static": _reference(finals["best_static"], best),
        },
        "discrimination": {
            split: _discrimination(
                [s[f"{split}_metric"] for s in finals["natural"]], [s[f"{split}_metric"] for s in finals["best_static"]]
            )
            for split in ("val", "test")
        },
        "evaluation": _evaluation(task, cfg, corpus, out, seeds[0], finals, log),
        "budget": {
            "search_runs": len(search),
            "search_steps": search_steps,
            "final_steps": cfg.train.total_steps,
            "seeds": list(seeds),
            "search": "random Dirichlet (concentration 1 and 4), ridge regression on log weights (RegMix-style), "
            "then one coordinate step per domain (its weight halved) from the best",
        },
        "search": search,
        "command": command or f"acodm-gym reference --task {task}",
        "overrides": list(overrides),
        "date": time.strftime("%Y-%m-%d"),
        "seconds_this_session": round(time.time() - started, 1),
    }
    text = json.dumps(result, indent=2)
    tmp = out / "references.json.tmp"
    tmp.write_text(text)
    tmp.replace(out / "references.json")
    if shipped is not None:  # atomically: runs of the task read the shipped file when they start
        shutil.copyfile(out / "references.json", shipped.with_suffix(".json.tmp"))
        shipped.with_suffix(".json.tmp").replace(shipped)
    return result
