"""Reference scores of a benchmark task: natural, uniform and the best static mixture a budgeted search finds.

``acodm-gym reference --task NAME`` (``references(task, ...)``) works in two stages, on the validation
split only, one run after another into ``<out>/``:

1. **Search**: an Optuna study of ``trials`` short static runs (``search_steps`` steps, seed 0), each
   validated every quarter of its steps and reporting that metric to the pruner (``trial.report``).

   * *Structured candidates first* (``study.enqueue_trial``), the mixtures a person would try, in this
     order: natural; uniform; natural at temperatures 2 and 3.3 (p ∝ n^(1/T): the α = 0.5 and 0.3 of
     multilingual pretraining); uniform without each domain; uniform over the scored domains (where the
     task scores fewer than all). With fewer ``trials`` than candidates, the first ``trials`` run.
   * *The simplex*: Optuna has no simplex parameter. Each domain has a parameter u_i in [0, 1);
     g_i = −ln(1 − u_i) is Exp(1) when u_i is uniform, so w = g / Σg is Dirichlet(1, …, 1), uniform on the
     simplex, and u_i = 0 is a weight of 0. A structured mixture w is enqueued as u_i = 1 − exp(−w_i / max w).
   * *Sampler*: ``RANDOM_STARTUP`` random mixtures after the structured ones, then multivariate TPE
     (seed 0). Optuna's GP sampler is advised for budgets of 10–100 trials like this one (TPE for
     100–1000), but it fits only complete trials, so every pruned run would be lost to it; TPE ranks a
     pruned trial below the complete ones by the step it reached and learns from it, and the structured
     candidates give it good points to start from. Multivariate, because the weights act together (they
     are normalised).
   * *Pruner*: successive halving (``SuccessiveHalvingPruner``, reduction factor 2, first rung at the first
     validation): at a quarter and at half of its steps a short run goes on only if its validation metric is
     in the better half of those of the trials that reached that step (``trial.should_prune``). Pruned
     runs stop there; a search then trains about half the steps of one without pruning. (On the default
     corpus, static mixtures held their final ranking from a quarter of an 800-step run on.)

2. **Finals**: natural, uniform and the ``finalists`` best complete trials (other than natural and
   uniform) run at the task's full budget with every seed in ``seeds``, scored on validation and test.
   The best static mixture is the one of these with the lowest mean validation metric: tuned on
   validation, reported on test.

A search run ends with the evaluation a run reads during training (``env.eval_batches`` batches per
domain), not the task's final one (``task.eval_tokens``): the search only ranks mixtures. The final runs,
which every run's score is measured against, read ``task.eval_tokens``.

**Resuming.** The study lives in ``<out>/search.journal`` (Optuna's journal file: every trial event is
appended at once). Rerunning the same command continues it: finished trials (complete or pruned) are
kept, a trial a stop interrupted (killed: left running; Ctrl-C: failed) is tried again with its mixture
before any sampled one, and more ``--trials`` extend the study. The sampler's random state is not stored, so
the proposals after a resume may differ from those of an uninterrupted search. The study records the
config of its runs; a rerun with another one (other overrides or ``--search-steps``) is refused before any
work, as a resumed run is. Every run is an ordinary run directory (``search-<candidate>``,
``finalist-<candidate>-seed<s>``, ``natural-seed<s>``, ``uniform-seed<s>``): a finished one of the same
config is read back and a stopped one resumed (``reuse.train_or_reuse``). ``<out>`` is locked while a
search writes it.

**The budget**, recorded as the reference file's ``search`` block and shown beside every score
(``envs.task.search_budget``): the runs (search and finals), the steps they trained (a pruned run counts
the steps it reached), their machine seconds (each run's wall clock; a pruned run's trial time), the
machine and threads, the sampler, the pruner and the code version. The result, ``<out>/references.json``
(``--ship [PATH]``: also PATH, by default the task's own reference file in a source checkout,
``config.task_references_file``; never inside an installed package), also records the trials, the
finalists, the command and the date, and whether the task discriminates: the best static mixture must
beat natural by at least 5× the pooled seed standard deviation of the two on the task metric.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from ..config import CONFIG_DIR, TASK_DIR, Config, check_search, load_config, task_references_file
from ..data.corpus import open_corpus
from ..envs.state import StepInfo
from ..envs.task import corpus_signature, final_eval_sequences
from ..errors import ConfigError
from . import checkpoint, provenance, rundir
from .reuse import train_or_reuse

DISCRIMINATION = 5.0  # best static must beat natural by this many pooled seed standard deviations
TEMPERATURES = (2.0, 10 / 3)  # natural ** (1/T): XLM's α = 0.5, XLM-R's and mT5's α = 0.3
RANDOM_STARTUP = 5  # random mixtures between the structured candidates and TPE
REDUCTION = 2  # successive halving keeps the better half at each rung
U_MAX = 1.0 - 1e-6  # u in [0, U_MAX]: g = -ln(1 - u) up to 13.8
JOURNAL = "search.journal"
STUDY = "best-static"
METHOD = "an Optuna search (structured candidates, multivariate TPE, successive halving)"
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def _search_overrides(cfg: Config, steps: int) -> dict:
    """A short search run: ``steps`` steps validated every quarter of them, ranked at the training-time
    evaluation size, nothing kept but its summary and metrics."""
    return {
        "train": {"total_steps": steps, "warmup_steps": min(cfg.train.warmup_steps, steps // 4)},
        "env": {"eval_interval": max(1, steps // 4)},
        "task": {"eval_tokens": None},
        "run": {"checkpoint_interval": 0, "plots": False, "tensorboard": False},
    }


def _search_config(cfg: Config, steps: int) -> Config:
    """The config every search run shares (its mixture aside): what a continued study must keep."""
    return load_config(cfg, {**_search_overrides(cfg, steps), "agent": {"name": "uniform"}})


def static_run(
    cfg: Config,
    out: Path,
    name: str,
    weights,
    seed: int,
    steps: int | None,
    log,
    on_step: Callable[[StepInfo], None] | None = None,
) -> dict:
    """One static-mixture run into ``out/name``; its summary.

    :param weights: a list, or the agent names natural / uniform
    :param steps: a short search run of this many steps (``_search_overrides``); None: the task's budget
    :param on_step: called with each step's info while it trains (``runner.train``)
    """
    agent = (
        {"name": weights} if isinstance(weights, str) else {"name": "static", "weights": [float(w) for w in weights]}
    )
    overrides = _search_overrides(cfg, steps) if steps is not None else {}
    overrides["agent"] = agent
    overrides["run"] = {**overrides.get("run", {}), "name": name, "out_dir": str(out), "seed": seed}
    log(f"== {name}: {agent['name']} {np.round(weights, 3).tolist() if not isinstance(weights, str) else ''}")
    run_dir = train_or_reuse(load_config(cfg, overrides), log, on_step=on_step)  # a finished run is read back
    return json.loads((run_dir / "summary.json").read_text())


def structured_candidates(
    domains: Sequence[str], natural: np.ndarray, eval_domains: Sequence[str]
) -> list[tuple[str, np.ndarray]]:
    """The mixtures a person would try first, as (label, weights), in the order they are tried (one of
    each mixture: uniform over the scored domains is left out where every domain is scored)."""
    k = len(domains)
    candidates = [("natural", np.asarray(natural, dtype=np.float64)), ("uniform", np.full(k, 1.0 / k))]
    for t in TEMPERATURES:
        scaled = candidates[0][1] ** (1.0 / t)
        candidates.append((f"natural-t{t:.2g}", scaled / scaled.sum()))
    for i, domain in enumerate(domains):
        without = np.ones(k)
        without[i] = 0.0
        candidates.append((f"no-{domain}", without / without.sum()))
    scored = np.isin(list(domains), list(eval_domains)).astype(np.float64)
    candidates.append(("scored", scored / scored.sum()))
    unique: list[tuple[str, np.ndarray]] = []
    for label, weights in candidates:
        if not any(np.allclose(weights, w) for _, w in unique):
            unique.append((label, weights))
    return unique


def to_params(weights: np.ndarray, domains: Sequence[str]) -> dict[str, float]:
    """The study's parameters u of a mixture (``to_weights`` inverts it)."""
    g = np.asarray(weights, dtype=np.float64) / np.max(weights)
    return {d: float(-np.expm1(-x)) for d, x in zip(domains, g)}


