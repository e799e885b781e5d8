"""Records bound to code: the code version and corpus in every run, reuse only of the same, and reproduce."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from acodm_gym.cli import main
from acodm_gym.config import load_config
from acodm_gym.runs import provenance
from acodm_gym.runs.compare import compare
from acodm_gym.runs.records import save_records

from conftest import make_local_corpus, small_config


def _cfg(corpus: Path, cache: Path):
    return load_config(small_config(corpus, cache, train={"total_steps": 4}, env={"eval_interval": 2}))


def _edit_summary(run: Path, **changes) -> None:
    summary = json.loads((run / "summary.json").read_text())
    for key, value in changes.items():
        if value is None:
            summary.pop(key, None)
        else:
            summary[key] = value
    (run / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def own_corpus(tmp_path_factory) -> Path:
    """A corpus this module may change (the shared one stays as it is)."""
    return make_local_corpus(tmp_path_factory.mktemp("own") / "text")


def test_a_run_records_its_code_version_and_corpus(corpus_text_dir, cache_dir, tmp_path):
    out = compare(_cfg(corpus_text_dir, cache_dir), [0], ["natural"], tmp_path / "cmp", log=lambda _: None)
    summary = json.loads((out / "natural-seed0" / "summary.json").read_text())
    code = summary["code"]
    assert code == provenance.code_version() and len(code["source"]) == 16
    assert all(code[lib] for lib in provenance.LIBRARIES)  # torch, transformers, stable-baselines3 versions
    assert summary["corpus"] and provenance.stale_reasons(summary, summary["corpus"]) == []
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["code_versions"] == {provenance.describe(code): 1}
    assert "This code is the same." in (out / "report.md").read_text()


def test_a_record_of_another_code_version_is_not_reused(corpus_text_dir, cache_dir, tmp_path):
    cfg = _cfg(corpus_text_dir, cache_dir)
    out = compare(cfg, [0], ["natural"], tmp_path / "cmp", log=lambda _: None)
    run = out / "natural-seed0"
    other = {**provenance.code_version(), "source": "0" * 16}
    _edit_summary(run, code=other)
    logged = []
    compare(cfg, [0], ["natural"], out, log=logged.append)
    assert any("is stale (source 0000000000000000" in line and "trained again" in line for line in logged)
    assert json.loads((run / "summary.json").read_text())["code"] == provenance.code_version()
    # a record made before runs kept their code version (the committed ones): stale too
    _edit_summary(run, code=None)
    logged.clear()
    compare(cfg, [0], ["natural"], out, log=logged.append)
    assert any(provenance.UNKNOWN in line and "trained again" in line for line in logged)
    # on request, a stale run is kept, and the report says it is of another version
    _edit_summary(run, code=other)
    logged.clear()
    compare(cfg, [0], ["natural"], out, log=logged.append, keep_stale=True)
    assert any("kept (keep_stale)" in line for line in logged) and not any("trained again" in x for x in logged)
    assert json.loads((run / "summary.json").read_text())["code"]["source"] == "0" * 16
    assert "runs of another version are stale" in (out / "report.md").read_text()


def test_a_run_on_another_corpus_is_not_reused(own_corpus, tmp_path):
    cfg = _cfg(own_corpus, tmp_path / "cache")
    out = compare(cfg, [0], ["natural"], tmp_path / "cmp", log=lambda _: None)
    before = json.loads((out / "natural-seed0" / "summary.json").read_text())["corpus"]
    # the corpus changes after the run: one of its text files is replaced by another text
    code = own_corpus / "code"
    victim = sorted(code.iterdir())[0]
    victim.write_text((own_corpus / "legal" / sorted(p.name for p in (own_corpus / "legal").iterdir())[0]).read_text())
    logged = []
    compare(cfg, [0], ["natural"], out, log=logged.append)
    assert any(f"corpus {before} (now" in line and "trained again" in line for line in logged)
    after = json.loads((out / "natural-seed0" / "summary.json").read_text())["corpus"]
    assert after != before


def test_reproduce_reruns_records_and_detects_a_changed_metric(corpus_text_dir, cache_dir, tmp_path, capsys):
    cfg = _cfg(corpus_text_dir, cache_dir)
    first = compare(cfg, [0, 1], ["natural", "odm"], tmp_path / "sweep" / "task", log=lambda _: None)
    records = tmp_path / "records"
    save_records(first, records / "task")
    # default sample: one per method and task (the lowest seed); all reproduce
    assert main(["reproduce", str(records), "--out", str(tmp_path / "again")]) == 0
    printed = capsys.readouterr().out
    assert "All 2 records reproduce" in printed
    assert "task/natural-seed0" in printed and "task/odm-seed0" in printed and "seed1" not in printed
    # a recorded metric that differs by 1e-6 (relative 5e-9 or more) is reported, by name, with exit 3
    summary = json.loads((records / "task" / "odm-seed1" / "summary.json").read_text())
    _edit_summary(records / "task" / "odm-seed1", test_metric=summary["test_metric"] + 1e-6)
    shutil.rmtree(tmp_path / "again")
    assert main(["reproduce", str(records), "--runs", "odm-seed1", "--out", str(tmp_path / "again")]) == 3
    printed = capsys.readouterr().out
    assert "1 of 1 records do not reproduce: task/odm-seed1" in printed and "NO (Δ -1e-06)" in printed


def test_reproduce_of_a_missing_record_is_a_clear_error(tmp_path, capsys):
    assert main(["reproduce", str(tmp_path), "--out", str(tmp_path / "again")]) == 2
    assert "No run records under" in capsys.readouterr().err


def test_reproduce_reruns_the_proxy_stage_a_target_run_loads_its_actor_from(corpus_text_dir, cache_dir, tmp_path):
    from acodm_gym.runs.reproduce import reproduce

    cfg = _cfg(corpus_text_dir, cache_dir)
    first = compare(cfg, [0], ["acodm-proxy"], tmp_path / "sweep", log=lambda _: None)
    save_records(first, tmp_path / "records")
    assert (tmp_path / "records" / "acodm-proxy-stage-seed0" / "train" / "ep-000" / "config.yaml").is_file()
    logged = []
    rows = reproduce(tmp_path / "records", tmp_path / "again", log=logged.append)
    assert [r["record"] for r in rows] == ["acodm-proxy-seed0"] and rows[0]["match"]
    assert logged.index("== acodm-proxy-stage-seed0") < logged.index("== acodm-proxy-seed0")
    saved = (tmp_path / "again" / "acodm-proxy-seed0" / "config.yaml").read_text()
    assert str(tmp_path / "again" / "acodm-proxy-stage-seed0" / "agent.pt") in saved


def test_a_stopped_run_of_another_code_version_is_not_continued(corpus_text_dir, cache_dir, tmp_path):
    cfg = load_config(_cfg(corpus_text_dir, cache_dir), ["run.checkpoint_interval=2"])
    out = compare(cfg, [0], ["natural"], tmp_path / "cmp", log=lambda _: None)
    run = out / "natural-seed0"
    (run / "summary.json").unlink()  # as if stopped after its last checkpoint
    for meta in (run / "checkpoints").glob("step-*/meta.json"):
        saved = json.loads(meta.read_text())
        meta.write_text(json.dumps({**saved, "code": {**saved["code"], "torch": "0.0"}}))
    logged = []
    compare(cfg, [0], ["natural"], out, log=logged.append)
    assert any("stopped at a checkpoint of other code (torch 0.0" in line for line in logged)
    assert not any(line.startswith("resuming") for line in logged)
    assert json.loads((run / "summary.json").read_text())["resumed_at"] == []


def test_the_code_version_covers_the_package_not_the_repository_or_reference_scores():
    files = {p.relative_to(provenance.PACKAGE).as_posix() for p in provenance._package_files()}
    assert {"runs/compare.py", "lm/step.py", "configs/default.yaml", "configs/tasks/noisy.yaml"} <= files
    assert not any(f.endswith(".references.json") for f in files)  # new references rescore, they do not rerun


def test_reproduce_refuses_a_record_whose_agent_source_has_no_record_before_training(
    corpus_text_dir, cache_dir, tmp_path, capsys
):
    cfg = _cfg(corpus_text_dir, cache_dir)
    first = compare(cfg, [0], ["natural", "acodm-proxy"], tmp_path / "sweep", log=lambda _: None)
    save_records(first, tmp_path / "records")
    shutil.rmtree(tmp_path / "records" / "acodm-proxy-stage-seed0")
    assert main(["reproduce", str(tmp_path / "records"), "--out", str(tmp_path / "again")]) == 2
    assert "loads the agent of acodm-proxy-stage-seed0, which has no record" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()  # nothing trained, not even natural-seed0, whose record is whole
