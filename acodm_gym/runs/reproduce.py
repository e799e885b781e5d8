"""Do committed results reproduce? Rerun a sample of run records and compare their test metric.

A record (``records.py``: config.yaml, summary.json, mixture.json) holds the whole config of its run, so
rerunning it needs no other input. ``reproduce`` trains each selected record's config again in a scratch
directory and compares the test metric with the recorded one to a relative 1e-9 (a rerun of the same
code on the same corpus gives the same bits); a mismatch names both values and both code versions.

By default the sample is one record per method and task: the lowest seed of each ``<method>-seed<s>``.
A run that starts from another run's agent first reruns that run from its own record; a proxy target
stage's frozen actor comes from a learn directory (``runs/learn.py``), whose training episodes are rerun
in order by ``learn.train_agent`` from the records of their configs.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from pathlib import Path
from typing import Callable, Sequence

import yaml

from ..config import PROXY_METHOD, learned_agent, load_config
from ..errors import InputError
from ..registry import AGENTS
from . import learn, provenance, rundir
from .runner import train

TOLERANCE = 1e-9  # relative, on the test metric
_SEEDED = re.compile(r"^(?P<method>.+)-seed(?P<seed>\d+)$")


def find_records(root: str | Path) -> list[Path]:
    """Every record under ``root``: ``root/<run>/`` or ``root/<task>/<run>/`` holding a summary.json, and the
    scoring runs of learned methods, ``[<task>/]<method>/test/after-N/seed-S/`` (``learn.scoring_dir``)."""
    root = Path(root)
    found = [
        *(p for pattern in ("*", "*/*") for p in root.glob(f"{pattern}/{rundir.SUMMARY}")),
        *(p for pattern in ("*", "*/*") for p in root.glob(f"{pattern}/test/after-*/seed-*/{rundir.SUMMARY}")),
    ]
    if not found:
        raise InputError(
            f"No run records under {root} (folders holding {rundir.SUMMARY}): give a records directory, "
            "e.g. benchmarks/results/tasks/runs."
        )
    return sorted(p.parent for p in found)


def sample(root: str | Path, patterns: Sequence[str] = ()) -> list[Path]:
    """The records to rerun: those whose ``<task>/<run>`` or ``<run>`` matches one of ``patterns``, else
    the lowest seed of each method in each task folder."""
    root, records = Path(root), find_records(root)
    if patterns:
        names = {r: (r.relative_to(root).as_posix(), r.name) for r in records}
        chosen = [r for r in records if any(fnmatch.fnmatch(n, p) for n in names[r] for p in patterns)]
        if not chosen:
            raise InputError(f"No record under {root} matches {', '.join(patterns)} (patterns like 'noisy/odm-seed*').")
        return chosen
    lowest: dict[tuple[Path, str], tuple[int, Path]] = {}
    for r in records:
        match = _SEEDED.match(r.name)
        if match and match["method"] in (*AGENTS.names(), PROXY_METHOD, "best-static"):
            key, seed = (r.parent, match["method"]), int(match["seed"])
        elif _scoring_run(r) and learned_agent(r.parents[2].name):  # a learned method's scoring run
            key, seed = (r.parents[3], r.parents[2].name), int(r.name.removeprefix("seed-"))
        else:
            continue
        if key not in lowest or seed < lowest[key][0]:
            lowest[key] = (seed, r)
    return sorted(r for _, r in lowest.values())


def _scoring_run(record: Path) -> bool:
    """Whether ``record`` is a scoring run in a learn directory (``<learn dir>/test/after-N/seed-S``)."""
    return (
        record.name.startswith("seed-") and record.parent.name.startswith("after-") and record.parents[1].name == "test"
    )


def _episodes(record: Path) -> list[Path]:
    """The recorded training episodes of a learn directory, in order (none: ``record`` is a plain run)."""
    return sorted((record / "train").glob(f"ep-*/{rundir.SUMMARY}"))  # before a top-level summary of old records


def _config(record: Path, out: Path, rerun: Callable[[Path], Path]) -> dict:
    """The record's config, run into ``out``; an agent it loads from a run of its sweep comes from ``rerun``."""
    if not (record / "config.yaml").is_file():
        raise InputError(f"The record {record} has no config.yaml: restore it from git, or leave it out (--runs).")
    cfg = yaml.safe_load((record / "config.yaml").read_text())
    recorded_out = Path(cfg["run"]["out_dir"])
    cfg["run"]["out_dir"] = str(out)
    agent = cfg["agent"]
    for holder, key in ((agent, "init_from"), (agent.get("options") or {}, "path")):
        path = holder.get(key)
        learn_dir = _scoring_run(record) and Path(path or "").parent == recorded_out.parent.parent
        if path and (Path(path).parent.parent == recorded_out or learn_dir):
            dependency = record.parents[2] if learn_dir else record.parent / Path(path).parent.name
            if not (dependency / rundir.SUMMARY).is_file() and not _episodes(dependency):
                raise InputError(
                    f"{record} loads the agent of {Path(path).parent.name}, which has no record in {record.parent}."
                )
            holder[key] = str(rerun(dependency) / Path(path).name)
    return cfg