def to_weights(u: Sequence[float]) -> np.ndarray:
    """The mixture of parameters u: g = −ln(1 − u), w = g / Σg (Dirichlet(1, …, 1) for uniform u)."""
    g = -np.log1p(-np.asarray(u, dtype=np.float64))
    return g / g.sum()


def _sampled_label(weights: np.ndarray) -> str:
    return "sampled-" + hashlib.sha256(np.round(weights, 9).tobytes()).hexdigest()[:8]


class _Reporter:
    """Reports a search run's validation metric to its trial at every validation before the last, and
    stops the run (``optuna.TrialPruned``) where the pruner says so.

    :param trial: the trial the run is
    :param steps: the run's steps (the last validation is the trial's value, not an intermediate one)
    """

    def __init__(self, trial: optuna.Trial, steps: int):
        self.trial, self.steps = trial, steps
        self.reported: set[int] = set()
        self.last_step = 0

    def __call__(self, info: StepInfo) -> None:
        if "val_metric" in info:
            self.report(int(info["step"]), float(info["val_metric"]))

    def report(self, step: int, value: float) -> None:
        if step >= self.steps or step in self.reported:
            return
        self.reported.add(step)
        self.last_step = step
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation metric {value:.2f} at step {step}")

    def replay(self, curve: dict) -> None:
        """The validations a run did not report while training (a reused or resumed run), in order."""
        for step, value in zip(curve["steps"], curve["metric"]):
            self.report(int(step), float(value))


