"""Write ``benchmarks/RESULTS.md``: every measured result, as tables generated from the results files, so
that no figure in it is typed by hand (the docs site shows it as its Results page).

    python benchmarks/results_md.py            # write benchmarks/RESULTS.md
    python benchmarks/results_md.py --check    # exit 1 if RESULTS.md is not what the results files give

Per benchmark task, from ``results/tasks/<task>.json`` (``benchmarks/tasks.py`` writes it) and the task's
shipped reference file: one table of every method (normalised score as mean ± std with its 95 % Student-t
half-width, IQM with its stratified bootstrap 95 % interval, probability of improvement, test metric,
steps to ODM's best, seconds per step), the references, their search, the evaluation noise and the agent
diagnostics; then the IQM across tasks. Then each other benchmark's own report (``results/<name>.md``, which
its script writes from the same measurements as ``<name>.json``), headings moved down two levels. Every
section names the code version its figures came from; results recorded before runs kept one are marked
stale. ``benchmarks/tasks.py`` rewrites this file after a sweep.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from acodm_gym.config import task_references_file
from acodm_gym.envs.task import search_budget
from acodm_gym.runs import provenance, stats
from acodm_gym.runs.compare import diagnostics_lines, mean_interval

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OUT = HERE / "RESULTS.md"
# the anchored actor's runs made before its objective was centred (docs/findings.md, "A fault in the anchored actor")
BEFORE_FIX = "made before the anchored objective's fix (7fbaf97: its deviation froze)"
# The other benchmarks' reports, in reading order, with their section titles; a report not named here is
# appended after them under its own file name.
REPORTS = {
    "overhead": "Per-step overhead",
    "mixing": "Mixing quality",
    "ablations": "Ablations",
    "eval_noise": "Evaluation size",
    "tuning/noisy": "AC-ODM variants on Noisy",
    "reward_scale": "The alignment reward at scale",
    "reward_scale_timing": "The alignment reward at scale: time per step on a quiet machine",
    "reward_scale_mixture": "The alignment reward at scale: AC-ODM with the sketch",
    "episodes": "Episodes per hour: training and scoring episodes",
    "reward_ranking": "Does the reward rank the domains as the best static mixture weights them?",
    "learn/noisy-acodm-anchored-5ep/report": "A learned policy on Noisy: AC-ODM's anchored actor after 5 training "
    f"episodes, frozen, {BEFORE_FIX} (`acodm-gym compare --task noisy --methods acodm-learned --seeds 0 1 2 3 4 "
    "agent.options.actor=anchored agent.options.anchor=uniform learn.episodes=5 train.threads=1`)",
    **{
        f"learn/{task}-acodm-anchored-5ep{suffix}/report": f"A learned policy on {task.capitalize()}: the same "
        f"configuration{what}, {BEFORE_FIX} (`acodm-gym compare --task {task} --methods acodm-learned --seeds 0 1 2 3 4 "
        f"agent.options.actor=anchored agent.options.anchor=uniform learn.episodes=5{override} train.threads=1`)"
        for task, suffix, what, override in [
            ("skewed", "", "", ""),
            ("target", "", "", ""),
            ("target", "-eval-reward", ", rewarded by the evaluated domains", " env.reward_target=eval_domains"),
        ]
    },
    **{
        f"tuning/learned-{task}-acodm": f"A learned policy on {task.capitalize()}, chosen on validation: the anchored "
        f"actor (objective fixed) with the prior pull λ at {grid}, 5 training episodes each (`python "
        f"benchmarks/learned_tuning.py --task {task} --variants {variants} --score learn.episodes=5 train.threads=1`)"
        for task, grid, variants in [
            (
                "target",
                "1, 3, 10 or 30, rewarded by the evaluated domain (λ = 1 added after λ = 3's test figures were read; "
                "it lost on validation, so the choice and its test figures stand)",
                "anchored-eval,anchored-eval-lambda-1,anchored-eval-lambda-10,anchored-eval-lambda-30",
            ),
            ("skewed", "3, 10 or 30", "anchored,anchored-lambda-10,anchored-lambda-30"),
            (
                "noisy",
                "3 with the corpus reward, or at 1, 3 or 10 rewarded by the evaluated domains (the planted ones left out)",
                "anchored,anchored-eval,anchored-eval-lambda-1,anchored-eval-lambda-10",
            ),
        ]
    },
    **{
        f"learn/{task}-acodm-{variant}/report": f"The policy chosen on {task.capitalize()} (λ = {lam}), frozen, on test "
        f"seeds 0-4 (its report; `learned_tuning.py ... --score` runs `acodm-gym compare --task {task} --methods "
        f"acodm-learned --seeds 0 1 2 3 4 agent.options.actor=anchored agent.options.anchor=uniform{extra} "
        "learn.episodes=5 train.threads=1` in the variant's directory)"
        for task, variant, lam, extra in [
            ("target", "anchored-eval", 3, " env.reward_target=eval_domains"),
            ("skewed", "anchored-lambda-30", 30, " agent.options.prior_coef=30"),
            ("noisy", "anchored-eval", 3, " env.reward_target=eval_domains"),
        ]
    },
}
STALE = "stale: no code version"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    if not args.check:
        write()
        print(f"written: {OUT}")
        return 0
    if OUT.exists() and OUT.read_text() == text:
        return 0
    print(f"error: {OUT} is not what the results files give; regenerate it: python benchmarks/results_md.py")
    return 1


def write() -> None:
    """Write RESULTS.md (whole or not at all)."""
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text(render())
    tmp.replace(OUT)


def render() -> str:
    """RESULTS.md's text from the results files."""
    tasks = {p.stem: json.loads(p.read_text()) for p in sorted((RESULTS / "tasks").glob("*.json"))}
    lines = [
        "# Results",
        "",
        "<!-- generated by `python benchmarks/results_md.py` from benchmarks/results/; do not edit: rerun it -->",
        "",
        "Every table here is generated from the results files under `benchmarks/results/` (and the tasks' "
        "shipped reference files) by `python benchmarks/results_md.py`; `--check` fails when this file differs "
        f"from them. Each section names the code version of its figures: `{STALE}` marks results recorded "
        "before runs kept their code version (`acodm_gym/runs/provenance.py`), which a sweep would rerun.",
        "",
        "## Benchmark tasks",
        "",
        "Normalised score: 100 × (natural − method) / (natural − best static) on the task metric, test split "
        "(0: the natural mixture, 100: the best static mixture of the reference search). Mean ± std over seeds "
        "[95 % Student-t half-width]; IQM: interquartile mean [stratified bootstrap 95 % interval] (rliable, "
        "`acodm_gym/runs/stats.py`); P(> uniform), P(> odm): the chance that a run of the method scores above a "
        "run of the baseline (0.5: no difference). Per task also in `benchmarks/results/tasks/<task>.md`, with "
        "per-domain perplexities and plots.",
        "",
    ]
    for task, result in tasks.items():
        lines += task_section(task, result)
    if len(tasks) > 1:
        lines += across_tasks(tasks)
    for name in [*REPORTS, *sorted(others())]:
        if (RESULTS / f"{name}.md").exists():
            lines += report_section(name)
    return "\n".join(lines).rstrip("\n") + "\n"


