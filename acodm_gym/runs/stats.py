"""Statistics for few seeds, the way RL benchmarks now report them (Agarwal et al., 2021, with rliable).

For normalised scores over a handful of seeds per task:

* the **interquartile mean** (IQM: the mean of the middle 50 % of runs, robust to one outlying seed and
  less noisy than the median) with a 95 % **stratified bootstrap** interval (runs are resampled within
  each task), per task and across tasks;
* the **probability of improvement** P(X > Y): the chance that a run of method X scores above a run of Y
  on the same task (the Mann-Whitney statistic), averaged over tasks;
* the **performance profile**: the fraction of runs scoring above each threshold τ, with bootstrap bands.

Scores are given as ``{method: {task: {seed: score}}}``. Across tasks a method's matrix holds the seeds
every one of its tasks has (rliable's bootstrap needs as many runs on each task). The bootstrap draws
from numpy's global generator (rliable does), seeded with ``SEED`` here and restored afterwards, so a
report is the same every time it is written.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
from rliable import library as rly
from rliable import metrics, plot_utils

from .plots import plt

SEED = 0
# Bootstrap resamples (rliable's default for profiles; its IQM default of 50,000 takes minutes per table in
# arch's Python loop). With 3-5 seeds the bounds are discrete: on a 5-seed case they moved by up to 0.8 points
# between seeds of the bootstrap.
REPS = 2_000
BASELINES = ("uniform", "odm")  # the probability of improvement of each method over these

Scores = Mapping[str, Mapping[str, Mapping[int, float]]]


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """numpy's global generator seeded for rliable's bootstrap, then put back as it was."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def matrices(scores: Scores, tasks: list[str]) -> dict[str, np.ndarray]:
    """Each method's (runs × tasks) score matrix over the seeds all ``tasks`` have for it (methods with no
    such seed, or missing a task, are left out)."""
    out = {}
    for method, by_task in scores.items():
        if not all(by_task.get(t) for t in tasks):
            continue
        seeds = sorted(set.intersection(*(set(by_task[t]) for t in tasks)))
        if seeds:
            out[method] = np.array([[by_task[t][s] for t in tasks] for s in seeds], dtype=np.float64)
    return out


def iqm_intervals(
    mats: Mapping[str, np.ndarray], reps: int = REPS, seed: int = SEED
) -> dict[str, tuple[float, float, float]]:
    """Each method's IQM and the bounds of its stratified bootstrap 95 % interval (each method's bootstrap
    seeded alike, so its interval does not depend on the other methods in the table)."""
    out = {}
    for method, x in mats.items():
        with _seeded(seed):
            point, interval = rly.get_interval_estimates(
                {method: x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps
            )
        out[method] = (float(point[method][0]), float(interval[method][0, 0]), float(interval[method][1, 0]))
    return out


def improvement(mats: Mapping[str, np.ndarray], baseline: str) -> dict[str, float]:
    """P(method > ``baseline``) for every method (empty without the baseline)."""
    if baseline not in mats:
        return {}
    return {m: float(metrics.probability_of_improvement(x, mats[baseline])) for m, x in mats.items()}


def plot_profiles(mats: Mapping[str, np.ndarray], path: Path, title: str) -> None:
    """The performance profiles (score distributions) with their 95 % bootstrap bands; none without a method that
    has every task (``matrices``)."""
    if not mats:
        return
    every = np.concatenate([x.ravel() for x in mats.values()])
    taus = np.linspace(min(0.0, every.min()), max(100.0, every.max()), 41)
    with _seeded(SEED):
        profiles, bands = rly.create_performance_profile(dict(mats), taus, reps=REPS)
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_utils.plot_performance_profiles(
        profiles,
        taus,
        performance_profile_cis=bands,
        ax=ax,
        xlabel="normalised score τ",
        labelsize="medium",
        ticklabelsize="medium",
    )
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell(estimate: tuple[float, float, float] | None) -> str:
    return f"{estimate[0]:.1f} [{estimate[1]:.1f}, {estimate[2]:.1f}]" if estimate else ""


def rl_tables(scores: Scores, tasks: list[str], reps: int = REPS) -> list[str]:
    """Markdown: the IQM [95 % interval] per task (and across tasks when there are several), then the
    probability of improvement over each of ``BASELINES``, per task and across tasks."""
    columns = tasks + (["all tasks"] if len(tasks) > 1 else [])
    subsets = {t: [t] for t in tasks} | ({"all tasks": tasks} if len(tasks) > 1 else {})
    mats = {c: matrices(scores, subset) for c, subset in subsets.items()}
    iqm = {c: iqm_intervals(mats[c], reps) for c in columns}
    better = {(c, b): improvement(mats[c], b) for c in columns for b in BASELINES}
    lines = [
        "IQM of the normalised score [stratified bootstrap 95 % interval] (rliable; across tasks: the seeds every "
        "task has):",
        "",
        "| method | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    lines += [f"| {m} | " + " | ".join(_cell(iqm[c].get(m)) for c in columns) + " |" for m in scores]
    lines += [
        "",
        f"Probability of improvement P(method > {' / '.join(BASELINES)}) (a run of the method scores above a run of "
        "the baseline on the same task; 0.5: no difference):",
        "",
        "| method | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for m in scores:
        cells = [
            " / ".join(f"{better[c, b][m]:.2f}" if m in better[c, b] else "n/a" for b in BASELINES) for c in columns
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return [*lines, ""]