def reproduce(
    root: str | Path, out: str | Path, patterns: Sequence[str] = (), log: Callable[[str], None] = print
) -> list[dict]:
    """Rerun the sampled records of ``root`` into ``out`` and compare each one's test metric; returns one row
    per record: ``record``, ``recorded``, ``rerun``, ``match`` and the two code versions.

    :param patterns: ``<task>/<run>`` globs choosing the records (default: one per method and task)
    """
    root, out = Path(root), Path(out)
    chosen = sample(root, patterns)
    done: dict[Path, Path] = {}

    def target(record: Path) -> Path:
        return out / record.parent.relative_to(root) if record.parent != root else out

    def check(record: Path) -> Path:  # every config and the records it loads agents from, before any training
        for config in [e.parent for e in _episodes(record)][:1] or [record]:  # what rerun reads of a learn directory
            load_config(_config(config, target(record), check))
        return record

    def rerun(record: Path) -> Path:
        if record not in done:
            episodes = [e.parent for e in _episodes(record)]
            if episodes:  # a learn directory: its episodes again, from the first one's config and their seeds
                first = load_config(_config(episodes[0], target(record) / record.name / "train", rerun))
                seeds = [yaml.safe_load((e / "config.yaml").read_text())["run"]["seed"] for e in episodes]
                log(f"== {record.relative_to(root)}")
                learn.train_agent(first, target(record) / record.name, seeds, log=log, overwrite=True)
                done[record] = target(record) / record.name
            else:
                cfg = load_config(_config(record, target(record), rerun))
                log(f"== {record.relative_to(root)}")
                done[record] = train(cfg, log=log, overwrite=True).run_dir
        return done[record]

    for record in chosen:
        check(record)

    rows = []
    for record in chosen:
        recorded = json.loads((record / rundir.SUMMARY).read_text())
        summary = json.loads((rerun(record) / rundir.SUMMARY).read_text())
        same = math.isclose(summary["test_metric"], recorded["test_metric"], rel_tol=TOLERANCE, abs_tol=0.0)
        rows.append(
            {
                "record": record.relative_to(root).as_posix(),
                "recorded": recorded["test_metric"],
                "rerun": summary["test_metric"],
                "match": same,
                "recorded_code": provenance.describe(recorded.get("code")),
                "code": provenance.describe(summary.get("code")),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """The rows of ``reproduce`` as a markdown table, then a verdict line."""
    lines = ["| record | recorded test metric | rerun | match | recorded by |", "|---|---|---|---|---|"]
    for r in rows:
        verdict = "yes" if r["match"] else f"NO (Δ {r['rerun'] - r['recorded']:+.3g})"
        lines.append(f"| {r['record']} | {r['recorded']:.10g} | {r['rerun']:.10g} | {verdict} | {r['recorded_code']} |")
    bad = [r["record"] for r in rows if not r["match"]]
    rerun_by = rows[0]["code"] if rows else provenance.describe(provenance.code_version())
    lines += ["", f"Rerun by {rerun_by}."]
    lines.append(
        f"{len(bad)} of {len(rows)} records do not reproduce: {', '.join(bad)}"
        if bad
        else f"All {len(rows)} records reproduce (relative tolerance {TOLERANCE:g})."
    )
    return "\n".join(lines)
