"""Run directories that never lose work: validated before touched, never replaced by accident,
one run at a time, outputs whole or absent, and a plain answer to a full disk or Ctrl-C."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from acodm_gym import errors
from acodm_gym.config import load_config
from acodm_gym.runs import checkpoint, rundir
from acodm_gym.runs.compare import compare
from acodm_gym.runs.runner import resume, train

from conftest import small_config

REPO = Path(__file__).resolve().parent.parent
QUIET = dict(plots=False, tensorboard=False, progress=False)


def _cfg(corpus_text_dir, cache_dir, out: Path, **sections):
    run = {"out_dir": str(out), "name": "run", "checkpoint_interval": 5, **QUIET, **sections.pop("run", {})}
    train_ = {"total_steps": 10, **sections.pop("train", {})}
    return load_config(
        small_config(corpus_text_dir, cache_dir, agent={"name": "natural"}, train=train_, run=run, **sections)
    )


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file's size and mtime, except the lock file (which names whoever last held the lock)."""
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and p.name != rundir.LOCK)
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


def test_a_fresh_run_builds_everything_first_and_never_replaces_checkpoints_unasked(
    corpus_text_dir, cache_dir, tmp_path
):
    first = train(_cfg(corpus_text_dir, cache_dir, tmp_path), log=lambda _: None)
    before = _snapshot(first.run_dir)
    assert "checkpoints/step-000010/meta.json" in before
    bad = [
        {"data": {"corpus": str(tmp_path / "no-such-corpus")}},  # the corpus does not open
        {"model": {"probe_module": "no_such_module"}},  # the model builds, its probes do not
        {"agent": {"name": "acodm", "options": {"no_such_option": 1}}},  # the agent does not construct
    ]
    for sections in bad:
        with pytest.raises((ValueError, FileNotFoundError)):
            train(load_config(_cfg(corpus_text_dir, cache_dir, tmp_path), sections), log=lambda _: None)
        assert _snapshot(first.run_dir) == before, sections

    with pytest.raises(rundir.RunDirError, match=r"checkpoints up to step-000010.*--resume .*run.*--overwrite") as exc:
        train(_cfg(corpus_text_dir, cache_dir, tmp_path, train={"total_steps": 5}), log=lambda _: None)
    assert _snapshot(first.run_dir) == before

    logs: list[str] = []
    again = train(_cfg(corpus_text_dir, cache_dir, tmp_path, train={"total_steps": 5}), log=logs.append, overwrite=True)
    assert any("removing the earlier run's checkpoints" in line for line in logs), logs
    assert again.summary["steps"] == 5 and sorted(p.name for p in (again.run_dir / "checkpoints").iterdir()) == [
        "latest",
        "step-000005",
    ]
    assert "--overwrite" in str(exc.value) and "train(cfg, overwrite=True)" in str(exc.value)


def test_a_finished_run_without_checkpoints_is_not_replaced_either(corpus_text_dir, cache_dir, tmp_path):
    cfg = _cfg(corpus_text_dir, cache_dir, tmp_path, run={"checkpoint_interval": 0})
    result = train(cfg, log=lambda _: None)
    assert not (result.run_dir / "checkpoints").exists()  # run.checkpoint_interval=0 keeps none
    with pytest.raises(rundir.RunDirError, match="the outputs of a finished run.*--overwrite"):
        train(cfg, log=lambda _: None)


def test_an_overwritten_run_directory_holds_nothing_of_the_earlier_run(corpus_text_dir, cache_dir, tmp_path):
    """``--overwrite`` once left the earlier run's diagnostics.png behind (also with run.plots=false)."""
    learner = load_config(_cfg(corpus_text_dir, cache_dir, tmp_path, run={"plots": True}), {"agent": {"name": "doge"}})
    first = train(learner, log=lambda _: None)
    assert (first.run_dir / "diagnostics.png").is_file()
    started = time.time_ns()
    again = train(_cfg(corpus_text_dir, cache_dir, tmp_path), log=lambda _: None, overwrite=True)
    # the lock file stays (each run rewrites who holds it, so its mtime says nothing: it was the coarse file clock's
    # tick that once let it pass as old); every other file is new
    lock = again.run_dir / rundir.LOCK
    old = [str(p) for p in again.run_dir.rglob("*") if p.is_file() and p != lock and p.stat().st_mtime_ns < started]
    assert old == [] and lock.is_file(), old
    assert not (again.run_dir / "diagnostics.png").exists() and again.summary["agent"] == "natural"