def _objective(cfg: Config, out: Path, domains: Sequence[str], steps: int, log) -> Callable[[optuna.Trial], float]:
    """A trial: the mixture of its parameters (enqueued or sampled) as a short run; its validation metric."""

    def objective(trial: optuna.Trial) -> float:
        weights = to_weights([trial.suggest_float(d, 0.0, U_MAX) for d in domains])
        label = trial.user_attrs.get("candidate") or _sampled_label(weights)
        for key, value in (("candidate", label), ("stage", trial.user_attrs.get("stage", "sampled"))):
            trial.set_user_attr(key, value)
        trial.set_user_attr("weights", weights.tolist())
        reporter, started = _Reporter(trial, steps), time.time()
        try:
            summary = static_run(cfg, out, f"search-{label}", weights, 0, steps, log, on_step=reporter)
            reporter.replay(summary["val_curve"])
        except optuna.TrialPruned as pruned:
            trial.set_user_attr("steps", reporter.last_step)
            trial.set_user_attr("seconds", round(time.time() - started, 1))
            log(f"   trial {trial.number} ({label}) pruned: {pruned}")
            raise
        trial.set_user_attr("steps", summary["steps"])
        trial.set_user_attr("seconds", summary["seconds"])
        log(f"   trial {trial.number} ({label}): validation metric {summary['val_metric']:.2f}")
        return summary["val_metric"]

    return objective


def _storage(out: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(out / JOURNAL)))


def check_study(out: Path, search_cfg: Config) -> None:
    """Refuse, before any work, to continue a study in ``out`` whose runs had another config
    (``search_cfg``: a search run's, compared as a resumed run's is, ``checkpoint.refused_changes``)."""
    if not (out / JOURNAL).is_file():
        return
    try:
        saved = optuna.load_study(study_name=STUDY, storage=_storage(out)).user_attrs.get("config")
    except KeyError:  # stopped before the study was written
        return
    refused = checkpoint.refused_changes(saved, search_cfg) if saved is not None else {}
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise ConfigError(
            f"{out / JOURNAL} holds a reference search whose runs had another config ({listed}): rerun with its "
            f"overrides and --search-steps to continue it, or give another --out (or remove {out / JOURNAL}) "
            "to start a new search."
        )


