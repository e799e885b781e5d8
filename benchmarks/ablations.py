"""Ablations of AC-ODM at CPU scale: the paper's Table 5 (drop each state part), Table 3 (which
layers the reward is computed on), the two reward variants (the paper's and the authors' code's) and
the actor without its pull towards the natural mixture (``prior_coef=0``, the paper's objective).

Each variant is an ``acodm`` run with config overrides, on the same corpus, budget and seeds;
reported as final average validation perplexity and its relative change against the full method.

    python benchmarks/ablations.py                    # 2 seeds, acodm_gym/configs/default.yaml (~1.5 h on 2 cores)
    python benchmarks/ablations.py --quick            # 1 seed, 60 steps, three variants
    python benchmarks/ablations.py --only full,no-loss_change --seeds 0 1 2
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
from acodm_gym.registry import STATE_PARTS
from acodm_gym.runs.provenance import code_version
from acodm_gym.runs.reuse import train_or_reuse

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS: dict[str, list[str]] = {
    "full": [],
    **{f"no-{part}": [f"env.drop_state=[{part}]"] for part in STATE_PARTS},
    "reward-last-layer": ["env.reward_depths=[1.0]"],
    "reward-early-layers": ["env.reward_depths=[0.25, 0.5]"],
    "reward-authors": ["env.reward_variant=authors", "agent.options.reward_ema=null"],
    "actor-no-prior": ["agent.options.prior_coef=0"],  # the paper's unregularised actor objective
}


def write_results(results: dict[str, dict], name: str, command: str, started: float, seeds: list[int]) -> str:
    """Write ``<name>.json`` and ``<name>.md`` for the variants done so far (after each one, so a
    stopped run keeps what it measured); returns the markdown."""
    base = np.mean(results["full"]["final_val_ppl"]) if "full" in results else None
    rows = ["| variant | final avg val ppl | relative change vs full |", "|---|---|---|"]
    for variant, r in results.items():
        vals = np.array(r["final_val_ppl"])
        r["relative_change"] = None if base is None else float(vals.mean() / base - 1)
        change = "" if base is None else f"{100 * r['relative_change']:+.1f}%"
        rows.append(f"| {variant} | {vals.mean():.2f} ± {vals.std():.2f} | {change} |")
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "command": command,
        "seconds": round(time.time() - started),
        "code": code_version(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"variants": results, **meta}, indent=2))
    text = "\n".join(
        [
            f"# AC-ODM ablations ({meta['date']})",
            "",
            f"Command: `{command}`, {meta['seconds']} s. Mean ± std over seeds {seeds}.",
            "",
            *rows,
        ]
    )
    (RESULTS / f"{name}.md").write_text(text + "\n")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", default=None, help="comma-separated variant names: " + ", ".join(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="1 seed, 60 steps, three variants")
    parser.add_argument("--out", default="runs/bench-ablations")
    parser.add_argument("overrides", nargs="*")
    args = parse_args(parser, argv)  # overrides anywhere, also after --seeds
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    overrides = list(args.overrides) + [
        "agent.name=acodm",
        "run.progress=false",
        "run.tensorboard=false",
        f"run.out_dir={args.out}",
    ]
    if args.quick:
        args.seeds, names = args.seeds[:1], ["full", "no-loss_change", "reward-authors"]
        overrides += ["train.total_steps=60", "env.eval_interval=20"]
    started = time.time()
    command = " ".join(["python", "benchmarks/ablations.py", *(argv if argv is not None else sys.argv[1:])])
    results: dict[str, dict] = {}
    for name in names:
        finals = []
        for seed in args.seeds:
            cfg = load_config(
                args.config, overrides + VARIANTS[name] + [f"run.seed={seed}", f"run.name={name}-seed{seed}"]
            )
            run_dir = train_or_reuse(cfg, log=lambda _: None, overwrite=False)  # a rerun reuses or resumes earlier runs
            finals.append(json.loads((run_dir / "summary.json").read_text())["final_val_ppl_avg"])
            print(f"{name} seed {seed}: {finals[-1]:.2f}", flush=True)
        results[name] = {"overrides": VARIANTS[name], "seeds": args.seeds, "final_val_ppl": finals}
        text = write_results(results, "ablations-quick" if args.quick else "ablations", command, started, args.seeds)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
