"""The benchmark tasks: reference scores, then every method compared on each task.

For each task (default: skewed, noisy, target), one after another:

1. ``acodm-gym reference --task NAME --ship`` unless the task already ships its references
   (``acodm_gym/configs/tasks/<task>.references.json``): the budgeted static-mixture search on the
   validation split, then natural, uniform and the best static mixture with every seed.
2. ``acodm-gym compare --task NAME`` of ``--methods`` with ``--seeds``, into the same directory as
   the references, so their natural and uniform runs are reused, not rerun.
3. The report of those runs, the references' best static mixture beside them, and the learned policy that
   ``learned_tuning.py`` chose on validation and scored frozen (``results/tuning/learned-<task>-<agent>.json``),
   a row ``<agent>-learned-tuned`` read from its kept records (the sweep does not train it): one row per agent on
   every task, whichever variant each task's choice picked, so the summary aggregates the procedure across tasks.

Every finished run's record (config, summary, mixture schedule; ``acodm_gym.runs.records``) is kept in
``benchmarks/results/tasks/runs/<task>/`` as soon as the run finishes (a sweep killed at any point loses
only the run in progress, which resumes from its last checkpoint), and that folder is committed: a run
directory missing from ``--out`` (a fresh clone, another session) is restored from it first, so a sweep
continues where any earlier session stopped instead of starting again. A record of other code or
another corpus (``acodm_gym.runs.provenance``; also every record made before runs kept their code
version) is stale: it is trained again, or kept with ``--keep-stale``, and the results name the code
versions of their runs.

Writes, per task, ``benchmarks/results/tasks/<task>.json`` (the keys of compare's results.json:
task, metric_domains, references, methods; plus the references' discrimination and evaluation-noise
figures, the command, date and machine), ``<task>.md`` and the plots in ``<task>/``, then rewrites
``benchmarks/RESULTS.md`` (``results_md.py``). Every run is a
run directory under ``--out``: rerunning the same command continues where it stopped.

    python benchmarks/tasks.py                                  # 3 tasks, 3 seeds, 8 methods
    python benchmarks/tasks.py --tasks noisy --methods natural,uniform,odm
    python benchmarks/tasks.py --references-only                # only step 1
    python benchmarks/tasks.py --report-only                    # write the results of the runs finished so far
    python benchmarks/tasks.py --keep-stale                     # reuse stale records instead of rerunning them
    python benchmarks/tasks.py --tasks skewed train.threads=1    # config overrides go to every run
    python benchmarks/tasks.py --tasks skewed --methods offline agent.options.reward=metric train.threads=1

The ``offline`` method learns from the task's dataset episodes (``runs/datasets/<task>/``, what
``benchmarks/datasets.py`` builds) unless ``agent.options.dataset`` is given.

Two sweeps can share this machine's two cores only with ``train.threads=1`` each: the default
config asks for two threads, and four threads on two cores run each step about 2.5x slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from learned_tuning import TUNING, kept_dir  # benchmarks/learned_tuning.py: its choices and kept runs
from results_md import write as write_results_md  # benchmarks/results_md.py, beside this script

from acodm_gym.cli import parse_args
from acodm_gym.config import LEARNED, METHODS, load_config, task_references_file
from acodm_gym.envs.task import search_budget
from acodm_gym.runs import provenance, rundir, stats
from acodm_gym.runs.compare import compare, mean_interval, method_run_dir, report
from acodm_gym.runs.learn import scoring_dir
from acodm_gym.runs.records import restore_records, save_records
from acodm_gym.runs.reference import references

RESULTS = Path(__file__).resolve().parent / "results" / "tasks"
ALL_METHODS = (*METHODS, "acodm-td3", "doge", "vector-sac")  # the sweep's default: compare's, and these
RECORDS = RESULTS / "runs"
DATASETS = Path("runs") / "datasets"  # where benchmarks/datasets.py builds each task's offline episodes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="skewed,noisy,target")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument("--out", default="runs/tasks", help="where the run directories go (one folder per task)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. train.threads=1")
    parser.add_argument("--references-only", action="store_true")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: report the runs finished so far (a partial sweep, marked as such)",
    )
    parser.add_argument(
        "--keep-stale",
        action="store_true",
        help="reuse records of other code versions or corpora (named in the results) instead of rerunning them",
    )
    args = parse_args(parser, argv)  # overrides anywhere, also after --seeds
    command = " ".join(["python", "benchmarks/tasks.py", *(argv if argv is not None else sys.argv[1:])])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    RESULTS.mkdir(parents=True, exist_ok=True)
    for task in args.tasks.split(","):
        out = Path(args.out) / task
        out.mkdir(parents=True, exist_ok=True)
        started = time.time()
        restored = restore_records(RECORDS / task, out)
        if restored:
            print(f"{task}: {len(restored)} finished runs restored from {RECORDS / task}")
        try:
            _sweep(task, out, args, command, machine, started)
        finally:  # whatever finished is kept, also when the sweep stops
            save_records(out, RECORDS / task)
    write_summary()
    write_results_md()  # benchmarks/RESULTS.md, the tables of every results file
    return 0


def write_summary() -> None:
    """``results/tasks/summary.md``: the normalised score of every method on every task with results, as
    mean ± std over seeds, the 95 % interval's half-width and the number of seeds; then the IQM with
    bootstrap intervals and the probability of improvement per task and across tasks (``stats``), the
    performance profile (``profile.png``) and the code versions the runs came from."""
    tasks = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    methods = list(dict.fromkeys(m for r in tasks.values() for m in r["methods"]))
    lines = [
        "# Normalised scores on the benchmark tasks (test split)",
        "",
        "100 × (natural − method) / (natural − best static) on the task metric; mean ± std over seeds "
        "[95 % Student-t interval half-width] (seeds). Written by `python benchmarks/tasks.py` from "
        "`results/tasks/<task>.json`; a task marked partial has not every method with every seed yet.",
        "",
        *_code_lines(tasks),
        "The search behind each task's 100 (its budget, beside every score):",
        "",
        *(f"- {t}: {_budget_text(r)}" for t, r in tasks.items()),
        "",
        "| method | " + " | ".join(f"{t}{'' if r.get('complete') else ' (partial)'}" for t, r in tasks.items()) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for m in methods:
        cells = []
        for r in tasks.values():
            scores = [s for s in r["methods"].get(m, {}).get("score", []) if s is not None]
            ci = mean_interval(scores)
            if ci is not None:
                cells.append(f"{ci[0]:.1f} ± {np.std(scores, ddof=1):.1f} [{ci[1]:.1f}] ({len(scores)})")
            else:
                cells.append(f"{scores[0]:.1f} (1)" if scores else "")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += _rl_lines(tasks)
    rundir.write_text(RESULTS / "summary.md", "\n".join(lines) + "\n")  # atomically


def _budget_text(results: dict) -> str:
    """The search budget behind a task's scores, as its results file recorded it."""
    if "reference_search" in results:
        return search_budget(results["reference_search"]) or "no references: no scores"
    return "not recorded (results written before reference budgets were): rerun with --report-only"


