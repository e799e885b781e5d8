"""Offline datasets of every behaviour on each task (``acodm-gym dataset``), manifests kept for committing.

For each task and behaviour, one after another: ``runs/offline.build`` runs (or reuses, or resumes) the
episodes and writes the Minari dataset ``acodm/<task>/<behaviour>-v0`` (under ``$MINARI_DATASETS_PATH``,
default ``~/.minari/datasets``; too large to commit) and its manifest
``benchmarks/results/datasets/<task>/<behaviour>.json`` (episodes, seeds, weights, returns, scores), which is
committed. Rerunning the same command continues where it stopped; a larger ``--episodes`` extends.

    python benchmarks/datasets.py                                   # 3 tasks x 8 behaviours x 13 episodes (104 per task)
    python benchmarks/datasets.py --tasks noisy --behaviours uniform,natural --episodes 2 train.threads=1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from acodm_gym.cli import parse_args
from acodm_gym.config import load_config
from acodm_gym.runs.offline import BEHAVIOURS, build

RESULTS = Path(__file__).resolve().parent / "results" / "datasets"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="skewed,noisy,target")
    parser.add_argument("--behaviours", default=",".join(BEHAVIOURS))
    parser.add_argument("--episodes", type=int, default=13, help="per behaviour (8 behaviours: 104 per task)")
    parser.add_argument("--out-dir", default="runs", help="where the episodes' run directories go")
    parser.add_argument("--author-email", default=None, help="the datasets' contact, in their Minari metadata")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides for every run")
    args = parse_args(parser, argv)
    for task in args.tasks.split(","):
        cfg = load_config(None, [*args.overrides, f"run.out_dir={args.out_dir}"], task=task)
        for behaviour in args.behaviours.split(","):
            manifest = build(
                cfg,
                behaviour,
                args.episodes,
                manifest=RESULTS / (cfg.task.name or task) / f"{behaviour}.json",
                author_email=args.author_email,
            )
            print(f"{manifest['dataset_id']}: {manifest['total_episodes']} episodes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