def _sampler(structured: int) -> optuna.samplers.TPESampler:
    with warnings.catch_warnings():  # multivariate TPE is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(multivariate=True, n_startup_trials=structured + RANDOM_STARTUP, seed=0)


def open_study(
    out: Path, search_cfg: Config, domains: Sequence[str], candidates: list[tuple[str, np.ndarray]], log
) -> tuple[optuna.Study, dict[str, str]]:
    """The search's study in ``out`` (new, or as a stop left it), with the structured candidates queued first
    and the trials a stop interrupted queued again; the study and its sampler and pruner, described."""
    interval = max(1, search_cfg.train.total_steps // 4)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=interval, reduction_factor=REDUCTION)
    study = optuna.create_study(
        study_name=STUDY,
        storage=_storage(out),
        sampler=_sampler(len(candidates)),
        pruner=pruner,
        direction="minimize",
        load_if_exists=True,
    )
    if "config" not in study.user_attrs:
        study.set_user_attr("config", search_cfg.to_dict())
    for label, weights in candidates:  # once: a candidate already in the study is skipped
        study.enqueue_trial(
            to_params(weights, domains), user_attrs={"candidate": label, "stage": "structured"}, skip_if_exists=True
        )
    _requeue_interrupted(study, len(domains), log)
    described = {
        "sampler": f"TPESampler(multivariate=True, n_startup_trials={len(candidates) + RANDOM_STARTUP}, seed=0)",
        "pruner": f"SuccessiveHalvingPruner(min_resource={interval}, reduction_factor={REDUCTION})",
    }
    return study, described


def _requeue_interrupted(study: optuna.Study, k: int, log) -> None:
    """Trials a stop interrupted (killed: still running; Ctrl-C: failed) are queued again with their mixture;
    nothing finished is redone."""
    kept = {t.user_attrs.get("candidate") for t in study.get_trials(deepcopy=False, states=(*DONE, TrialState.WAITING))}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        if t.state == TrialState.RUNNING:  # its process is gone: ``out`` is locked while a search runs
            study.tell(t.number, state=TrialState.FAIL)
        label = t.user_attrs.get("candidate")
        if label is None or label in kept or len(t.params) != k:  # stopped before its mixture was drawn
            continue
        study.enqueue_trial(t.params, user_attrs={"candidate": label, "stage": t.user_attrs.get("stage", "sampled")})
        kept.add(label)
        log(f"trial {t.number} ({label}) was interrupted: queued again")


def search(
    cfg: Config, out: Path, domains: Sequence[str], candidates, trials: int, steps: int, log
) -> tuple[optuna.Study, dict[str, str]]:
    """Run (or continue) the study until ``trials`` trials have finished (complete or pruned)."""
    study, described = open_study(out, _search_config(cfg, steps), domains, candidates, log)
    left = trials - len(study.get_trials(deepcopy=False, states=DONE))
    if left > 0:
        try:
            study.optimize(_objective(cfg, out, domains, steps, log), n_trials=left, gc_after_trial=False)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"stopped during the reference search; rerun the same command to continue it (its finished "
                f"trials are kept in {out / JOURNAL})"
            ) from None
    return study, described


def _trial_rows(study: optuna.Study) -> list[dict]:
    """Every finished trial as the reference file records it."""
    rows = []
    for t in study.get_trials(deepcopy=False, states=DONE):
        complete = t.state == TrialState.COMPLETE
        rows.append(
            {
                "number": t.number,
                "candidate": t.user_attrs["candidate"],
                "stage": t.user_attrs["stage"],
                "state": "complete" if complete else "pruned",
                "weights": t.user_attrs["weights"],
                "val_metric": t.value if complete else t.intermediate_values[t.last_step],
                "steps": t.user_attrs["steps"],
                "seconds": t.user_attrs["seconds"],
            }
        )
    return rows


