#!/usr/bin/env python
"""AC-ODM variants on a task's validation split: what each change to the agent does, before any test.

Each variant is a list of config overrides on top of ``acodm``; every run goes into the task's sweep
directory (``runs/tasks/<task>/``), so the default variant is the sweep's own ``acodm-seed<s>`` run,
reused rather than run again. Only the validation task metric is compared here (tuning on the test
split would make the test score meaningless); a variant that helps on validation is then run by
``benchmarks/tasks.py`` and scored on test. Each run's record is kept in
``results/tasks/runs/<task>/`` (``acodm_gym.runs.records``), so the sweep continues where it stopped.

    python benchmarks/acodm_tuning.py --tasks noisy --seeds 0 train.threads=1
    python benchmarks/acodm_tuning.py --variants default,prior-uniform --seeds 0 1

Writes ``results/tuning/<task>.{json,md}``: per variant and seed the validation task metric, the
planted (junk) domains' mean weight, the mean weights, and the agent diagnostics' medians over the
second half of the run (``summary.json`` ``diagnostics``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from acodm_gym.cli import parse_args
from acodm_gym.config import load_config
from acodm_gym.envs.task import normalised_score, read_references
from acodm_gym.runs.compare import mean_interval
from acodm_gym.runs.provenance import code_version
from acodm_gym.runs.records import restore_records, save_records
from acodm_gym.runs.reuse import train_or_reuse

RESULTS = Path(__file__).resolve().parent / "results"
# The reward and critic changes the diagnostics pointed to (docs/findings.md, "Why AC-ODM does not learn a better mixture
# here"), composed below: the eval-domain reward without the importance correction r_i / p_i (which inflates a rare
# domain's reward by 1/p, 57x for a 0.35 % domain), and a critic that converges within one 400-step episode (with
# γ 0.95 and τ 0.005 the target network's random initial per-domain offsets, about ±0.5, outweigh the learned
# values, W ≈ 0.05 a step, to the end of the run).
RAW_EVAL_REWARD = ["agent.options.reward_ema=null", "env.reward_target=eval_domains"]
FAST_CRITIC = ["agent.options.gamma=0.5", "agent.options.tau=0.05"]
# ... and an actor that follows the critic's per-domain values, not its slope in the action input
VALUES_ACTOR = [*FAST_CRITIC, *RAW_EVAL_REWARD, "agent.options.actor_gradient=values"]
# name -> overrides of the acodm agent. "default" is the agent as compare runs it.
VARIANTS = {
    "default": [],
    "prior-uniform": ["agent.options.prior=uniform"],
    "prior-coef-1": ["agent.options.prior_coef=1.0"],
    "warmup-odm": ["agent.options.warmup_behaviour=odm"],
    "exploration-0.1": ["agent.options.exploration_noise=0.1"],
    "authors-reward": ["env.reward_variant=authors", "agent.options.reward_ema=null"],
    "eval-reward": ["env.reward_target=eval_domains"],
    "eval-reward-prior-uniform": ["env.reward_target=eval_domains", "agent.options.prior=uniform"],
    "raw-reward": ["agent.options.reward_ema=null"],
    "raw-reward-eval": RAW_EVAL_REWARD,
    "fast-critic": FAST_CRITIC,
    "fast-critic-raw-eval": [*FAST_CRITIC, *RAW_EVAL_REWARD],
    "values-actor": VALUES_ACTOR,
    "values-actor-coef-1": [*VALUES_ACTOR, "agent.options.prior_coef=1.0"],
    "values-actor-coef-0.3": [*VALUES_ACTOR, "agent.options.prior_coef=0.3"],
    "values-actor-coef-0.1": [*VALUES_ACTOR, "agent.options.prior_coef=0.1"],
    "values-actor-uniform": [*VALUES_ACTOR, "agent.options.prior=uniform"],
}


def run_name(variant: str, seed: int) -> str:
    return f"acodm-seed{seed}" if variant == "default" else f"acodm-{variant}-seed{seed}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="noisy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default="runs/tasks", help="the sweeps' directory (one folder per task)")
    parser.add_argument("--report-only", action="store_true", help="train nothing: report the finished runs")
    parser.add_argument(
        "--chosen",
        default=None,
        help="the variants picked on validation (comma-separated): only their test split is reported (normalised "
        "score per seed)",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. train.threads=1")
    args = parse_args(parser, argv)  # overrides anywhere, also after --seeds
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    command = " ".join(["python", "benchmarks/acodm_tuning.py", *(argv if argv is not None else sys.argv[1:])])
    for task in args.tasks.split(","):
        out = Path(args.out) / task
        out.mkdir(parents=True, exist_ok=True)
        records = RESULTS / "tasks" / "runs" / task
        restore_records(records, out)
        try:
            for seed in [] if args.report_only else args.seeds:
                for variant in variants:
                    name = run_name(variant, seed)
                    overrides = ["run.progress=false", "agent.name=acodm", f"run.seed={seed}", f"run.out_dir={out}"]
                    cfg = load_config(
                        None, [*overrides, f"run.name={name}", *VARIANTS[variant], *args.overrides], task=task
                    )
                    print(f"== {task} {variant} (seed {seed})")
                    train_or_reuse(cfg)
                    save_records(out, records)  # each finished run's record at once
        finally:
            save_records(out, records)
        write_results(task, out, variants, args.seeds, command, args.chosen.split(",") if args.chosen else [])
    return 0


def write_results(
    task: str, out: Path, variants: list[str], seeds: list[int], command: str, chosen: list[str] = ()
) -> None:
    """results/tuning/<task>.{json,md} from the finished runs of the variants; the test split only for ``chosen``."""
    cfg = load_config(None, task=task)
    planted = list(cfg.data.recipe.planted)
    refs = read_references(cfg.task)
    results = {}
    for variant in variants:
        runs = [(s, out / run_name(variant, s) / "summary.json") for s in seeds]
        summaries = [(s, json.loads(p.read_text())) for s, p in runs if p.exists()]
        if not summaries:
            continue
        results[variant] = {
            "overrides": VARIANTS[variant],
            "seeds": [s for s, _ in summaries],
            "val_metric": [m["val_metric"] for _, m in summaries],
            "planted_weight": [sum(m["mean_weights"].get(d, 0.0) for d in planted) for _, m in summaries],
            "mean_weights": [m["mean_weights"] for _, m in summaries],
            "diagnostics": [m.get("diagnostics") for _, m in summaries],
        }
        if variant in chosen:
            test = [m["test_metric"] for _, m in summaries]
            results[variant].update(test_metric=test, score=[normalised_score(t, refs) for t in test])
    target = RESULTS / "tuning"
    target.mkdir(parents=True, exist_ok=True)
    payload = {
        "task": task,
        "split": "validation",
        "variants": results,
        "chosen": list(chosen),
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "code": code_version(),
    }
    (target / f"{task}.json.tmp").write_text(json.dumps(payload, indent=2))
    (target / f"{task}.json.tmp").replace(target / f"{task}.json")
    lines = [
        f"# AC-ODM variants on `{task}`, validation split ({payload['date']})",
        "",
        f"Command: `{command}`. Validation task metric (lower is better), mean ± 95 % half-width where there are "
        "two seeds or more; planted = the mean batch weight of the planted domains; diagnostics: medians over "
        "the second half of the first seed's run.",
        "",
        "| variant | overrides | val metric | per seed | planted | reward SNR | Q–return ρ | Q–domain ρ | target cos "
        "| entropy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, r in results.items():
        ci = mean_interval(r["val_metric"])
        val = f"{ci[0]:.1f} ± {ci[1]:.1f}" if ci else f"{r['val_metric'][0]:.1f}"
        diag = r["diagnostics"][0] or {}

        def cell(key: str) -> str:
            return f"{diag[key]:.2f}" if key in diag else "n/a"

        lines.append(
            f"| {variant} | {' '.join(f'`{o}`' for o in r['overrides']) or '(as compare runs it)'} | {val} "
            f"| {', '.join(f'{v:.1f}' for v in r['val_metric'])} | {np.mean(r['planted_weight']):.3f} "
            f"| {cell('reward_snr')} | {cell('q_return_spearman')} | {cell('q_domain_spearman')} | {cell('target_cosine')} "
            f"| {cell('weight_entropy')} |"
        )
    if refs:
        lines += ["", references_line(refs, "References on the same split (mean val metric over their seeds)")]
    for name in chosen:
        r = results.get(name, {})
        if not r.get("score") or None in r["score"]:
            continue
        ci = mean_interval(r["score"])
        lines += [
            "",
            f"**Test split of a chosen variant** (`{name}`, picked on validation before its test figures were read): "
            f"normalised score {ci[0]:.1f} ± {ci[1]:.1f} (95 % half-width; per seed "
            + ", ".join(f"{v:.1f}" for v in r["score"])
            + f"), test metric per seed {', '.join(f'{v:.1f}' for v in r['test_metric'])}.",
        ]
    (target / f"{task}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def references_line(refs: dict, title: str) -> str:
    """The references' mean validation task metric, the yardstick beside a table of variants."""
    return f"{title}: " + ", ".join(f"{n} {np.mean(r['val_metric']):.1f}" for n, r in refs["references"].items()) + "."


if __name__ == "__main__":
    sys.exit(main())