# A real allocation failure, cheaply: the CLI under an address-space limit that the imports, the corpus and
# the tiny model fit in, and a batch whose activations do not.
_LIMITED = (
    "import resource, sys; limit = int(sys.argv.pop(1)); resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); "
    "from acodm_gym.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_a_batch_that_does_not_fit_in_memory_is_refused_before_the_run_directory_is_touched(
    corpus_text_dir, cache_dir, tmp_path
):
    """``--overwrite`` with such a batch once deleted the earlier run and then died with the allocator's
    traceback; into a new directory it exited 1, the code of a run whose last checkpoint is usable."""
    cfg = _cfg(corpus_text_dir, cache_dir, tmp_path)
    first = train(cfg, log=lambda _: None)
    before = _snapshot(first.run_dir)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for name, extra in (("run", ["--overwrite"]), ("new", [])):
        argv = ["train", "--config", str(path), "--name", name, "train.batch_size=40000", *extra]
        proc = subprocess.run(
            [sys.executable, "-c", _LIMITED, str(3 << 30), *argv], capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert "train.batch_size=40000" in line and "does not fit in memory" in line, line
    assert _snapshot(first.run_dir) == before  # nothing of the earlier run was removed
    assert not (tmp_path / "new").exists()


_HOLD = """
import sys, time
from acodm_gym.runs.rundir import RunLock
lock = RunLock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_into_a_locked_directory_fails_at_once_naming_the_first(corpus_text_dir, cache_dir, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(rundir.RunDirError, match=rf"{run_dir} is in use by another run \(pid {holder.pid} on "):
            train(_cfg(corpus_text_dir, cache_dir, tmp_path), log=lambda _: None)
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing written, nothing removed
    finally:
        holder.kill()
        holder.wait()
    result = train(_cfg(corpus_text_dir, cache_dir, tmp_path), log=lambda _: None)  # the lock died with its holder
    assert result.summary["steps"] == 10


def test_resuming_a_live_run_without_a_checkpoint_says_it_is_in_use(corpus_text_dir, cache_dir, tmp_path):
    """It once said the run had stopped before its first checkpoint: it is running."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        in_use = rf"{run_dir} is in use by another run \(pid {holder.pid} on .*Wait for it to finish or stop it"
        with pytest.raises(rundir.RunDirError, match=in_use):
            resume(run_dir, log=lambda _: None)
        with pytest.raises(rundir.RunDirError, match=in_use):
            train(_cfg(corpus_text_dir, cache_dir, tmp_path), log=lambda _: None, resume=run_dir)
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(errors.ResumeError, match="holds no checkpoint"):  # stopped: now it has, in the same words
        resume(run_dir, log=lambda _: None)


def test_temporary_files_of_a_killed_writer_are_removed_at_the_next_start(corpus_text_dir, cache_dir, tmp_path):
    """A SIGKILL during an atomic write leaves ``config.tmp-<pid>.yaml`` (or ``model.tmp-<pid>/``) behind."""
    run_dir = tmp_path / "run"
    train(_cfg(corpus_text_dir, cache_dir, tmp_path), log=lambda _: None)
    (run_dir / "summary.json").unlink()  # as if killed while writing the outputs
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        stale = [f"config.tmp-{dead.pid}.yaml", f"summary.tmp-{dead.pid}.json", f"model.tmp-{dead.pid}"]
        for name in stale[:2]:
            (run_dir / name).write_text("half")
        (run_dir / stale[2]).mkdir()
        (run_dir / stale[2] / "model.safetensors").write_bytes(b"half")
        (run_dir / f"mixture.tmp-{live.pid}.json").write_text("being written")
        logs: list[str] = []
        result = resume(run_dir, log=logs.append)
        assert result.summary["resumed_at"] == [10]  # the final checkpoint: the outputs are written again
        names = {p.name for p in run_dir.iterdir()}
        assert not names & set(stale) and f"mixture.tmp-{live.pid}.json" in names, names
        assert any("stale temporary" in line and f"config.tmp-{dead.pid}.yaml" in line for line in logs), logs
    finally:
        live.kill()
        live.wait()


def test_full_disk_while_writing_the_outputs_loses_nothing_and_resume_writes_them(
    corpus_text_dir, cache_dir, tmp_path, monkeypatch
):
    real_write = rundir._write

    def full_at_model(path, writer):
        if path.name.startswith("model.tmp-"):
            writer(path)  # most of it made it to disk, then the disk filled
            (path / "model.safetensors").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path / "model.safetensors"))
        real_write(path, writer)

    monkeypatch.setattr(rundir, "_write", full_at_model)
    cfg = _cfg(corpus_text_dir, cache_dir, tmp_path, run={"checkpoint_interval": 0})  # no periodic checkpoints
    with pytest.raises(
        errors.OutputError,
        match=r"writing .*model failed \(No space left on device.*Written whole before it: none.*"
        r"final checkpoint .*step-000010: free disk space.*--resume",
    ) as exc:
        train(cfg, log=lambda _: None)
    run_dir = tmp_path / "run"
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "checkpoints", "config.yaml", "metrics.csv"], str(
        exc.value
    )
    assert checkpoint.find(run_dir).step == 10

    monkeypatch.setattr(rundir, "_write", real_write)
    result = resume(run_dir, log=lambda _: None)
    assert result.summary["resumed_at"] == [10] and not (run_dir / "checkpoints").exists()
    ref = train(load_config(cfg, {"run": {"name": "ref"}}), log=lambda _: None)
    from safetensors.torch import load_file

    a, b = (load_file(d / "model" / "model.safetensors") for d in (run_dir, ref.run_dir))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (run_dir / "metrics.csv").read_text() == (ref.run_dir / "metrics.csv").read_text()
    for key in ("test_ppl", "final_val_ppl", "mean_weights", "steps"):
        assert result.summary[key] == ref.summary[key], key