def _finalists(study: optuna.Study, n: int, natural: np.ndarray, uniform: np.ndarray) -> list[FrozenTrial]:
    """The ``n`` best complete trials, natural and uniform left out (their final runs are made anyway)."""
    chosen: list[FrozenTrial] = []
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value):
        if len(chosen) == n:
            break
        weights = np.array(t.user_attrs["weights"])
        others = [natural, uniform, *(np.array(c.user_attrs["weights"]) for c in chosen)]
        if not any(np.allclose(weights, w, atol=1e-9) for w in others):
            chosen.append(t)
    return chosen


def _finals(cfg: Config, out: Path, natural: np.ndarray, finalists: list[FrozenTrial], seeds, log) -> dict:
    """Natural, uniform and each finalist at the task's budget with every seed: {label: (weights, summaries)}.
    Natural and uniform run as their own agents, as a comparison runs them (which then reuses these runs)."""
    k = len(natural)
    mixtures = {"natural": natural, "uniform": np.full(k, 1.0 / k)}
    mixtures.update({t.user_attrs["candidate"]: np.array(t.user_attrs["weights"]) for t in finalists})
    finals: dict[str, tuple[np.ndarray, list[dict]]] = {label: (w, []) for label, w in mixtures.items()}
    for seed in seeds:
        for label, (weights, summaries) in finals.items():
            own = label in ("natural", "uniform")
            name = f"{label if own else 'finalist-' + label}-seed{seed}"
            summary = static_run(cfg, out, name, label if own else weights, seed, None, log)
            summaries.append({**summary, "run_dir": str(out / name)})
    return finals


def _budget(cfg: Config, study: optuna.Study, described: dict, finals: dict, steps: int, seeds) -> dict:
    """The ``search`` block: what the references cost (runs, steps, machine seconds) and how they were found."""
    searched = study.get_trials(deepcopy=False, states=DONE)
    summaries = [s for _, runs in finals.values() for s in runs]
    return {
        "method": METHOD,
        **described,
        "search_runs": len(searched),
        "structured": sum(t.user_attrs["stage"] == "structured" for t in searched),
        "pruned": sum(t.state == TrialState.PRUNED for t in searched),
        "search_steps": steps,
        "finalists": [label for label in finals if label not in ("natural", "uniform")],
        "final_steps": cfg.train.total_steps,
        "seeds": list(seeds),
        "runs": len(searched) + len(summaries),
        "steps": sum(t.user_attrs["steps"] for t in searched) + sum(s["steps"] for s in summaries),
        "machine_seconds": round(sum(t.user_attrs["seconds"] for t in searched) + sum(s["seconds"] for s in summaries)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cfg.train.device}, train.threads={cfg.train.threads}",
        "code": provenance.code_version(),
        "optuna": optuna.__version__,
    }


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


def _evaluation(task: str, cfg: Config, corpus, natural: list[dict], best: list[dict], log) -> dict | None:
    """The evaluation noise, from the first seed's natural and best-static models (``natural``, ``best``: the
    final runs' summaries); where those runs were restored from records (no model), the figures recorded
    before (in their folder's references.json or the shipped file)."""
    natural_dir, best_dir = Path(natural[0]["run_dir"]), Path(best[0]["run_dir"])
    if (natural_dir / "model").is_dir() and (best_dir / "model").is_dir():
        return evaluation_noise(
            cfg,
            corpus,
            natural_dir,
            best_dir,
            [s["val_metric"] for s in natural],
            [s["val_metric"] for s in best],
        )
    for path in (natural_dir.parent / "references.json", task_references_file(task)):
        earlier = json.loads(path.read_text()).get("evaluation") if path.is_file() else None
        if earlier:
            log(f"no model in {natural_dir} or {best_dir} (restored runs): evaluation noise as recorded in {path}")
            return earlier
    log(f"no model in {natural_dir} or {best_dir} (restored runs): evaluation noise not measured")
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
    trials: int = 40,
    finalists: int = 3,
    search_steps: int = 200,
    ship: bool | str | Path = False,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict:
    """Compute (or continue computing) the references of ``task``; returns what references.json holds.

    :param task: a task under configs/tasks/
    :param overrides: config overrides on top of the task (e.g. a smaller budget)
    :param out: where the run directories, the study and references.json go (default: runs/tasks/<task>)
    :param seeds: seeds of the final runs (at least 3 for the acceptance test)
    :param trials: finished trials (short runs, complete or pruned) of the search, the structured candidates first
    :param finalists: best complete trials rerun at the task's budget with every seed, beside natural and uniform
    :param search_steps: steps of each search run (the final runs use the task's budget)
    :param ship: also write the result to this path (``True``: the task's own reference file, in a source
        checkout only: ``ship_path``)
    :param command: the command line, recorded in the file
    """
    check_search(seeds, trials, finalists, search_steps)
    cfg = load_config(None, [*overrides, "task.references=none"], task=task)  # the references are what this computes
    shipped = ship_path(task, ship)  # refused before any run
    out = Path(out or Path(cfg.run.out_dir) / "tasks" / task)
    check_study(out, _search_config(cfg, search_steps))  # a study of other runs is refused before any work
    lock = rundir.RunLock(out)  # one search writes ``out`` at a time
    try:
        result = {
            **_compute(task, cfg, out, seeds, trials, finalists, search_steps, log),
            "command": command or f"acodm-gym reference --task {task}",
            "overrides": list(overrides),
            "date": time.strftime("%Y-%m-%d"),
        }
        _write(result, out, shipped)
    finally:
        lock.release()
    return result


