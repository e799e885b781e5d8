"""The reference search (runs/reference.py): structured candidates before sampled ones, pruned short runs,
a study that continues after a stop, and the search budget every reference file must record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from test_tasks import CLEAN, task_file

from acodm_gym.cli import build_parser, main, parse_args
from acodm_gym.config import TASK_DIR, ConfigError, TaskConfig, load_config, task_names
from acodm_gym.data.corpus import open_corpus
from acodm_gym.envs.task import load_references, normalised_score, read_references, recompute_command, search_budget
from acodm_gym.runs import provenance, reference
from acodm_gym.runs.logger import read_metrics
from acodm_gym.runs.reference import references, structured_candidates, to_params, to_weights

from conftest import benchmark_script

REPO = Path(__file__).resolve().parent.parent
SEARCH = {"seeds": (0, 1), "finalists": 2, "search_steps": 8}  # validated at steps 2, 4, 6 and 8
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@pytest.fixture(scope="module")
def small_task(tmp_path_factory, corpus_text_dir):
    root = tmp_path_factory.mktemp("task")
    return task_file(root, corpus_text_dir, root / "cache")


def _overrides(task: Path) -> list[str]:
    """Final runs of 6 steps that read 40 sequences per scored domain (search runs read the training-time size)."""
    seq = load_config(None, task=str(task)).model.seq_len
    return [
        "train.total_steps=6",
        "env.eval_interval=3",
        "data.recipe.heldout_max_bytes=30000",
        f"task.eval_tokens={40 * seq}",
    ]


def _candidates(task: Path) -> list[tuple[str, np.ndarray]]:
    cfg = load_config(None, _overrides(task), task=str(task))
    corpus = open_corpus(cfg.data, log=lambda _: None)
    return structured_candidates(list(corpus.domains), corpus.natural_weights(), CLEAN)


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=reference.STUDY, storage=reference._storage(out))


@pytest.fixture(scope="module")
def searched(small_task, tmp_path_factory):
    """One uninterrupted search: every structured candidate, then two sampled mixtures; its out and result."""
    out = tmp_path_factory.mktemp("searched") / "ref"
    trials = len(_candidates(small_task)) + 2
    result = references(str(small_task), _overrides(small_task), out=out, trials=trials, log=lambda _: None, **SEARCH)
    return out, result


def test_the_search_proposes_each_structured_candidate_before_sampling(small_task, searched):
    out, result = searched
    candidates = _candidates(small_task)
    labels = [label for label, _ in candidates]
    domains = result["domains"]
    assert labels == ["natural", "uniform", "natural-t2", "natural-t3.3", *(f"no-{d}" for d in domains), "scored"]
    weights = dict(candidates)
    natural = weights["natural"]
    assert weights["natural-t2"] == pytest.approx(np.sqrt(natural) / np.sqrt(natural).sum())
    assert weights["scored"] == pytest.approx([0.25 if d in CLEAN else 0.0 for d in domains])
    assert weights["no-salad"][domains.index("salad")] == 0 and weights["no-salad"].max() == pytest.approx(0.2)
    rows = sorted(result["trials"], key=lambda r: r["number"])
    assert [r["number"] for r in rows] == list(range(len(labels) + 2))
    assert [r["candidate"] for r in rows[: len(labels)]] == labels  # every one of them, in order, first
    assert {r["stage"] for r in rows[: len(labels)]} == {"structured"}
    for row, (_, w) in zip(rows, candidates):
        assert row["weights"] == pytest.approx(w, abs=1e-12)  # through the study's parameters and back
    sampled = rows[len(labels) :]
    assert [r["stage"] for r in sampled] == ["sampled", "sampled"]
    assert all(r["candidate"].startswith("sampled-") and sum(r["weights"]) == pytest.approx(1.0) for r in sampled)
    assert not any(np.allclose(r["weights"], w) for r in sampled for w in weights.values())
    # where every domain is scored, uniform over the scored domains is uniform: proposed once
    everything = structured_candidates(["a", "b", "c"], np.array([0.5, 0.3, 0.2]), ["a", "b", "c"])
    assert [label for label, _ in everything] == [
        "natural",
        "uniform",
        "natural-t2",
        "natural-t3.3",
        "no-a",
        "no-b",
        "no-c",
    ]


def test_mixtures_are_parametrised_uniformly_on_the_simplex():
    """u_i uniform in [0, 1) gives Dirichlet(1, ..., 1) weights; a structured mixture goes through u and back."""
    rng = np.random.default_rng(0)
    domains = list("abcdef")
    for w in (rng.dirichlet(np.ones(6)), np.array([0.5, 0.5, 0, 0, 0, 0]), np.full(6, 1 / 6)):
        u = to_params(w, domains)
        assert list(u) == domains and all(0.0 <= x <= reference.U_MAX for x in u.values())
        assert to_weights(list(u.values())) == pytest.approx(w, abs=1e-12)
    draws = np.array([to_weights(rng.uniform(0.0, reference.U_MAX, 6)) for _ in range(20_000)])
    assert draws.mean(axis=0) == pytest.approx(np.full(6, 1 / 6), abs=0.004)
    assert draws.var(axis=0) == pytest.approx(np.full(6, 5 / (36 * 7)), rel=0.06)  # Dirichlet(1): (k-1)/(k²(k+1))


def test_pruning_stops_a_bad_short_run(searched):
    out, result = searched
    steps = SEARCH["search_steps"]
    rows = {r["candidate"]: r for r in result["trials"]}
    pruned = [r for r in rows.values() if r["state"] == "pruned"]
    assert pruned and len(pruned) < len(rows)
    trials = {t.user_attrs["candidate"]: t for t in _study(out).get_trials(states=DONE)}
    for r in rows.values():
        run = out / f"search-{r['candidate']}"
        logged = read_metrics(run / "metrics.csv")["step"]
        if r["state"] == "complete":
            assert (run / "summary.json").is_file() and logged[-1] == r["steps"] == steps
            continue
        # stopped at the validation where the pruner said so: no more steps, no final evaluation
        assert not (run / "summary.json").exists() and logged[-1] == r["steps"] < steps
        t = trials[r["candidate"]]
        at = t.last_step
        assert at == r["steps"] and t.intermediate_values[at] == r["val_metric"]
        earlier = [
            q.intermediate_values[at] for q in trials.values() if q.number < t.number and at in q.intermediate_values
        ]
        assert earlier and r["val_metric"] > min(earlier)  # behind a trial that reached the same step
    budget = result["search"]
    assert budget["pruned"] == len(pruned) and budget["search_runs"] == len(rows)
    search_steps = sum(r["steps"] for r in rows.values())
    assert search_steps < len(rows) * steps  # the pruned runs' steps were not trained
    final_steps = sum(len(f["runs"]) for f in result["finalists"]) * 6
    assert budget["steps"] == search_steps + final_steps


def test_the_finals_choose_on_validation_report_test_and_record_the_budget(small_task, searched, tmp_path):
    from acodm_gym.runs.runner import train

    out, result = searched
    complete = sorted((r for r in result["trials"] if r["state"] == "complete"), key=lambda r: r["val_metric"])
    chosen = [r["candidate"] for r in complete if r["candidate"] not in ("natural", "uniform")][:2]
    finals = {f["candidate"]: f for f in result["finalists"]}
    assert list(finals) == ["natural", "uniform", *chosen] and result["search"]["finalists"] == chosen
    assert result["best_static"] == min(finals, key=lambda c: np.mean(finals[c]["val_metric"]))  # on validation
    best = result["references"]["best_static"]
    assert best["weights"] == pytest.approx(finals[result["best_static"]]["weights"])
    assert best["runs"] == finals[result["best_static"]]["runs"]
    for ref in result["references"].values():
        assert ref["seeds"] == [0, 1] and len(ref["test_metric"]) == 2 and all(v > 1 for v in ref["val_metric"])
    # the search ranks at the training-time evaluation size; the final runs read task.eval_tokens
    seq = load_config(None, task=str(small_task)).model.seq_len
    search_run = load_config(str(out / "search-uniform" / "config.yaml"))
    assert search_run.task.eval_tokens is None and search_run.env.eval_interval == 2
    assert load_config(str(out / "natural-seed0" / "config.yaml")).task.eval_tokens == 40 * seq
    budget = result["search"]
    runs = sum(len(f["runs"]) for f in finals.values())
    assert budget["runs"] == budget["search_runs"] + runs and budget["structured"] == len(_candidates(small_task))
    assert budget["machine_seconds"] > 0 and budget["code"] == provenance.code_version()
    assert budget["sampler"].startswith("TPESampler(multivariate=True") and "SuccessiveHalving" in budget["pruner"]
    noise = result["evaluation"]
    for split in ("validation", "test"):
        assert 0 < noise[split]["paired_rel_se"] < noise[split]["metric_rel_se"] < 1
    # the file is a valid reference file: natural scores 0 on its own mean, and a run's summary gives the
    # budget beside its score
    cfg = load_config(
        None, [*_overrides(small_task), f"task.references={out / 'references.json'}"], task=str(small_task)
    )
    refs = load_references(cfg, open_corpus(cfg.data, log=lambda _: None))
    assert normalised_score(float(np.mean(refs["references"]["natural"]["test_metric"])), refs) == pytest.approx(0.0)
    line = search_budget(budget)
    assert line == (
        f"best static from {reference.METHOD}: {budget['runs']} runs, {budget['steps']:,} steps, "
        f"{budget['machine_seconds'] / 3600:.1f} machine-hours"
    )
    run = train(load_config(cfg, {"agent": {"name": "uniform"}, "run": {"out_dir": str(tmp_path)}}), log=lambda _: None)
    assert run.summary["score"] == pytest.approx(normalised_score(run.summary["test_metric"], refs))
    assert run.summary["score_budget"] == line


def test_a_report_rescores_from_the_stored_test_metrics_and_gives_the_budget_beside_the_scores(small_task, tmp_path):
    """A task's new references change its scores with no run trained again: the report reads them from the
    runs' summaries (here a run named after the shipped task Noisy, scored against its shipped references)."""
    from acodm_gym.runs.compare import compare, report

    cfg = load_config(None, ["train.total_steps=4", "env.eval_interval=2", "task.name=noisy"], task=str(small_task))
    with pytest.warns(UserWarning, match="another corpus"):  # scored by the report, not at the end of the run
        out = compare(cfg, seeds=[0], methods=["natural"], out=tmp_path / "cmp", log=lambda _: None)
    summary = out / "natural-seed0" / "summary.json"
    before, test_metric = summary.stat().st_mtime_ns, json.loads(summary.read_text())["test_metric"]
    refs = read_references(TaskConfig(name="noisy"))
    report(out)
    assert summary.stat().st_mtime_ns == before
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["natural"]["score"] == [pytest.approx(normalised_score(test_metric, refs))]
    assert results["reference_search"] == refs["search"]
    line = search_budget(refs["search"])
    assert "legacy search" in line and "27 runs, 7,200 steps, 1.5 machine-hours" in line
    assert f"Reference scores: {line}." in (out / "report.md").read_text()


