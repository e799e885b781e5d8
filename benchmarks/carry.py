"""Carry the benchmark campaign from one session (or machine) to the next: what ``campaign.sh`` has finished
under ``runs/tasks/<task>/`` is kept in the committed ``benchmarks/results/tasks/runs/<task>/`` and put back
from there, so the next session continues instead of starting again.

``benchmarks/tasks.py`` keeps and restores its own runs' records; the reference step (``acodm-gym reference``)
does not, and its Optuna study lives in a journal beside the runs. This script does both for every task:

* ``save`` copies the record of every finished run under ``runs/tasks/<task>/`` (the search's short runs, the
  finals, the sweep's runs: ``acodm_gym.runs.records``) and the study's journal, up to its last complete line
  (a search may be writing it), into ``benchmarks/results/tasks/runs/<task>/``. Run it before a session ends,
  also while the campaign runs, then commit ``benchmarks/results``.
* ``restore`` puts back every record and journal that ``runs/tasks/<task>/`` lacks (``campaign.sh`` does this
  first). A restored run has no model: the search reuses it (its summary is all a trial reads); the references'
  evaluation noise is measured only where natural's and the best mixture's first final runs were trained in
  the same session (``reference._evaluation``).

    python benchmarks/carry.py save
    python benchmarks/carry.py restore --tasks skewed
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from acodm_gym.runs.records import restore_records, save_records
from acodm_gym.runs.reference import JOURNAL

RECORDS = Path(__file__).resolve().parent / "results" / "tasks" / "runs"
TASKS = ("skewed", "target", "noisy")


def save_journal(src: Path, dst: Path) -> bool:
    """Copy the journal ``src`` to ``dst`` up to its last complete line, atomically; whether ``dst`` changed."""
    if not src.is_file():
        return False
    text = src.read_bytes()
    text = text[: text.rfind(b"\n") + 1]  # a line being appended is left for the next save
    if not text or (dst.is_file() and dst.read_bytes() == text):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.tmp")
    tmp.write_bytes(text)
    tmp.replace(dst)
    return True


def save(out: Path, records: Path) -> list[str]:
    """The records of every finished run under ``out`` and its study's journal into ``records``."""
    kept = save_records(out, records) if out.is_dir() else []
    return kept + ([JOURNAL] if save_journal(out / JOURNAL, records / JOURNAL) else [])


def restore(records: Path, out: Path) -> list[str]:
    """Every recorded run and the journal that ``out`` lacks, back under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    restored = restore_records(records, out) if records.is_dir() else []
    if not (out / JOURNAL).exists() and save_journal(records / JOURNAL, out / JOURNAL):
        restored.append(JOURNAL)
    return restored


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--out", default="runs/tasks", help="where the campaign's run directories are (per task)")
    parser.add_argument("--records", default=str(RECORDS), help="where the committed records are (per task)")
    args = parser.parse_args(argv)
    for task in args.tasks.split(","):
        out, records = Path(args.out) / task, Path(args.records) / task
        done = save(out, records) if args.action == "save" else restore(records, out)
        where = f"{out} -> {records}" if args.action == "save" else f"{records} -> {out}"
        print(f"{task}: {args.action}d {len(done)} ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
