"""Mixing quality: the paper's comparison at a scale this machine can run.

Every method (natural, uniform, odm, acodm, acodm-proxy) on the default corpus with the same token
budget and seeds, one run after another (so wall-clock per step is comparable), via the same code
as ``acodm-gym compare``. Writes ``benchmarks/results/mixing.json``::

    {"methods": {"<cli name>": {"seeds": [...], "final_val_ppl": [...], "steps_to_odm_best": [...],
                                "test_ppl": {...}, "seconds_per_step": [...]}}, ...}

``mixing.md`` (the report table, the claims checked, the command and the machine) and compare's
plots under ``mixing/``.

    python benchmarks/mixing.py                       # 3 seeds, acodm_gym/configs/default.yaml (42 min on 2 cores)
    python benchmarks/mixing.py --quick               # 1 seed, 60 steps: checks the pipeline (~5 min)
    python benchmarks/mixing.py --seeds 0 1 --config acodm_gym/configs/default.yaml train.total_steps=800
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from acodm_gym.cli import parse_args
from acodm_gym.config import METHODS, load_config
from acodm_gym.runs.compare import compare
from acodm_gym.runs.provenance import code_version

RESULTS = Path(__file__).resolve().parent / "results"


def claims(methods: dict) -> list[str]:
    """The paper's claims, checked against what was measured (not assumed)."""
    lines = []

    def mean(m, key):
        vals = [v for v in methods.get(m, {}).get(key, []) if v is not None]
        return (float(np.mean(vals)), float(np.std(vals)), len(vals)) if vals else None

    odm, proxy, nonproxy = (
        mean("odm", "final_val_ppl"),
        mean("acodm-proxy", "final_val_ppl"),
        mean("acodm", "final_val_ppl"),
    )
    for name, res in (("acodm-proxy", proxy), ("acodm", nonproxy)):
        if res and odm:
            gap = odm[0] - res[0]
            spread = max(odm[1], res[1])
            verdict = "better than" if gap > spread else "worse than" if -gap > spread else "within seed spread of"
            lines.append(
                f"- {name} final average validation perplexity {res[0]:.2f} ± {res[1]:.2f} is {verdict} ODM's {odm[0]:.2f} ± {odm[1]:.2f}."
            )
    reach = methods.get("acodm-proxy", {}).get("steps_to_odm_best", [])
    odm_reach = methods.get("odm", {}).get("steps_to_odm_best", [])
    if reach and all(r is not None for r in reach) and odm_reach:
        saved = 1 - np.mean(reach) / np.mean(odm_reach)
        lines.append(
            f"- Paper: proxy mode reaches ODM's best in 71% fewer steps. Here: {100 * saved:.0f}% fewer ({np.mean(reach):.0f} vs {np.mean(odm_reach):.0f} steps)."
        )
    elif reach:
        lines.append(
            f"- Paper: proxy mode reaches ODM's best in 71% fewer steps. Here: acodm-proxy reached it in {sum(r is not None for r in reach)}/{len(reach)} seeds."
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--quick", action="store_true", help="1 seed, 60 steps: checks the pipeline")
    parser.add_argument("--out", default="runs/bench-mixing", help="where the run directories go")
    parser.add_argument("overrides", nargs="*")
    args = parse_args(parser, argv)  # overrides anywhere, also after --seeds
    overrides = list(args.overrides) + ["run.progress=false"]
    if args.quick:
        args.seeds = args.seeds[:1]
        overrides += ["train.total_steps=60", "env.eval_interval=20"]
    cfg = load_config(args.config, overrides)
    started = time.time()
    out = compare(cfg, seeds=args.seeds, methods=args.methods.split(","), out=args.out)
    results = json.loads((out / "results.json").read_text())["methods"]
    index = json.loads((out / "compare.json").read_text())
    for method, runs in index["runs"].items():
        summaries = [json.loads((Path(d) / "summary.json").read_text()) for d in runs]
        results[method]["test_ppl"] = {
            d: float(np.mean([s["test_ppl"][d] for s in summaries])) for d in summaries[0]["domains"]
        }
        results[method]["seconds_per_step"] = [s["seconds_per_step"] for s in summaries]
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
        "command": " ".join(["python", "benchmarks/mixing.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": cfg.to_dict(),
        "seconds": round(time.time() - started),
        "code": code_version(),
    }
    RESULTS.mkdir(exist_ok=True)
    name = "mixing-quick" if args.quick else "mixing"
    (RESULTS / f"{name}.json").write_text(json.dumps({"methods": results, **meta}, indent=2))
    report = (out / "report.md").read_text()
    text = [
        f"# Mixing quality ({meta['date']})",
        "",
        f"Command: `{meta['command']}` on {meta['machine']}, {meta['seconds']} s.",
        "",
        report,
        "## Claims",
        "",
        *claims(results),
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(text) + "\n")
    plots = RESULTS / name  # compare's plots, kept beside the numbers they show
    plots.mkdir(exist_ok=True)
    for png in out.glob("*.png"):
        shutil.copy(png, plots / png.name)
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
