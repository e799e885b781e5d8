"""How many held-out tokens a task's evaluation needs for its noise to be small next to the seeds'.

For each task, the natural and best-static reference mixtures (their weights from the task's shipped
reference file) are trained with every seed at the task's budget, on the task's corpus with its
held-out splits topped up from the text the training share leaves unused
(``data.recipe.heldout_max_bytes``; the training text does not change, so these runs train exactly
as the reference runs did). Each trained model's per-sequence losses on every eval domain's
validation and test split are then read once, and for a growing number of tokens per domain n
(the first n of each split, as the final evaluation reads them):

* ``seed_rel_std``: the spread over seeds of the log task metric, pooled over natural and best static;
* ``paired_rel_se``: the standard error of the difference between natural's and best static's log
  metrics on the same n tokens, from the per-sequence differences (mean over the seeds' pairs):
  the evaluation noise of a comparison, the normalised score included;
* ``metric_rel_se``: the same for one model's log metric (the absolute perplexity);
* ``ratio``: paired_rel_se / seed_rel_std. The target is at most 1/3.

Also checked: each run's test metric on the shipped test set (task.eval_tokens unset) equals the
shipped reference's for that seed, which shows the top-up left training as it was.

    python benchmarks/eval_noise.py                                   # skewed and target, seeds 0 1 2
    python benchmarks/eval_noise.py --tasks target --max-tokens 0     # 0: every held-out token
    python benchmarks/eval_noise.py --tasks skewed train.threads=1    # overrides go to every run

Runs go to ``runs/eval_noise/<task>/`` (rerunning continues; finished runs are reused). Results:
``benchmarks/results/eval_noise.{json,md}``, one task at a time as each finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from acodm_gym.cli import parse_args
from acodm_gym.config import load_config
from acodm_gym.data.corpus import open_corpus
from acodm_gym.envs.task import read_references
from acodm_gym.runs.provenance import code_version
from acodm_gym.runs.reference import heldout_sequence_losses, log_metric_se, static_run

RESULTS = Path(__file__).resolve().parent / "results"
TOP_UP = 4_000_000  # bytes: more than any domain has left, so every unused piece is held out
SIZES = (12_288, 24_576, 49_152, 98_304, 196_608, 393_216)  # tokens per domain (multiples of 128 · 96)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="skewed,target")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--max-tokens", type=int, default=262_144, help="tokens per domain read at most (0: all held-out text)"
    )
    parser.add_argument("--out", default="runs/eval_noise")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. train.threads=1")
    args = parse_args(parser, argv)
    path = RESULTS / "eval_noise.json"
    command = " ".join(["python", "benchmarks/eval_noise.py", *(argv if argv is not None else sys.argv[1:])])
    for task in args.tasks.split(","):
        started = time.time()
        figures = measure(task, args.seeds, args.max_tokens, Path(args.out) / task, args.overrides)
        # read just before writing, so that runs for other tasks finishing meanwhile are kept
        results = json.loads(path.read_text()) if path.is_file() else {}
        results[task] = {
            **figures,
            "command": command,
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "seconds": round(time.time() - started, 1),
            "code": code_version(),
        }
        _write(path, json.dumps(results, indent=2) + "\n")
        _write(RESULTS / "eval_noise.md", report(results))
        print(report({task: results[task]}))
    return 0


def measure(task: str, seeds: list[int], max_tokens: int, out: Path, overrides: list[str]) -> dict:
    """Train the two references with every seed, then the noise figures at every size (see the module doc)."""
    from transformers import AutoModelForCausalLM

    cfg = load_config(None, [f"data.recipe.heldout_max_bytes={TOP_UP}", *overrides], task=task)
    shipped = read_references(cfg.task)
    if shipped is None:
        raise SystemExit(f"Task {task} ships no references: compute them first (acodm-gym reference --task {task}).")
    corpus = open_corpus(cfg.data)
    seq, domains = cfg.model.seq_len, cfg.task.eval_domains or list(corpus.domains)
    available = min(len(corpus.tokens(d, split)) // seq for d in domains for split in ("validation", "test"))
    n_max = min(available, max_tokens // seq) if max_tokens else available
    losses: dict[str, dict[str, list]] = {"natural": {}, "best_static": {}}  # kind -> split -> per seed: D arrays
    same_training = []
    for seed in seeds:
        for kind in ("natural", "best_static"):
            ref = shipped["references"][kind]
            weights = "natural" if kind == "natural" else ref["weights"]
            name = f"{kind.replace('_', '-')}-seed{seed}"
            summary = static_run(cfg, out, name, weights, seed, None, print)
            if seed in ref["seeds"]:
                same_training.append(
                    {
                        "run": name,
                        "test_metric": summary["test_metric"],
                        "shipped": ref["test_metric"][ref["seeds"].index(seed)],
                    }
                )
            model = AutoModelForCausalLM.from_pretrained(out / name / "model").eval()
            for split in ("validation", "test"):
                losses[kind].setdefault(split, []).append(
                    [heldout_sequence_losses(model, corpus, cfg, d, split, n_max) for d in domains]
                )
    sizes = sorted({n for n in (s // seq for s in SIZES) if n < n_max} | {n_max})
    figures = {split: [_figures(losses, split, n, seq) for n in sizes] for split in ("validation", "test")}
    return {
        "task": task,
        "eval_domains": domains,
        "seeds": seeds,
        "heldout_max_bytes": TOP_UP,
        "held_out_tokens_per_domain": {
            d: {split: int(len(corpus.tokens(d, split))) for split in ("validation", "test")} for d in domains
        },
        "same_training_as_references": same_training,
        "figures": figures,
        "tokens_for_a_third": {split: _smallest(rows) for split, rows in figures.items()},
    }


def _figures(losses: dict, split: str, n: int, seq: int) -> dict:
    """The noise figures of the first ``n`` sequences per domain of ``split``."""
    log_metric = {k: [np.mean([d[:n].mean() for d in per_seed]) for per_seed in losses[k][split]] for k in losses}
    seed_std = float(np.sqrt(np.mean([np.var(v, ddof=1) for v in log_metric.values()])))
    pairs = list(zip(losses["natural"][split], losses["best_static"][split]))
    paired = [log_metric_se([a[:n] - b[:n] for a, b in zip(*p)]) for p in pairs]
    single = [log_metric_se([a[:n] for a in per_seed]) for k in losses for per_seed in losses[k][split]]
    return {
        "tokens_per_domain": n * seq,
        "seed_rel_std": seed_std,
        "paired_rel_se": float(np.mean(paired)),
        "metric_rel_se": float(np.mean(single)),
        "ratio": float(np.mean(paired)) / seed_std,
        "gap": float(np.mean(log_metric["natural"]) - np.mean(log_metric["best_static"])),
    }


def _smallest(rows: list[dict]) -> int | None:
    """The fewest tokens per domain at which the paired error is at most a third of the seeds' spread."""
    return next((r["tokens_per_domain"] for r in rows if r["ratio"] <= 1 / 3), None)


