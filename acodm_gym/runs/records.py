"""A sweep's finished runs as small records that can be committed, and restored on another machine.

A run directory holds a model and checkpoints (megabytes); what a sweep reads back from a finished
run is much less: its config (to tell whether it is the run asked for), its summary (the scores and
curves) and, for a learned agent, its mixture schedule (the weights plot). ``save_records`` copies
those files of every finished run under a sweep's directory into a records directory;
``restore_records`` puts them back where a run directory is missing, so ``compare`` and
``reference`` reuse the run instead of training it again. A sweep then continues in a later
session, or on another machine, from where the last one stopped.

A restored run has no model and no agent: the references' evaluation noise is computed only where the
run was trained, and a proxy stage whose actor is needed (its target run is not finished) is trained
again from its seed (its training episodes, under the stage's directory, have no record).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import rundir

RECORD_FILES = ("config.yaml", rundir.SUMMARY, "mixture.json")
STATIC_AGENTS = ("natural", "uniform", "static")  # their mixture schedule is the constant in their config


def save_records(out: str | Path, records: str | Path) -> list[str]:
    """Copy the record files of every finished run under ``out`` into ``records/<run>/``; returns the runs
    whose record was written or updated. Each file is written atomically."""
    out, records = Path(out), Path(records)
    written = []
    for summary in sorted(out.glob(f"*/{rundir.SUMMARY}")):
        run = summary.parent
        static = json.loads(summary.read_text()).get("agent") in STATIC_AGENTS
        changed = False
        for name in RECORD_FILES:
            src, dst = run / name, records / run.name / name
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
            written.append(run.name)
    return written


def restore_records(records: str | Path, out: str | Path) -> list[str]:
    """Put every recorded run that ``out`` lacks back as ``out/<run>/`` (a run directory already there,
    finished or not, is left as it is); returns the runs restored."""
    records, out = Path(records), Path(out)
    restored = []
    for summary in sorted(records.glob(f"*/{rundir.SUMMARY}")):
        dst = out / summary.parent.name
        if dst.exists():
            continue
        tmp = out / f".{dst.name}.restoring"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(summary.parent, tmp)
        tmp.rename(dst)  # a run directory appears whole or not at all
        restored.append(dst.name)
    return restored
