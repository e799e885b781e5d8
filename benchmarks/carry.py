"""Carry the benchmark campaign from one session (or machine) to the next: what ``campaign.sh`` has finished
under ``runs/`` is kept in the committed ``benchmarks/results/`` and put back from there, so the next session
continues instead of starting again.

``benchmarks/tasks.py`` keeps and restores its own runs' records; the reference step (``acodm-gym reference``)
and the dataset step (``benchmarks/datasets.py``) do not. For every task this script keeps:

* ``runs/tasks/<task>/`` -> ``results/tasks/runs/<task>/``: the record of every finished run (the references'
  search and final runs, the sweep's runs: ``acodm_gym.runs.records``) and the references' Optuna journal, up to
  its last complete line (a search may be writing it);
* ``runs/datasets/<task>/`` -> ``results/datasets/<task>/``: every finished dataset episode's record plus what
  its dataset is written from, its ``transitions.npz`` and the validation metric of its ``metrics.csv`` (the only
  column the Minari dataset reads: ``runs/offline.py``), beside the manifests ``datasets.py`` keeps there.

``save`` copies what finished (run it before a session ends, also while the campaign runs, then commit
``benchmarks/results``); ``restore`` puts back whatever ``runs/`` lacks (``campaign.sh`` does this first). A
restored run has no model: the search and the datasets reuse it (their summaries and transitions are all they
read); the references' evaluation noise is measured only where natural's and the best mixture's first final runs
were trained in the same session (``reference._evaluation``), and a learn directory's agent does not carry.

    python benchmarks/carry.py save
    python benchmarks/carry.py restore --tasks skewed
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from acodm_gym.runs import rundir
from acodm_gym.runs.records import finished_runs, restore_records, save_records
from acodm_gym.runs.reference import JOURNAL

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ("skewed", "target", "noisy")
EPISODE_METRICS = ("step", "val_metric")  # what a dataset episode's record keeps of its metrics.csv


def _write_if_changed(dst: Path, data: bytes) -> bool:
    """``data`` into ``dst`` atomically (``rundir.write_file``), unless it holds them already; whether it changed."""
    if dst.is_file() and dst.read_bytes() == data:
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    rundir.write_file(dst, lambda tmp: tmp.write_bytes(data))
    return True


def save_journal(src: Path, dst: Path) -> bool:
    """Copy the journal ``src`` to ``dst`` up to its last complete line; whether ``dst`` changed."""
    if not src.is_file():
        return False
    text = src.read_bytes()
    text = text[: text.rfind(b"\n") + 1]  # a line being appended is left for the next save
    return bool(text) and _write_if_changed(dst, text)


def episode_metrics(path: Path) -> bytes:
    """The columns ``EPISODE_METRICS`` of a metrics CSV, values as logged."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = io.StringIO()
    writer = csv.DictWriter(out, EPISODE_METRICS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def save_tasks(out: Path, records: Path) -> list[str]:
    """The records of every finished run under ``out`` and its study's journal into ``records``."""
    kept = save_records(out, records) if out.is_dir() else []
    return kept + ([JOURNAL] if save_journal(out / JOURNAL, records / JOURNAL) else [])


def save_datasets(out: Path, records: Path) -> list[str]:
    """Every finished dataset episode under ``out`` (``<behaviour>/ep-NNN``) into ``records``: its record, its
    transitions and its validation metric."""
    if not out.is_dir():
        return []
    kept = set(save_records(out, records))
    for run in finished_runs(out):
        where = run.relative_to(out)
        copied = _write_if_changed(records / where / "transitions.npz", (run / "transitions.npz").read_bytes())
        metrics = _write_if_changed(records / where / "metrics.csv", episode_metrics(run / "metrics.csv"))
        if copied or metrics:
            kept.add(where.as_posix())
    return sorted(kept)


def restore(records: Path, out: Path) -> list[str]:
    """Every recorded run (or dataset behaviour) and the journal that ``out`` lacks, back under ``out``."""
    restored = restore_records(records, out) if records.is_dir() else []
    if records.is_dir() and not (out / JOURNAL).exists() and save_journal(records / JOURNAL, out / JOURNAL):
        restored.append(JOURNAL)
    return restored


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--runs", default="runs", help="where the campaign's run directories are")
    parser.add_argument("--results", default=str(RESULTS), help="where the committed records are")
    args = parser.parse_args(argv)
    runs, results = Path(args.runs), Path(args.results)
    for task in args.tasks.split(","):
        kept = (  # what to save it with, where the campaign runs it, where its records are committed
            (save_tasks, runs / "tasks" / task, results / "tasks" / "runs" / task),
            (save_datasets, runs / "datasets" / task, results / "datasets" / task),
        )
        for save, out, records in kept:
            if args.action == "save":
                done, where = save(out, records), f"{out} -> {records}"
            else:
                out.mkdir(parents=True, exist_ok=True)
                done, where = restore(records, out), f"{records} -> {out}"
            print(f"{task}: {args.action}d {len(done)} ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
