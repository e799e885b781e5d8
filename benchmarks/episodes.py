"""Episodes per hour of training and scoring episodes, side by side on each task.

A scoring episode (``env.episode: scoring``, what every result uses) ends with the final evaluation on
validation and test at ``task.eval_tokens``; a training episode (``env.episode: training``, what
``acodm-gym learn`` trains on) skips it, and with ``env.eval_interval=0`` the periodic validation too.
Per task and repeat the three kinds run interleaved (scoring, training, training without validation,
then again), so a drift in the machine's speed hits them alike; each is one whole ``runner.train``
call (env and agent built, episode, outputs), timed by the wall clock.

    python benchmarks/episodes.py                                  # skewed, noisy, target; 2 repeats; acodm
    python benchmarks/episodes.py --tasks skewed --repeats 3 train.threads=1
    python benchmarks/episodes.py --tasks skewed train.total_steps=4 --out /tmp/eps   # a smoke run

Writes ``benchmarks/results/episodes.json`` (``--json PATH``): per task, its command, date, machine, agent and
code version, and per kind the seconds of each repeat, their mean, episodes per hour, and the ratio to the
scoring episode's time; and its table, ``episodes.md`` (``--report-only``: the table of the JSON file alone). A
run of some tasks replaces theirs and keeps the other tasks' measurements, each with its own provenance.
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
from acodm_gym.config import load_config
from acodm_gym.runs import provenance, rundir
from acodm_gym.runs.runner import train

RESULTS = Path(__file__).resolve().parent / "results" / "episodes.json"
KINDS = {
    "scoring": {"env": {"episode": "scoring"}},
    "training": {"env": {"episode": "training"}},
    "training, no validation": {"env": {"episode": "training", "eval_interval": 0}},
}


def time_task(task: str, agent: str, repeats: int, overrides: list[str], out: Path) -> dict:
    """Seconds of each kind of episode on ``task``, interleaved repeat by repeat (each in a fresh directory)."""
    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for r in range(repeats):
        for kind, section in KINDS.items():
            name = f"{task}-{kind.replace(', ', '-').replace(' ', '-')}-{r}"
            run = {"out_dir": str(out), "name": name, "seed": r, "checkpoint_interval": 0, "progress": False}
            cfg = load_config(
                load_config(None, [f"agent.name={agent}", *overrides], task=task), {**section, "run": run}
            )
            started = time.perf_counter()
            train(cfg, log=lambda _: None, overwrite=True)
            seconds[kind].append(time.perf_counter() - started)
            shutil.rmtree(out / name, ignore_errors=True)
            print(f"{task} {kind} (repeat {r}): {seconds[kind][-1]:.1f} s", flush=True)
    scoring = float(np.mean(seconds["scoring"]))
    return {
        kind: {
            "seconds": s,
            "mean_seconds": float(np.mean(s)),
            "episodes_per_hour": 3600.0 / float(np.mean(s)),
            "ratio_to_scoring": float(np.mean(s)) / scoring,
        }
        for kind, s in seconds.items()
    }


def report(payload: dict) -> str:
    """The markdown table of a results payload: seconds per episode, episodes per hour, ratio to scoring."""
    lines = [
        "# Episodes per hour: training and scoring episodes, side by side on each task",
        "",
        "Each kind of episode timed whole (env and agent built, episode, outputs), the kinds interleaved per repeat. "
        "Issue 22's target: a training episode at most 0.55x the scoring episode's wall time.",
        "",
        *(
            f"- {task}: `{t['command']}` ({t['date']}, {t['machine']}, agent {t['agent']}); code version "
            f"{provenance.describe(t.get('code'))}."
            for task, t in payload["tasks"].items()
        ),
        "",
        "| task | kind | seconds per episode (each repeat) | mean | episodes per hour | ratio to scoring |",
        "|---|---|---|---|---|---|",
    ]
    for task, t in payload["tasks"].items():
        for kind, r in t["kinds"].items():
            each = ", ".join(f"{x:.1f}" for x in r["seconds"])
            lines.append(
                f"| {task} | {kind} | {each} | {r['mean_seconds']:.1f} | {r['episodes_per_hour']:.1f} "
                f"| {r['ratio_to_scoring']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="skewed,noisy,target")
    parser.add_argument("--agent", default="acodm", help="the agent driving every episode")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="runs/episodes", help="scratch run directories (removed after each)")
    parser.add_argument("--json", default=str(RESULTS))
    parser.add_argument("--report-only", action="store_true", help="write the table of the --json file only")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides for every run")
    args = parse_args(parser, argv)
    json_path = Path(args.json)
    payload = json.loads(json_path.read_text()) if json_path.is_file() else {"tasks": {}}
    if not args.report_only:
        command = "python benchmarks/episodes.py " + " ".join(sys.argv[1:] if argv is None else argv)
        for task in args.tasks.split(","):
            kinds = time_task(task, args.agent, args.repeats, args.overrides, Path(args.out))
            payload["tasks"][task] = {
                "command": command,
                "date": time.strftime("%Y-%m-%d"),
                "machine": platform.processor() or platform.machine(),
                "agent": args.agent,
                "code": provenance.code_version(),
                "kinds": kinds,
            }
            rundir.write_text(json_path, json.dumps(payload, indent=2) + "\n")  # each task's as soon as it is timed
    table = report(payload)
    rundir.write_text(json_path.with_suffix(".md"), table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
