"""The comparison job: every mixing method on one corpus, budget and seed list, then a report.

Methods run one after another (so their per-step times are comparable) into
``<out>/<method>-seed<s>/``; ``acodm-proxy`` is two stages: the proxy stage (AC-ODM learnt on the
small proxy model over ``proxy.episodes`` training episodes, ``<out>/acodm-proxy-stage-seed<s>``, a
``learn`` directory) and the target stage (its frozen actor steering the target model).
``report.md`` and the plots are written next to the run directories.

Sweeps resume instead of restarting: run again into the same ``out``, a run that finished with the
same config (apart from ``checkpoint.SAFE_KEYS``), code version and corpus (``provenance``) is reused, one
of other code or data is stale and trained again (``keep_stale=True``, ``--keep-stale``: kept, and the
report names its code version), and one that stopped is resumed from its last checkpoint;
``overwrite=True`` (``--overwrite``) runs every method from scratch.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.stats

from ..agents import agent_class
from ..config import (
    METHODS,
    PROXY_METHOD,
    Config,
    TaskConfig,
    check_methods,
    check_search,
    learned_agent,
    load_config,
)
from ..envs.task import normalised_score, read_references, search_budget
from ..errors import ConfigError, MissingFileError
from . import learn, plots, provenance, stats
from .reuse import finished, train_or_reuse


def proxy_config(cfg: Config) -> Config:
    """The proxy stage: AC-ODM on the smaller proxy model, same corpus and step budget."""
    return load_config(cfg, {"model": {"preset": cfg.run.proxy_model}, "agent": {"name": "acodm"}})


def for_agent(cfg: Config, name: str, options: dict | None = None) -> Config:
    """``cfg`` for agent ``name``: of the sweep's ``agent.options`` (and ``agent.weights``) only what this agent
    takes, since a sweep's options are for the methods that take them; then ``options``."""
    cls = agent_class(name)
    own = {k: v for k, v in cfg.agent.options.items() if k in cls.option_names()}
    weights = cfg.agent.weights if cls.reads_weights else None
    agent = dataclasses.replace(cfg.agent, name=name, options={**own, **(options or {})}, weights=weights)
    return dataclasses.replace(cfg, agent=agent)


def check_agent_options(cfg: Config, methods: Sequence[str]) -> None:
    """Before any run: every method's share of ``agent.options`` in range, and every option taken by a method."""
    names = [a for m in methods for a in (("acodm", "frozen") if m == PROXY_METHOD else (learned_agent(m) or m,))]
    taken: set[str] = set()
    for name in names:
        agent_class(name).check_config(for_agent(cfg, name).agent)
        taken |= agent_class(name).option_names()
    unused = [key for key in cfg.agent.options if key not in taken]
    if unused:
        close = difflib.get_close_matches(unused[0], taken, n=1)
        hint = f" Did you mean 'agent.options.{close[0]}'?" if close else ""
        raise ConfigError(f"agent.options.{unused[0]} is an option of none of the methods {', '.join(methods)}.{hint}")


def run_method(
    cfg: Config,
    method: str,
    seed: int,
    out: Path,
    log: Callable[[str], None] = print,
    overwrite: bool = False,
    keep_stale: bool = False,
    retrain: bool = True,
) -> Path:
    """Run one method for one seed (or reuse / resume an earlier attempt); returns the run directory holding its summary.

    :param retrain: with ``overwrite``, train a learned method's policy again (compare: on its first seed only)
    """
    base = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=seed, out_dir=str(out)))
    agent = learned_agent(method)
    if agent is not None:  # one learn directory for every seed: the policy trains once, is scored on each seed
        episodes, first, again = cfg.learn.episodes, cfg.learn.first_seed, overwrite and retrain
        learn.learn(
            for_agent(base, agent), episodes, out / method, [seed], first, None, log, overwrite, keep_stale, again
        )
        return method_run_dir(cfg, method, seed, out)
    if method != PROXY_METHOD:
        run_cfg = load_config(for_agent(base, method), {"run": {"name": f"{method}-seed{seed}"}})
        return train_or_reuse(run_cfg, log, overwrite, keep_stale=keep_stale)
    stage, acodm = f"acodm-proxy-stage-seed{seed}", for_agent(base, "acodm")
    protocol = {"proxy_model": cfg.run.proxy_model, "episodes": cfg.proxy.episodes}  # the stage's, beyond its options
    frozen = learn.frozen_config(acodm, out / stage / "agent.pt", out, seed, protocol)
    target = load_config(frozen, {"run": {"name": f"acodm-proxy-seed{seed}"}})
    if overwrite or not finished(target, keep_stale):  # the actor is needed only to train the target stage
        proxy_stage(acodm, stage, log, overwrite, keep_stale)
    return train_or_reuse(target, log, overwrite, keep_stale=keep_stale)


