#!/usr/bin/env python
"""A learned policy's hyper-parameters chosen on validation, then only the chosen one scored on test seeds.

Each variant (config overrides of the agent, the reward) is trained with the ``learn`` protocol
(runs/learn.py) over ``learn.episodes`` training episodes on model seeds ``learn.first_seed``, ... (never
a test seed), training only: no test seed is run. The choice reads the curve's validation proxy, the task
metric of each training episode's last validation, by a rule fixed before any figure was read:

    the variant with the lowest mean validation metric over the last half (rounded up) of its training
    episodes: the policy nearest the one that is frozen, and not one episode's noise.

With ``--score`` the chosen variant alone is then scored, frozen, on ``--seeds`` (the test seeds) by compare's
``<agent>-learned`` method in the variant's directory, which reuses its training episodes. So the test
figures are read once, after the choice; the other variants never meet a test seed. With ``--train-runs N``
the chosen variant is trained N times, training run r on the levels ``learn.first_seed + 1000·r``, ... (its
agent seeded by the first of them), each frozen and scored on the same test seeds: the spread over training
runs, which the test seeds of one run do not measure. Run 0 is the one the choice read.

    python benchmarks/learned_tuning.py --task target \\
        --variants anchored-eval,anchored-eval-lambda-10,anchored-eval-lambda-30 learn.episodes=5 train.threads=1
    python benchmarks/learned_tuning.py --task target \\
        --variants anchored-eval,anchored-eval-lambda-10,anchored-eval-lambda-30 --score learn.episodes=5 train.threads=1
    python benchmarks/learned_tuning.py --task target \\
        --variants anchored-eval,anchored-eval-lambda-10,anchored-eval-lambda-30 --score --train-runs 3 learn.episodes=5

Run the same command again and it continues (finished episodes and runs are reused, a stopped one resumes).
Writes ``results/tuning/learned-<task>-<agent>.{json,md}`` (every variant's validation curve, the choice, and the
chosen variant's test scores, per training run); the runs go under ``--out/<task>/<variant>/`` (the learn directory
is ``<agent>-learned/`` inside; training run r >= 1 under ``run-<r>/``); the scored variant's report, results, curve
and run records are kept in ``results/learn/<task>-<agent>-<variant>/`` (training run r >= 1: its ``run-<r>/``).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from acodm_tuning import references_line  # benchmarks/acodm_tuning.py, beside this script
from scipy.stats import spearmanr

from acodm_gym.cli import parse_args
from acodm_gym.config import LEARNED, load_config
from acodm_gym.envs.task import read_references
from acodm_gym.runs import learn, rundir
from acodm_gym.runs.compare import compare, for_agent, mean_interval
from acodm_gym.runs.logger import read_metrics
from acodm_gym.runs.provenance import code_version
from acodm_gym.runs.records import save_records

RESULTS = Path(__file__).resolve().parent / "results"
TUNING = RESULTS / "tuning"  # each choice: learned-<task>-<agent>.{json,md}
RUN_STRIDE = 1000  # training run r trains on the levels learn.first_seed + RUN_STRIDE·r, ...
ANCHORED = ["agent.options.actor=anchored", "agent.options.anchor=uniform"]
EVAL_REWARD = ["env.reward_target=eval_domains"]
# name -> overrides. λ = agent.options.prior_coef, the pull of the anchored actor's log-weights towards π₀
# (default 3): where the critic's values are flat in the action its deviation settles at (centred value gap) / λ.
VARIANTS = {
    "own": [],  # the agent's own actor and the corpus reward (an agent without the anchored actor: vector-sac)
    "own-eval": EVAL_REWARD,
    "anchored": ANCHORED,
    **{f"anchored-lambda-{lam}": [*ANCHORED, f"agent.options.prior_coef={lam}"] for lam in (1, 10, 30)},
    "anchored-eval": [*ANCHORED, *EVAL_REWARD],
    **{
        f"anchored-eval-lambda-{lam}": [*ANCHORED, *EVAL_REWARD, f"agent.options.prior_coef={lam}"]
        for lam in (1, 10, 30)
    },
}


def selection_value(val_metrics: list[float]) -> float:
    """The rule's figure: the mean validation metric over the last half (rounded up) of the training episodes."""
    return float(np.mean(val_metrics[-math.ceil(len(val_metrics) / 2) :]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="target")
    parser.add_argument("--agent", default="acodm", help="the agent every variant trains")
    parser.add_argument("--variants", default="anchored-eval,anchored-eval-lambda-10,anchored-eval-lambda-30")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="test seeds (with --score)")
    parser.add_argument("--score", action="store_true", help="score the chosen variant on --seeds")
    parser.add_argument(
        "--train-runs", type=int, default=1, help="with --score: training runs of the chosen variant, each scored"
    )
    parser.add_argument("--keep-stale", action="store_true", help="reuse episodes and runs of other code versions")
    parser.add_argument("--out", default="runs/learned-tuning", help="where the runs go (one folder per task)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. learn.episodes=5")
    args = parse_args(parser, argv)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    command = " ".join(["python", "benchmarks/learned_tuning.py", *(argv if argv is not None else sys.argv[1:])])
    method = f"{args.agent}{LEARNED}"
    configs = {
        v: load_config(None, ["run.progress=false", *VARIANTS[v], *args.overrides], task=args.task) for v in variants
    }
    episodes = next(iter(configs.values())).learn.episodes
    if args.train_runs < 1 or (args.train_runs > 1 and not args.score):
        parser.error(f"--train-runs {args.train_runs}: give at least 1, and more than 1 only with --score")
    if args.train_runs > 1 and episodes > RUN_STRIDE:
        parser.error(
            f"--train-runs: learn.episodes={episodes} would make training runs share levels (at most {RUN_STRIDE})"
        )
    where = {v: Path(args.out) / args.task / v for v in variants}  # a variant's runs; its learn directory inside
    curves = {}
    for v, cfg in configs.items():  # training only: the curve's validation proxy, no test seed
        print(f"== {args.task} {v}: {cfg.learn.episodes} training episodes")
        curves[v] = learn.learn(
            for_agent(cfg, args.agent),
            cfg.learn.episodes,
            where[v] / method,
            test_seeds=[],
            first_seed=cfg.learn.first_seed,
            keep_stale=args.keep_stale,
        )
    values = {v: selection_value([p["val_metric"] for p in c["train"]]) for v, c in curves.items()}
    chosen = min(values, key=values.get)
    scored = None
    runs = []
    for r in range(args.train_runs if args.score else 0):  # run 0: the one the choice read
        cfg = load_config(configs[chosen], {"learn": {"first_seed": configs[chosen].learn.first_seed + RUN_STRIDE * r}})
        out = compare(cfg, args.seeds, [method], run_dir(where[chosen], r), keep_stale=args.keep_stale)
        runs.append(keep(out, method, run_dir(kept_dir(args.task, args.agent, chosen), r)))
        runs[-1]["first_seed"] = cfg.learn.first_seed
    scored = runs[0] if runs else None
    refs = read_references(configs[chosen].task)  # the task's references, as every run of it reads them
    plays = {v: played(where[v] / method, len(c["train"])) for v, c in curves.items()}
    write_results(args.task, args.agent, refs, curves, values, plays, chosen, scored, command, runs)
    return 0