def test_outputs_replace_the_old_version_whole_or_not_at_all(tmp_path):
    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    target = rundir.write_text(tmp_path / "summary.json", '{"old": 1}')
    with pytest.raises(OSError):
        rundir.write_file(target, lambda p: (p.write_text('{"new"'), full(p)))
    assert target.read_text() == '{"old": 1}' and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    model = tmp_path / "model"
    rundir.write_dir(model, lambda p: (p.mkdir(), (p / "w").write_text("old")))
    with pytest.raises(OSError):
        rundir.write_dir(model, lambda p: (p.mkdir(), (p / "w").write_text("new"), full(p)))
    assert (model / "w").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "model",
        "summary.json",
    ]


def test_full_disk_at_the_first_checkpoint_does_not_advise_resume(corpus_text_dir, cache_dir, tmp_path, monkeypatch):
    real_write = checkpoint._write_file

    def full(path, writer):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint, "_write_file", full)
    cfg = _cfg(corpus_text_dir, cache_dir, tmp_path)
    with pytest.raises(checkpoint.CheckpointError) as exc:
        train(cfg, log=lambda _: None)
    message = str(exc.value)
    assert (
        "step 5 failed (No space left on device" in message
        and "nothing to resume" in message
        and "start the run again" in message
    )
    assert "--resume" not in message and "keep_checkpoints" not in message
    monkeypatch.setattr(checkpoint, "_write_file", real_write)
    assert train(cfg, log=lambda _: None).summary["steps"] == 10  # the same command again, as advised


@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["foreground", "started-ignoring-sigint"])
def test_ctrl_c_prints_one_line_with_the_step_the_checkpoint_and_the_resume_command(
    sigint, corpus_text_dir, cache_dir, tmp_path
):
    """SIGINT once the first checkpoint is on disk, into a run that cannot end by itself (100 000 slowed steps).

    ``started-ignoring-sigint``: as a shell without job control starts a background command (``cmd &`` in a
    script, ``make test &``); Python then leaves SIGINT ignored, and the run used to go on to the end.
    """
    total = 100_000
    cfg = small_config(
        corpus_text_dir, cache_dir, train={"total_steps": total}, run={"checkpoint_interval": 5, **QUIET}
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    worker = REPO / "tests" / "test_resume.py"  # the CLI with each step slowed down
    argv = [
        sys.executable,
        str(worker),
        "0.05",
        "train",
        "--config",
        str(path),
        "--out-dir",
        str(tmp_path),
        "--name",
        "run",
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),  # whatever this test process inherited
    )
    try:
        deadline = time.monotonic() + 180
        while not (run_dir / "checkpoints" / "latest").exists():  # the handler is installed, a checkpoint exists
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)  # a dropped SIGINT fails here: the run has hours left
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert lines[0].startswith("interrupted: stopped at step ") and f" of {total}; last checkpoint: step " in lines[0]
    assert lines[0].endswith(f"continue with: acodm-gym train --resume {run_dir}")


def test_compare_again_reuses_finished_runs_and_resumes_stopped_ones(corpus_text_dir, cache_dir, tmp_path):
    cfg = _cfg(corpus_text_dir, cache_dir, tmp_path / "runs")
    out = tmp_path / "cmp"
    compare(cfg, seeds=[0], methods=["natural", "uniform"], out=out, log=lambda _: None)
    natural, uniform = out / "natural-seed0", out / "uniform-seed0"
    kept = _snapshot(natural)
    (uniform / "summary.json").unlink()  # as if it had stopped after its last checkpoint
    logs: list[str] = []
    compare(cfg, seeds=[0], methods=["natural", "uniform"], out=out, log=logs.append)
    assert _snapshot(natural) == kept and any(
        f"{natural} finished earlier with this config: reused" in line for line in logs
    ), logs
    assert any(f"resuming {uniform} from step-000010" in line for line in logs), logs
    assert json.loads((uniform / "summary.json").read_text())["resumed_at"] == [10]
    with pytest.raises(rundir.RunDirError, match="--overwrite"):  # another budget is another run: refused, not mixed in
        compare(load_config(cfg, ["train.total_steps=5"]), seeds=[0], methods=["natural"], out=out, log=lambda _: None)
    compare(
        load_config(cfg, ["train.total_steps=5"]),
        seeds=[0],
        methods=["natural"],
        out=out,
        log=lambda _: None,
        overwrite=True,
    )
    assert json.loads((natural / "summary.json").read_text())["steps"] == 5