def _kill_at(task: Path, out: Path, label: str, trials: int) -> subprocess.CompletedProcess:
    """The search in a process of its own, killed (SIGKILL) as the run of ``label`` starts."""
    code = (
        "import os, signal\n"
        "from acodm_gym.runs.reference import references\n"
        f"def log(line):\n    if line.startswith('== search-{label}:'):\n        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"references({str(task)!r}, {_overrides(task)!r}, out={str(out)!r}, trials={trials}, log=log, **{SEARCH!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_stopped_search_continues_without_redoing_finished_trials(small_task, searched, tmp_path):
    labels = [label for label, _ in _candidates(small_task)]
    trials, out = len(labels) + 2, tmp_path / "ref"
    killed = _kill_at(small_task, out, labels[3], trials)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    study = _study(out)
    assert [t.user_attrs["candidate"] for t in study.get_trials(states=DONE)] == labels[:3]
    (running,) = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))  # its process is gone
    assert running.user_attrs["candidate"] == labels[3]
    finished = {label: (out / f"search-{label}").stat().st_mtime_ns for label in labels[:3]}

    def ctrl_c(line: str) -> None:  # Ctrl-C as the run of the sixth candidate starts
        if line.startswith(f"== search-{labels[5]}:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match="rerun the same command to continue it"):
        references(str(small_task), _overrides(small_task), out=out, trials=trials, log=ctrl_c, **SEARCH)
    logged: list[str] = []
    result = references(str(small_task), _overrides(small_task), out=out, trials=trials, log=logged.append, **SEARCH)

    study = _study(out)
    done = study.get_trials(states=DONE)
    assert len(done) == trials and sorted(t.user_attrs["candidate"] for t in done[:-2]) == sorted(labels)
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert [t.user_attrs["candidate"] for t in failed] == [labels[3], labels[5]]  # killed, then Ctrl-C
    assert any(f"({labels[5]}) was interrupted: queued again" in line for line in logged)  # (the killed one: before)
    # nothing finished was trained or read again
    started = [line for line in logged if line.startswith("== search-")]
    assert not any(
        line.startswith(f"== search-{label}:") for label in labels[:5] if label != labels[3] for line in started
    )
    assert {label: (out / f"search-{label}").stat().st_mtime_ns for label in labels[:3]} == finished
    # the same runs give the same numbers as the uninterrupted search
    uninterrupted = {r["candidate"]: r for r in searched[1]["trials"] if r["state"] == "complete"}
    compared = [r for r in result["trials"] if r["state"] == "complete" and r["candidate"] in uninterrupted]
    assert compared and all(r["val_metric"] == uninterrupted[r["candidate"]]["val_metric"] for r in compared)
    # continuing with another config of the search runs is refused before any work
    journal = (out / reference.JOURNAL).read_bytes()
    with pytest.raises(ConfigError, match=r"search.journal holds a reference search .*train.total_steps: 8 -> 4"):
        references(
            str(small_task),
            _overrides(small_task),
            out=out,
            trials=trials,
            log=logged.append,
            **{**SEARCH, "search_steps": 4},
        )
    assert (out / reference.JOURNAL).read_bytes() == journal


def test_a_stopped_search_carried_to_another_machine_continues_from_its_records(small_task, searched, tmp_path):
    carry, labels = benchmark_script("carry"), [label for label, _ in _candidates(small_task)]
    trials, out, records = len(labels) + 2, tmp_path / "session-1" / "ref", tmp_path / "records"
    killed = _kill_at(small_task, out, labels[3], trials)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    with (out / reference.JOURNAL).open("ab") as journal:
        journal.write(b'{"op_code": 5, "worker_id"')  # a line being appended as the save reads it
    # the finished runs are kept, not the pruned ones
    finished = [f"search-{label}" for label in labels[:3] if (out / f"search-{label}" / "summary.json").is_file()]
    assert finished and sorted(carry.save_tasks(out, records)) == sorted([*finished, reference.JOURNAL])
    assert not any((records / run / "model").exists() for run in finished)  # records only
    assert (records / reference.JOURNAL).read_bytes().endswith(b"\n")  # up to its last complete line
    assert carry.save_tasks(out, records) == []  # nothing new

    moved = tmp_path / "session-2" / "ref"
    assert sorted(carry.restore(records, moved)) == sorted([*finished, reference.JOURNAL])
    logged: list[str] = []
    result = references(str(small_task), _overrides(small_task), out=moved, trials=trials, log=logged.append, **SEARCH)
    started = [line for line in logged if line.startswith("== search-")]
    assert not any(line.startswith(f"== search-{label}:") for label in labels[:3] for line in started)
    assert any(line.startswith(f"== search-{labels[3]}:") for line in started)  # the killed trial, queued again
    uninterrupted = {r["candidate"]: r["val_metric"] for r in searched[1]["trials"] if r["state"] == "complete"}
    carried = {r["candidate"]: r["val_metric"] for r in result["trials"] if r["state"] == "complete"}
    both = [label for label in labels if label in carried and label in uninterrupted]
    assert both and all(carried[label] == uninterrupted[label] for label in both)  # the same runs, the same figures
    assert carry.restore(records, moved) == []  # what is there is left as it is


@pytest.mark.parametrize("budget", ["missing", "a list of runs (the legacy format)"])
def test_a_reference_file_without_its_search_budget_is_refused_with_the_command(small_task, tmp_path, capsys, budget):
    shipped = json.loads((TASK_DIR / "noisy.references.json").read_text())
    if budget == "missing":
        del shipped["search"]
    else:
        shipped["search"] = shipped.pop("trials")
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(shipped))
    argv = ["train", "--task", str(small_task), "--agent", "uniform", "task.name=noisy", f"task.references={path}"]
    assert main([*argv, f"run.out_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if path.name in line or "Traceback" in line]
    assert line.startswith(f"error: Reference file {path} does not record the budget of its search"), err
    assert line.endswith(f"acodm-gym reference --task noisy --out {tmp_path} run.progress=false train.threads=1")
    assert not (tmp_path / "runs").exists()


def test_every_shipped_reference_file_records_its_budget_and_the_command_that_recomputes_it():
    for name in task_names():
        refs = read_references(TaskConfig(name=name))  # a file without its budget is refused here
        if refs is None:
            continue
        search = refs["search"]
        if search["sampler"] is None:  # made by the search before Optuna: the budget derived from its record
            finals = sum(len(r["runs"]) for r in refs["references"].values())
            assert search["runs"] == search["search_runs"] + finals == len(refs["trials"]) + finals
            assert search["steps"] == search["search_runs"] * search["search_steps"] + finals * search["final_steps"]
            assert search_budget(search).startswith("best static from the legacy search")
        else:
            assert search["code"]["source"] and search["optuna"] and search["machine_seconds"] > 0
        command = recompute_command(TASK_DIR / f"{name}.references.json", TaskConfig(name=name), refs["overrides"])
        assert command == " ".join([f"acodm-gym reference --task {name} --ship", *refs["overrides"]])
        args = parse_args(build_parser(), command.split()[1:])
        assert (args.command, args.task, args.ship, args.out) == ("reference", name, True, None)
        assert args.overrides == refs["overrides"] and args.func.__name__ == "cmd_reference"


def test_search_counts_are_checked_first(small_task, tmp_path):
    for budget in ({"finalists": -1}, {"trials": 10**6}, {"search_steps": 0}, {"seeds": []}, {"seeds": [-1]}):
        with pytest.raises(ConfigError, match="out of range|seed"):
            references(str(small_task), out=tmp_path / "ref", log=lambda _: None, **budget)
    assert not (tmp_path / "ref").exists()  # refused before any run or directory
