"""A sweep's finished runs as small records that can be committed, and restored on another machine.

A run directory holds a model and checkpoints (megabytes); what a sweep reads back from a finished
run is much less: its config (to tell whether it is the run asked for), its summary (the scores and
curves) and, for a learned agent, its mixture schedule (the weights plot). ``save_records`` copies
those files of every finished run under a sweep's directory into a records directory;
``restore_records`` puts them back where a run directory is missing, so ``compare`` and
``reference`` reuse the run instead of training it again. A sweep then continues in a later
session, or on another machine, from where the last one stopped.

Runs nested in a learn directory (``runs/learn.py``: a proxy stage's ``train/ep-NNN/``, ``learn``'s
``test/after-N/seed-S/``) are recorded at their place under it, so ``reproduce`` can rerun a proxy stage.

A restored run has no model and no agent: the references' evaluation noise is computed only where the
run was trained, and a proxy stage whose actor is needed (its target run is not finished) is trained
again from its seeds (a restored training episode has no ``agent.pt``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import rundir

RECORD_FILES = ("config.yaml", rundir.SUMMARY, "mixture.json")
STATIC_AGENTS = ("natural", "uniform", "static")  # their mixture schedule is the constant in their config


def finished_runs(root: Path) -> list[Path]:
    """Every finished run directory under ``root`` (one holding a summary), a learn directory's nested runs included."""
    return sorted(summary.parent for summary in root.rglob(rundir.SUMMARY) if summary.parent != root)


def save_records(out: str | Path, records: str | Path) -> list[str]:
    """Copy the record files of every finished run under ``out`` into ``records/<run>/`` (a nested run at its
    path under ``records``); returns the runs whose record was written or updated. Each file is written atomically."""
    out, records = Path(out), Path(records)
    written = []
    for run in finished_runs(out):
        where = run.relative_to(out)
        static = json.loads((run / rundir.SUMMARY).read_text()).get("agent") in STATIC_AGENTS
        changed = False
        for name in RECORD_FILES:
            src, dst = run / name, records / where / name
            if not src.is_file() or (static and name == "mixture.json"):
                continue
            if dst.is_file() and dst.read_bytes() == src.read_bytes():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f"{name}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
            changed = True
        if changed:
            written.append(where.as_posix())
    return written


def restore_records(records: str | Path, out: str | Path) -> list[str]:
    """Put every recorded run (or learn directory) that ``out`` lacks back as ``out/<run>/`` (a directory already
    there, finished or not, is left as it is); returns the runs restored."""
    records, out = Path(records), Path(out)
    restored = []
    for top in sorted({run.relative_to(records).parts[0] for run in finished_runs(records)}):
        dst = out / top
        if dst.exists():
            continue
        tmp = out / f".{dst.name}.restoring"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(records / top, tmp)
        tmp.rename(dst)  # a run directory appears whole or not at all
        restored.append(dst.name)
    return restored