def _rl_lines(tasks: dict[str, dict]) -> list[str]:
    """The IQM and probability-of-improvement tables of the tasks with references, per task and across
    them (``stats``), and their performance profile ``profile.png``."""
    scored = [t for t, r in tasks.items() if r.get("references")]  # a normalised score needs the references
    if not scored:
        return []
    scores: dict[str, dict[str, dict[int, float]]] = {}
    for t in scored:
        for m, r in tasks[t]["methods"].items():
            scores.setdefault(m, {})[t] = {s: v for s, v in zip(r["seeds"], r["score"]) if v is not None}
    mats = stats.matrices(scores, scored)
    stats.plot_profiles(mats, RESULTS / "profile.png", f"Performance profile ({', '.join(scored)})")
    return [
        "",
        *stats.rl_tables(scores, scored),
        "`profile.png`: the performance profile across these tasks (the seeds every task has), 95 % bands.",
    ]


def _code_lines(tasks: dict[str, dict]) -> list[str]:
    """Which code versions the tasks' runs came from (runs recorded before code versions were kept: unknown)."""
    lines = ["Code versions of the runs (`acodm_gym/runs/provenance.py`):", ""]
    for task, r in tasks.items():
        made = r.get("provenance") or {"code_versions": {provenance.UNKNOWN: None}}
        lines.append(f"- {task}: " + "; ".join(f"{v} ({n or 'all'} runs)" for v, n in made["code_versions"].items()))
    return [*lines, ""]


def chosen_policies(task: str, seeds: list[int]) -> dict[str, dict]:
    """The learned policies that ``learned_tuning.py`` chose on validation and scored frozen, as rows of the task's
    table: ``<agent>-learned-tuned`` -> its agent, the chosen variant and the kept records of its test runs of
    ``seeds`` (none for a choice not scored yet)."""
    policies = {}
    for path in sorted(TUNING.glob(f"learned-{task}-*.json")):  # learned_tuning's learned-<task>-<agent>.json
        tuned = json.loads(path.read_text())
        agent, chosen = tuned["agent"], tuned["chosen"]
        learn_dir = kept_dir(task, agent, chosen) / "runs" / f"{agent}{LEARNED}"
        episodes = len(tuned["variants"][chosen]["train_seeds"])
        runs = [scoring_dir(learn_dir, episodes, s) for s in seeds]
        policies[f"{agent}{LEARNED}-tuned"] = {
            "agent": agent,
            "variant": chosen,
            "runs": [str(r) for r in runs if (r / "summary.json").is_file()],
        }
    return policies