def code_line(versions: dict[str, int | None]) -> str:
    """``Code version: ...`` for {version description: runs or None}, a missing version marked stale."""
    return "Code version: " + "; ".join(
        (STALE if v == provenance.UNKNOWN else f"`{v}`") + (f" ({n} runs)" if n else "") for v, n in versions.items()
    )


def run_versions(result: dict) -> dict[str, int | None]:
    """A compare report's code versions of its runs (``results.json``): {version description: runs}."""
    return (result.get("provenance") or {"code_versions": {provenance.UNKNOWN: None}})["code_versions"]


def task_scores(result: dict) -> dict[str, dict[str, dict[int, float]]]:
    """``{method: {task: {seed: score}}}`` for ``stats``, the runs without a score left out."""
    task = result["task"]
    return {
        m: {task: {s: v for s, v in zip(r["seeds"], r["score"]) if v is not None}} for m, r in result["methods"].items()
    }


def _mean_std(values: list) -> str:
    present = [v for v in values if v is not None]
    ci = mean_interval(present)
    if ci is None:
        return f"{present[0]:.1f}" if present else ""
    return f"{ci[0]:.1f} ± {np.std(present, ddof=1):.1f} [{ci[1]:.1f}]"


def _steps(steps: list) -> str:
    reached = [s for s in steps if s is not None]
    return f"{np.mean(reached):.0f} ({len(reached)}/{len(steps)})" if reached else f"not reached (0/{len(steps)})"