def run_dir(variant_dir: Path, r: int) -> Path:
    """Where training run ``r`` of a variant lives: the variant's own directory for run 0, ``run-<r>/`` in it after."""
    return variant_dir if r == 0 else variant_dir / f"run-{r}"


def played(learn_dir: Path, episodes: int) -> dict | None:
    """What a variant's last training episode played and what its reward pointed at: the mean weight and the mean
    alignment reward W of each domain over its steps (None where the episode keeps no metrics.csv)."""
    path = learn.episode_dir(learn_dir, episodes - 1) / "metrics.csv"
    if not path.is_file():
        return None
    m = read_metrics(path)
    domains = [key.removeprefix("weight/") for key in m if key.startswith("weight/")]
    return {
        "domains": domains,
        "weights": [float(np.nanmean(m[f"weight/{d}"])) for d in domains],
        "vector_reward": [float(np.nanmean(m[f"reward/{d}"])) for d in domains],
    }


def best_static(refs: dict | None, domains: list[str]) -> list[float] | None:
    """The references' best static mixture, its weights in ``domains``' order (None without references)."""
    best = (refs or {}).get("references", {}).get("best_static")
    return [dict(zip(refs["domains"], best["weights"]))[d] for d in domains] if best else None


def reward_agreement(play: dict | None, refs: dict | None) -> float | None:
    """Spearman's rank correlation of the mean W per domain with the best static mixture's weights: does the
    reward rank the domains as the search's winner weights them? (None without references, or where the best
    static mixture is uniform and ranks nothing.)"""
    best = best_static(refs, play["domains"]) if play else None
    if not best or np.ptp(best) == 0:
        return None
    return float(spearmanr(play["vector_reward"], best).statistic)


def kept_dir(task: str, agent: str, variant: str) -> Path:
    """Where a scored variant's report, results, curve and run records are kept (``runs/``: its learn directory's
    records, as ``<agent>-learned/`` under it); ``tasks.py`` reads its test runs from there."""
    return RESULTS / "learn" / f"{task}-{agent}-{variant}"