def _compute(task: str, cfg: Config, out: Path, seeds, trials: int, finalists: int, steps: int, log) -> dict:
    """The search, the final runs and what the reference file says of them (``references``)."""
    corpus = open_corpus(cfg.data, log=log)
    domains, natural = list(corpus.domains), corpus.natural_weights()
    eval_domains = cfg.task.eval_domains or domains
    candidates = structured_candidates(domains, natural, eval_domains)
    study, described = search(cfg, out, domains, candidates, trials, steps, log)
    uniform = np.full(len(domains), 1.0 / len(domains))
    finals = _finals(cfg, out, natural, _finalists(study, finalists, natural, uniform), seeds, log)
    best = min(finals, key=lambda label: np.mean([s["val_metric"] for s in finals[label][1]]))
    weights = dict(zip(domains, finals[best][0].round(3).tolist()))
    log(f"best static mixture ({best}; {len(finals)} mixtures at the task's budget): {weights}")
    refs = {"natural": finals["natural"], "uniform": finals["uniform"], "best_static": finals[best]}
    return {
        "task": task,
        "metric": "geometric mean of the per-domain perplexities over eval_domains (exp of their mean loss)",
        "eval_domains": eval_domains,
        "domains": domains,
        "corpus": corpus_signature(corpus, cfg),
        "references": {kind: _reference(runs, w) for kind, (w, runs) in refs.items()},
        "discrimination": {
            split: _discrimination(
                [s[f"{split}_metric"] for s in refs["natural"][1]],
                [s[f"{split}_metric"] for s in refs["best_static"][1]],
            )
            for split in ("val", "test")
        },
        "evaluation": _evaluation(task, cfg, corpus, refs["natural"][1], refs["best_static"][1], log),
        "search": _budget(cfg, study, described, finals, steps, seeds),
        "best_static": best,
        "finalists": [
            {
                "candidate": label,
                "weights": w.tolist(),
                "val_metric": [s["val_metric"] for s in runs],
                "runs": [s["run_dir"] for s in runs],
            }
            for label, (w, runs) in finals.items()
        ],
        "trials": _trial_rows(study),
    }


def _write(result: dict, out: Path, shipped: Path | None) -> None:
    """``out/references.json`` and, unless ``shipped`` is None, that file (``ship_path``), each atomically (runs
    of the task read the shipped file when they start)."""
    text = json.dumps(result, indent=2)
    tmp = out / "references.json.tmp"
    tmp.write_text(text)
    tmp.replace(out / "references.json")
    if shipped is not None:  # atomically: runs of the task read the shipped file when they start
        shutil.copyfile(out / "references.json", shipped.with_suffix(".json.tmp"))
        shipped.with_suffix(".json.tmp").replace(shipped)