def report(results: dict) -> str:
    lines = ["# Evaluation noise against seed noise, by held-out tokens per domain", ""]
    lines += [__doc__.split("\n\n")[1].replace("\n", " "), ""]
    for task, r in results.items():
        lines += [
            f"## {task}",
            "",
            f"`{r['command']}` ({r['date']}, {r['machine']}, {r['seconds']} s); seeds {r['seeds']}, eval domains {', '.join(r['eval_domains'])}.",
            "",
        ]
        same = r["same_training_as_references"]
        ok = all(abs(s["test_metric"] - s["shipped"]) <= 1e-6 * s["shipped"] for s in same)
        lines += [
            f"Same training as the shipped references (test metric per seed on the shipped test set): {'yes' if ok else 'NO'} ({len(same)} runs).",
            "",
        ]
        for split in ("validation", "test"):
            lines += [
                f"{split}: a third of the seed spread needs {r['tokens_for_a_third'][split] or 'more than the held-out text'} tokens per domain.",
                "",
            ]
            lines += [
                "| tokens/domain | paired SE | single SE | seed std | paired/seed | log gap |",
                "|---:|---:|---:|---:|---:|---:|",
            ]
            for f in r["figures"][split]:
                lines.append(
                    f"| {f['tokens_per_domain']:,} | {100 * f['paired_rel_se']:.2f} % | {100 * f['metric_rel_se']:.2f} % | "
                    f"{100 * f['seed_rel_std']:.2f} % | {f['ratio']:.2f} | {f['gap']:.3f} |"
                )
            lines.append("")
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