def method_run_dir(cfg: Config, method: str, seed: int, out: Path) -> Path:
    """Where ``run_method`` puts ``method``'s run of ``seed``: ``<out>/<method>-seed<s>``, or for a learned method
    its scoring run in the learn directory ``<out>/<method>/`` (``learn.scoring_dir``)."""
    if learned_agent(method) is not None:
        return learn.scoring_dir(Path(out) / method, cfg.learn.episodes, seed)
    return Path(out) / f"{method}-seed{seed}"


def proxy_stage(
    cfg: Config, name: str, log: Callable[[str], None] = print, overwrite: bool = False, keep_stale: bool = False
) -> Path:
    """AC-ODM learnt on the proxy model over ``proxy.episodes`` training episodes (``learn.train_agent`` in
    ``<run.out_dir>/<name>``); returns the agent after the last one, ``<run.out_dir>/<name>/agent.pt``.

    Each episode is a fresh proxy model (seed ``run.seed + 1000·e``); the agent (networks, replay buffer,
    counters) carries across them, so the policy sees several passes through t/T instead of one. Its
    learning-rate schedule spans the first episode; later ones learn at ``lr_end``.
    """
    seeds = learn.train_seeds(cfg.proxy.episodes, first=cfg.run.seed, stride=1000)
    return learn.train_agent(proxy_config(cfg), Path(cfg.run.out_dir) / name, seeds, log, overwrite, keep_stale)


def compare(
    cfg: Config,
    seeds: Sequence[int],
    methods: Sequence[str] = METHODS,
    out: str | Path | None = None,
    log=print,
    overwrite: bool = False,
    on_run: Callable[[Path], None] | None = None,
    keep_stale: bool = False,
) -> Path:
    """Run every method with every seed (seed by seed) into ``out``, then write the report; returns ``out``.

    :param on_run: called with each run's directory as soon as that run is finished (or reused), e.g. to
        keep its record (``benchmarks/tasks.py``), so a sweep that is stopped loses no finished run
    :param keep_stale: reuse finished runs of other code or corpora instead of training them again
    """
    check_methods(methods)
    check_search(seeds)
    check_agent_options(cfg, methods)
    out = Path(out or Path(cfg.run.out_dir) / "compare")
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[str]] = {m: [] for m in methods}
    for seed in seeds:
        for method in methods:
            log(f"== {method} (seed {seed})")
            run_dir = run_method(cfg, method, seed, out, log, overwrite, keep_stale, retrain=seed == seeds[0])
            runs[method].append(str(run_dir))
            if on_run is not None:
                on_run(run_dir)
            (out / "compare.json").write_text(
                json.dumps({"methods": list(methods), "seeds": list(seeds), "runs": runs}, indent=2)
            )
    report(out)
    return out


def _load(run_dirs: list[str]) -> list[dict]:
    return [json.loads((Path(d) / "summary.json").read_text()) for d in run_dirs]


def val_curve(summary: dict) -> list[float]:
    """The validation curve of the task metric (runs from before tasks: the average perplexity)."""
    curve = summary["val_curve"]
    return curve.get("metric") or curve["avg_ppl"]


def steps_to_reach(summary: dict, target: float) -> int | None:
    """First evaluated step whose validation task metric is at or below ``target``."""
    for step, ppl in zip(summary["val_curve"]["steps"], val_curve(summary)):
        if ppl <= target:
            return step
    return None