def _sweep(task: str, out: Path, args, command: str, machine: str, started: float) -> None:
    """References (unless shipped), then compare, then the task's results files."""
    shipped = task_references_file(task)
    if not shipped.exists() and not args.report_only:
        references(
            task,
            ["run.progress=false", *args.overrides],
            out=out,
            seeds=args.seeds,
            ship=True,
            command=" ".join(
                ["acodm-gym reference", f"--task {task} --ship --out {out} --seeds", *map(str, args.seeds)]
                + args.overrides
            ),
        )
    refs = json.loads(shipped.read_text()) if shipped.exists() else None
    if args.references_only:
        return
    methods = args.methods.split(",")
    overrides = args.overrides
    if "offline" in methods and not any(o.startswith("agent.options.dataset=") for o in overrides):
        overrides = [*overrides, f"agent.options.dataset=[{DATASETS / task}]"]  # the task's dataset episodes
    if not args.report_only:
        compare(
            load_config(None, ["run.progress=false", *overrides], task=task),
            seeds=args.seeds,
            methods=methods,
            out=out,
            on_run=lambda _: save_records(out, RECORDS / task),  # each finished run's record at once
            keep_stale=args.keep_stale,
        )
    # the report: every finished run of the methods, and the references' best static mixture beside them
    cfg = load_config(None, overrides, task=task)  # where a learned method's runs are: learn.episodes
    where = {m: [method_run_dir(cfg, m, s, out) for s in args.seeds] for m in methods}
    runs = {m: [str(r) for r in rs if (r / "summary.json").exists()] for m, rs in where.items()}
    best = refs["references"]["best_static"] if refs else {"runs": [], "seeds": []}
    runs["best-static"] = [  # its runs are named by the candidate the search found (finalist-<candidate>-seed<s>)
        str(out / Path(r).name)
        for r, s in zip(best["runs"], best["seeds"])
        if s in args.seeds and (out / Path(r).name / "summary.json").exists()
    ]
    learned = {m: p for m, p in chosen_policies(task, args.seeds).items() if p["runs"]}
    runs.update({m: p["runs"] for m, p in learned.items()})
    runs = {m: r for m, r in runs.items() if r}
    if not runs:
        return
    (out / "compare.json").write_text(json.dumps({"methods": list(runs), "seeds": args.seeds, "runs": runs}, indent=2))
    report(out)
    results = json.loads((out / "results.json").read_text())
    results.update(
        discrimination=refs and refs["discrimination"],
        evaluation=refs and refs.get("evaluation"),
        reference_search=refs and refs["search"],
        complete=all(len(results["methods"].get(m, {}).get("seeds", [])) == len(args.seeds) for m in methods),
        command=command,
        date=time.strftime("%Y-%m-%d"),
        machine=machine,
        seconds=round(time.time() - started),
    )
    rundir.write_text(RESULTS / f"{task}.json", json.dumps(results, indent=2))
    header = [f"# Task `{task}` ({results['date']})", "", f"Command: `{command}` on {machine}.", ""]
    if not results["complete"]:
        header += ["**Partial**: not every method has run with every seed yet; rerun without --report-only.", ""]
    for m, p in learned.items():
        header += [
            f"Row `{m}`: the variant `{p['variant']}` that `benchmarks/learned_tuning.py` chose on validation "
            f"(`results/tuning/learned-{task}-{p['agent']}.md`), frozen and scored on these test seeds; its runs' "
            f"records are in `results/learn/{task}-{p['agent']}-{p['variant']}/runs/`.",
            "",
        ]
    if refs:
        d = refs["discrimination"]["test"]
        verdict = "discriminates" if d["discriminates"] else "does NOT discriminate"
        header += [
            f"References: best static beats natural by {d['gap']:.2f} on the test metric, "
            f"{d['gap_over_std'] or float('nan'):.1f}x the pooled seed std ({verdict}); {search_budget(refs['search'])}.",
            "",
        ]
    else:
        header += [
            "No reference scores yet (`acodm-gym reference --task " + task + " --ship`): no normalised scores.",
            "",
        ]
    rundir.write_text(RESULTS / f"{task}.md", "\n".join(header) + (out / "report.md").read_text())
    plots = RESULTS / task
    plots.mkdir(exist_ok=True)
    # the report's plots: a method's weights only while it is in the report (``out`` keeps earlier reports' too)
    made = {p.name for p in out.glob("*.png") if not p.name.startswith("weights_") or p.stem[len("weights_") :] in runs}
    for png in plots.glob("*.png"):
        if png.name not in made:
            png.unlink()
    for name in made:
        shutil.copy(out / name, plots / name)
    print((RESULTS / f"{task}.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