def keep(out: Path, method: str, dst: Path) -> dict:
    """The scored variant's report, results, plots, curve and run records into ``dst``; returns its results."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "results.json", f"weights_{method}.png"):
        if (out / name).is_file():
            shutil.copyfile(out / name, dst / name)
    for name in ("curve.json", "curve.png"):
        shutil.copyfile(out / method / name, dst / name)
    save_records(out, dst / "runs")
    return json.loads((out / "results.json").read_text())["methods"][method]


def write_results(
    task: str,
    agent: str,
    refs: dict | None,
    curves: dict,
    values: dict,
    plays: dict,
    chosen: str,
    scored: dict | None,
    command: str,
    runs: list[dict] | None = None,
) -> None:
    """results/tuning/learned-<task>-<agent>.{json,md}; ``refs``: the task's references (their validation beside the table)."""
    payload = {
        "task": task,
        "agent": agent,
        "split": "validation of the training episodes; test only for the chosen variant",
        "rule": "lowest mean validation metric over the last half (rounded up) of the training episodes",
        "variants": {
            v: {
                "overrides": VARIANTS[v],
                "train_seeds": c["train_seeds"],
                "val_metric": [p["val_metric"] for p in c["train"]],
                "selection_value": values[v],
                "last_episode": plays[v],
                "reward_agreement": reward_agreement(plays[v], refs),
            }
            for v, c in curves.items()
        },
        "chosen": chosen,
        "test": scored,
        "training_runs": [
            {"first_seed": r["first_seed"], "score": r["score"], "run_score": float(np.mean(r["score"]))} for r in runs
        ]
        if runs and len(runs) > 1 and all(None not in r["score"] for r in runs)
        else None,
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "code": code_version(),
    }
    TUNING.mkdir(parents=True, exist_ok=True)
    rundir.write_text(TUNING / f"learned-{task}-{agent}.json", json.dumps(payload, indent=2))  # atomically
    lines = [
        f"# Learned `{agent}` variants on `{task}`: chosen on validation ({payload['date']})",
        "",
        f"Command: `{command}`. Per variant, the task metric of each training episode's last validation "
        f"(lower is better; model seeds {curves[chosen]['train_seeds']}); rule: {payload['rule']}.",
        "",
        "| variant | overrides | val metric per training episode | rule's figure | chosen |",
        "|---|---|---|---|---|",
    ]
    for v, r in payload["variants"].items():
        lines.append(
            f"| {v} | {' '.join(f'`{o}`' for o in r['overrides'])} | {', '.join(f'{m:.1f}' for m in r['val_metric'])} "
            f"| {r['selection_value']:.1f} | {'yes' if v == chosen else ''} |"
        )
    if refs:
        lines += ["", references_line(refs, "References' validation metric (their own seeds, whole episodes)")]
    lines += played_lines(payload["variants"], refs)
    if scored and None not in scored.get("score", [None]):
        ci = mean_interval(scored["score"])
        mean = f"{ci[0]:.1f} ± {ci[1]:.1f} (95 % half-width; " if ci else f"{scored['score'][0]:.1f} ("
        lines += [
            "",
            f"**Test split of the chosen variant** (`{chosen}`, frozen, picked before its test figures were read): "
            f"normalised score {mean}per seed {', '.join(f'{s:.1f}' for s in scored['score'])}; seeds {scored['seeds']}).",
        ]
    if payload["training_runs"]:
        per_run = payload["training_runs"]
        ci = mean_interval([r["run_score"] for r in per_run])
        lines += [
            "",
            f"**Spread over {len(per_run)} training runs** (run r trains on the levels from its first seed, its agent "
            "seeded by it; each frozen and scored on the same test seeds; a run's score is the mean over them): "
            + "; ".join(
                f"first seed {r['first_seed']}: {r['run_score']:.1f} ({', '.join(f'{s:.1f}' for s in r['score'])})"
                for r in per_run
            )
            + (f". Mean over training runs {ci[0]:.1f} ± {ci[1]:.1f} (95 % half-width)." if ci else "."),
        ]
    rundir.write_text(TUNING / f"learned-{task}-{agent}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def played_lines(variants: dict, refs: dict | None) -> list[str]:
    """The diagnostics table: what each variant's last training episode played against the best static mixture,
    and whether its reward ranks the domains as that mixture weights them."""
    plays = {v: r["last_episode"] for v, r in variants.items() if r["last_episode"]}
    if not plays:
        return []
    domains = next(iter(plays.values()))["domains"]
    best = best_static(refs, domains)
    lines = [
        "",
        "What each variant played in its last training episode (mean weight per domain over its steps, %) and what its "
        "reward pointed at (mean W per domain, x 1000); last column: Spearman's rank correlation of that W with the "
        "best static mixture's weights (+1: the reward ranks the domains as the search's winner weights them; "
        "empty where that mixture is uniform).",
        "",
        f"| variant | | {' | '.join(domains)} | W ~ best static |",
        f"|---|---|{'---|' * len(domains)}---|",
    ]
    if best:
        lines.append(f"| best static | weight | {' | '.join(f'{100 * w:.1f}' for w in best)} | |")
    for v, play in plays.items():
        agreement = variants[v]["reward_agreement"]
        lines += [
            f"| {v} | weight | {' | '.join(f'{100 * w:.1f}' for w in play['weights'])} | |",
            f"| | W | {' | '.join(f'{1000 * w:.0f}' for w in play['vector_reward'])} "
            f"| {'' if agreement is None else f'{agreement:+.2f}'} |",
        ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