def mean_interval(values: list[float]) -> tuple[float, float] | None:
    """Mean and half-width of its 95 % Student-t interval (None for fewer than two values)."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if len(v) < 2:
        return None
    t = scipy.stats.t.ppf(0.975, len(v) - 1)
    return float(v.mean()), float(t * v.std(ddof=1) / np.sqrt(len(v)))


def diagnostics_lines(results: dict[str, dict]) -> list[str]:
    """Where the learning signal is lost: each agent diagnostic's median over the second half of a run, then
    the mean over seeds (agents/diagnostics.py says what each measures); empty when no run logged any."""
    keys = list(dict.fromkeys(k for r in results.values() for d in r["diagnostics"] for k in d))
    if not keys:
        return []
    lines = [
        "Agent diagnostics (median over the second half of each run, mean over seeds; n/a: not logged by this agent):",
        "",
        "| method | " + " | ".join(keys) + " |",
        "|" + "---|" * (len(keys) + 1),
    ]
    for method, r in results.items():
        cells = []
        for key in keys:
            values = [d[key] for d in r["diagnostics"] if key in d]
            cells.append(f"{np.mean(values):.3g}" if values else "n/a")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _fmt(values: list, digits: int = 1) -> str:
    """``mean ± 95 % half-width`` (or the single value, or n/a)."""
    ci = mean_interval(values)
    present = [v for v in values if v is not None]
    if ci is not None:
        return f"{ci[0]:.{digits}f} ± {ci[1]:.{digits}f}"
    return f"{present[0]:.{digits}f}" if present else "n/a"


def _rl_lines(results: dict[str, dict], task: str | None, out: Path) -> list[str]:
    """The IQM, probability of improvement and performance profile (``profile.png``) of the normalised
    scores (``stats``); none without reference scores."""
    scores = {m: {task: {s: v for s, v in zip(r["seeds"], r["score"]) if v is not None}} for m, r in results.items()}
    scores = {m: by_task for m, by_task in scores.items() if by_task[task]}
    if not task or not scores:
        return []
    stats.plot_profiles(stats.matrices(scores, [task]), out / "profile.png", f"Performance profile ({task})")
    return stats.rl_tables(scores, [task])


def seed_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (rows) of each column and the 95 % interval around it (``mean_interval``); one seed: no
    band (low = high = mean)."""
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(axis=0)
    half = np.array([(mean_interval(column.tolist()) or (0.0, 0.0))[1] for column in values.T])
    return mean, mean - half, mean + half


def _plots(out: Path, index: dict, summaries: dict[str, list[dict]], domains: list[str], unscored: list[str]) -> None:
    """The comparison plots: the validation metric with the seeds' band and per-domain test perplexity with
    error bars (each method in one colour in both), and each online method's weights (each domain in the colour
    it has in every run's plots)."""
    methods = plots.colors(list(summaries))
    curves, bands, test, errors = {}, {}, {}, {}
    for method, runs in summaries.items():
        mean, low, high = seed_band([val_curve(s) for s in runs])
        curves[method], bands[method] = (np.array(runs[0]["val_curve"]["steps"]), mean), (low, high)
        mean, low, _ = seed_band([[s["test_ppl"][d] for d in domains] for s in runs])
        test[method], errors[method] = mean, mean - low
    title = "Validation task metric (shaded: 95 % interval over seeds)"
    plots.plot_val_ppl(curves, out / "val_ppl.png", title, methods, bands)
    plots.plot_domain_ppl(test, domains, out / "test_ppl.png", errors=errors, palette=methods, unscored=unscored)
    for method in summaries:
        if method in ("natural", "uniform", "best-static"):  # static: nothing to plot over time
            continue
        sched = json.loads((Path(index["runs"][method][0]) / "mixture.json").read_text())["schedule"]
        name = f"Domain weights ({method})"
        plots.plot_weights(
            np.array(sched["steps"]), np.array(sched["weights"]), domains, out / f"weights_{method}.png", name, unscored
        )


def report(out: str | Path) -> Path:
    """Write ``report.md``, ``results.json`` and the comparison plots from the runs listed in compare.json.

    Everything is on the task's metric (the geometric mean perplexity over its eval domains): the
    normalised score and the test metric per seed with 95 % intervals, the paper's arithmetic mean
    beside it, the steps each run takes to reach ODM's best validation metric of the same seed, the
    seconds per step, and per-domain test perplexity for every domain.
    """
    out = Path(out)
    if not (out / "compare.json").is_file():
        raise MissingFileError(
            f"{out} is not a comparison directory (it has no compare.json): give the --out directory of an "
            "`acodm-gym compare` (its runs are listed in compare.json)."
        )
    index = json.loads((out / "compare.json").read_text())
    summaries = {m: _load(d) for m, d in index["runs"].items() if d}
    first = next(iter(summaries.values()))[0]
    made = provenance.summarise([s for runs in summaries.values() for s in runs])
    domains, task = first["domains"], first.get("task")
    eval_domains = first.get("eval_domains") or domains
    refs = read_references(TaskConfig(name=task)) if task else None
    odm = summaries.get("odm")
    odm_best = {s["seed"]: min(val_curve(s)) for s in odm} if odm else {}
    results = {method: _method_results(runs, refs, odm_best, domains) for method, runs in summaries.items()}
    text = _report_text(index, results, summaries, task, eval_domains, refs, made, out)
    (out / "report.md").write_text("\n".join(text) + "\n")
    keep = ("weights", "seeds", "val_metric", "test_metric")
    references = {kind: {k: ref[k] for k in keep} for kind, ref in refs["references"].items()} if refs else {}
    payload = {
        "task": task,
        "metric_domains": eval_domains,
        "domains": domains,
        "references": references,
        "reference_search": refs and refs["search"],
        "provenance": made,
        "methods": results,
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2))

    _plots(out, index, summaries, domains, [d for d in domains if d not in eval_domains])
    return out / "report.md"