def task_section(task: str, result: dict) -> list[str]:
    """One task: its method table, references, reference search, evaluation noise and agent diagnostics."""
    lines = [
        f"### `{task}`",
        "",
        f"`{result['command']}` ({result['date']}, {result['machine']}); metric domains: "
        + ", ".join(result["metric_domains"])
        + ("." if result.get("complete") else "; **partial**: not every method has every seed yet."),
        "",
        code_line(run_versions(result)) + ".",
        "",
    ]
    scores = task_scores(result)
    mats = stats.matrices(scores, [task])
    iqm = stats.iqm_intervals(mats)
    better = {b: stats.improvement(mats, b) for b in stats.BASELINES}
    lines += [
        "| method | seeds | score: mean ± std [95 %] | score: IQM [95 %] | "
        + " | ".join(f"P(> {b})" for b in stats.BASELINES)
        + " | test metric: mean ± std [95 %] | steps to ODM's best (seeds) | s/step |",
        "|---|---|---|---|" + "---|" * len(stats.BASELINES) + "---|---|---|",
    ]
    for method, r in result["methods"].items():
        est = iqm.get(method)
        cells = [
            method,
            str(len(r["seeds"])),
            _mean_std(r["score"]),
            f"{est[0]:.1f} [{est[1]:.1f}, {est[2]:.1f}]" if est else "",
            *(f"{better[b][method]:.2f}" if method in better[b] else "n/a" for b in stats.BASELINES),
            _mean_std(r["test_metric"]),
            _steps(r["steps_to_odm_best"]),
            f"{np.mean(r['seconds_per_step']):.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if result.get("references"):
        lines += references_lines(task, result)
    return [*lines, *diagnostics_lines(result["methods"])]


def references_lines(task: str, result: dict) -> list[str]:
    """The task's reference scores, the search that found the best static mixture, and the evaluation noise."""
    shipped = json.loads(task_references_file(task).read_text())
    d = result["discrimination"]
    lines = [
        f"References (`acodm_gym/configs/tasks/{task}.references.json`, {shipped['date']}: `{shipped['command']}`). "
        "Best static beats natural by "
        + "; ".join(
            f"{d[s]['gap']:.1f} on {name} ({d[s]['gap_over_std']:.1f}× the pooled seed std)"
            for s, name in (("val", "validation"), ("test", "test"))
        )
        + f": the task {'discriminates' if d['test']['discriminates'] else 'does NOT discriminate'} (bar: 5×).",
        "",
        "| reference | seeds | validation metric per seed | test metric per seed | test: mean ± std | weights |",
        "|---|---|---|---|---|---|",
    ]
    domains = shipped["domains"]
    for name, r in result["references"].items():
        weights = ", ".join(f"{dom} {w:.2f}" for dom, w in zip(domains, r["weights"]))
        lines.append(
            f"| {name} | {len(r['seeds'])} | {', '.join(f'{v:.1f}' for v in r['val_metric'])} "
            f"| {', '.join(f'{v:.1f}' for v in r['test_metric'])} "
            f"| {np.mean(r['test_metric']):.1f} ± {np.std(r['test_metric'], ddof=1):.1f} | {weights} |"
        )
    stages: dict[str, list[float]] = {}
    for run in shipped["trials"]:
        if run.get("val_metric") is not None:  # a pruned trial has no final validation metric
            stages.setdefault(run.get("stage", "search"), []).append(run["val_metric"])
    search = shipped["search"]
    lines += [
        "",
        f"Reference search ({search_budget(search)}; {search['search_steps']} steps per search run, seed 0, "
        "validation split):",
        "",
        "| stage | runs | best validation metric | worst |",
        "|---|---|---|---|",
        *(f"| {s} | {len(v)} | {min(v):.1f} | {max(v):.1f} |" for s, v in stages.items()),
        "",
    ]
    ev = result.get("evaluation")
    if ev:
        lines += [
            "Evaluation noise against seed noise (the models of `"
            + "`, `".join(Path(r).name for r in ev["runs"])
            + f"`; seed spread: std of the log validation metric over seeds, {100 * ev['seed_rel_std']:.2f} %):",
            "",
            "| split | tokens per domain | one model's metric (SE) | a comparison: two models on the same "
            "sequences (SE) | paired SE / seed spread | tokens per domain for a third of the seed spread "
            "(one model / paired) |",
            "|---|---|---|---|---|---|",
        ]
        for split in ("validation", "test"):
            e = ev[split]
            lines.append(
                f"| {split} | {e['tokens_per_domain']:,} | {100 * e['metric_rel_se']:.2f} % "
                f"| {100 * e['paired_rel_se']:.2f} % | {e['paired_rel_se'] / ev['seed_rel_std']:.2f} "
                f"| {e['metric_tokens_per_domain_for_se_third_of_seed_std']:,} "
                f"/ {e['paired_tokens_per_domain_for_se_third_of_seed_std']:,} |"
            )
        lines.append("")
    return lines


def across_tasks(tasks: dict[str, dict]) -> list[str]:
    """The IQM and probability of improvement across the tasks with references (the seeds every task has)."""
    scored = [t for t, r in tasks.items() if r.get("references")]
    scores: dict[str, dict[str, dict[int, float]]] = {}
    for t in scored:
        for m, by_task in task_scores(tasks[t]).items():
            scores.setdefault(m, {}).update(by_task)
    mats = stats.matrices(scores, scored)
    iqm = stats.iqm_intervals(mats)
    better = {b: stats.improvement(mats, b) for b in stats.BASELINES}
    lines = [
        f"### All tasks ({', '.join(scored)})",
        "",
        "Across tasks a method's runs are the seeds every task has for it; methods missing a task are left out.",
        "",
        "| method | runs per task | IQM [95 %] | " + " | ".join(f"P(> {b})" for b in stats.BASELINES) + " |",
        "|---|---|---|" + "---|" * len(stats.BASELINES),
    ]
    for method, (point, low, high) in iqm.items():
        cells = [f"{better[b][method]:.2f}" if method in better[b] else "n/a" for b in stats.BASELINES]
        lines.append(
            f"| {method} | {len(mats[method])} | {point:.1f} [{low:.1f}, {high:.1f}] | " + " | ".join(cells) + " |"
        )
    return [*lines, ""]


def others() -> list[str]:
    """Reports under results/ that REPORTS does not name (the tasks' own are covered above)."""
    found = [p.relative_to(RESULTS).with_suffix("").as_posix() for p in RESULTS.rglob("*.md")]
    return [n for n in found if n not in REPORTS and not n.startswith("tasks/")]


def report_section(name: str) -> list[str]:
    """A benchmark's own report under its section title, with the code version its JSON records (a compare
    report, ``<dir>/report``: its runs' versions, in ``<dir>/results.json``)."""
    compared = name.endswith("/report")
    source = RESULTS / (f"{name.removesuffix('report')}results.json" if compared else f"{name}.json")
    data = json.loads(source.read_text()) if source.exists() else {}
    if compared:
        versions = run_versions(data)
    else:  # eval_noise.json holds one measurement per task, each with its own code version; episodes.json and
        # reward_ranking.json hold theirs under "tasks"
        per_task = data.get("tasks", data)
        codes = [data.get("code")] if "code" in data or "date" in data else [v.get("code") for v in per_task.values()]
        versions = {provenance.describe(c): None for c in codes} if data else {}
    body, fence = [], False
    for line in (RESULTS / f"{name}.md").read_text().splitlines():
        fence ^= line.startswith("```")
        body.append("##" + line if line.startswith("#") and not fence else line)
    return [
        f"## {REPORTS.get(name, name)}",
        "",
        f"From `benchmarks/results/{name}.md`"
        + (f" and `{source.relative_to(RESULTS)}`" if data else "")
        + ". "
        + (code_line(versions) if versions else "Code version: not recorded")
        + ".",
        "",
        *body,
        "",
        *(mixing_test_lines(data) if name == "mixing" else []),
    ]


def mixing_test_lines(data: dict) -> list[str]:
    """The per-domain test perplexity of the mixing comparison (in mixing.json; its report shows validation)."""
    methods = data["methods"]
    domains = list(next(iter(methods.values()))["test_ppl"])
    return [
        "Per-domain test perplexity (mean over seeds, from `mixing.json`):",
        "",
        "| method | " + " | ".join(domains) + " |",
        "|---|" + "---|" * len(domains),
        *(f"| {m} | " + " | ".join(f"{r['test_ppl'][d]:.1f}" for d in domains) + " |" for m, r in methods.items()),
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