def _method_results(runs: list[dict], refs: dict | None, odm_best: dict[int, float], domains: list[str]) -> dict:
    """One method's entry of results.json from its runs' summaries."""
    test_metric = [s.get("test_metric", s["test_ppl_avg"]) for s in runs]
    return {
        "seeds": [s["seed"] for s in runs],
        "test_metric": test_metric,
        "score": [normalised_score(m, refs) for m in test_metric],
        "final_val_ppl": [s["final_val_ppl_avg"] for s in runs],
        "val_metric": [s.get("val_metric", s["final_val_ppl_avg"]) for s in runs],
        "test_metric_arith": [s.get("test_metric_arith") for s in runs],
        "steps_to_odm_best": [steps_to_reach(s, odm_best[s["seed"]]) if s["seed"] in odm_best else None for s in runs],
        "seconds_per_step": [s["seconds_per_step"] for s in runs],
        "mean_weights": {d: float(np.mean([s["mean_weights"][d] for s in runs])) for d in domains},
        "diagnostics": [s.get("diagnostics", {}) for s in runs],
    }


def _report_text(index, results, summaries, task, eval_domains, refs, made, out: Path) -> list[str]:
    """report.md's lines: what is measured, the methods' table, the RL statistics, per-domain test perplexity,
    the agents' diagnostics and the plots."""
    domains = next(iter(summaries.values()))[0]["domains"]
    header = ["method", "score (95 % CI)", "test metric", "test arith. mean", "steps to ODM best", "s/step"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    domain_lines = ["| method | " + " | ".join(domains) + " |", "|" + "---|" * (len(domains) + 1)]
    for method, r in results.items():
        reached = [x for x in r["steps_to_odm_best"] if x is not None]
        if "odm" not in summaries:
            reach = "n/a (no ODM run)"
        else:
            reach = f"{np.mean(reached):.0f} ({len(reached)}/{len(r['seeds'])})" if reached else "not reached"
        cells = [_fmt(r["score"]), _fmt(r["test_metric"], 2), _fmt(r["test_metric_arith"], 2), reach]
        lines.append(f"| {method} | " + " | ".join([*cells, f"{np.mean(r['seconds_per_step']):.3f}"]) + " |")
        per_domain = np.array([[s["test_ppl"][d] for d in domains] for s in summaries[method]]).mean(axis=0)
        domain_lines.append(f"| {method} | " + " | ".join(f"{v:.1f}" for v in per_domain) + " |")
    return [
        f"# Data-mixing comparison{f' on task {task}' if task else ''}",
        "",
        f"Seeds: {index['seeds']}. Metric: geometric mean of the test perplexities over {', '.join(eval_domains)} "
        "(exp of their mean loss); the paper's arithmetic mean beside it. Score: 100 × (natural − method) / "
        "(natural − best static) on the test split, from the task's reference scores (n/a without them). Values are "
        "means ± the half-width of a 95 % Student-t interval over seeds. Steps to reach ODM's best validation metric "
        "of the same seed: mean over the seeds that reach it. Seconds per step: wall clock (acodm-proxy: the target "
        "stage).",
        "",
        f"Reference scores: {search_budget(refs['search'])}." if refs else "No reference scores: no normalised score.",
        "",
        *provenance.lines(made),
        *lines,
        "",
        *_rl_lines(results, task, out),
        "Per-domain test perplexity (mean over seeds; every domain, also those the metric leaves out):",
        "",
        *domain_lines,
        "",
        *diagnostics_lines(results),
        "Plots: `val_ppl.png` (validation task metric over steps, shaded: 95 % interval over seeds), "
        "`weights_<method>.png` (domain weights of each online method, first seed), `test_ppl.png` (per-domain test "
        "perplexity, error bars: 95 % interval over seeds; unscored domains are marked), `profile.png` (performance "
        "profile of the normalised score, with reference scores).",
    ]
