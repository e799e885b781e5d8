"""Checkpoints, resume, and the faults a long run meets, end to end on the small corpus.

* Kill and resume: a run started in a subprocess (``python tests/test_resume.py DELAY train ...``,
  this file as the worker around the CLI) is killed with SIGKILL after its first checkpoint,
  resumed with ``train --resume``, and must equal an uninterrupted run with the same seed bit for
  bit: metrics.csv byte for byte (every loss, weight, reward, learning rate, validation perplexity,
  steps exactly 1..T), the final model and the agent (networks, optimisers, replay buffer). For
  ``acodm`` (actor–critic with a replay buffer, warm-up shorter than the checkpoint step), ``odm``,
  ``vector-sac`` with every diagnostic, and ``acodm`` on the DeepSpeed backend at world size 1.
* Faults: a truncated checkpoint (fall back to the previous one), a changed config / another model /
  another corpus / another world size (refused, naming what differs), non-finite losses (skipped
  and counted; a burst stops the run, the checkpoint before it resumes), a full disk while
  checkpointing (the run stops, the previous checkpoint survives), a truncated token file (exit 2).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOTAL, INTERVAL = 30, 10


# ------------------------------------------------------------------------------------------------
# Worker side: `python tests/test_resume.py DELAY <acodm-gym arguments>`
# ------------------------------------------------------------------------------------------------
def _worker(argv: list[str]) -> int:
    """The CLI, with each env step slowed by DELAY seconds (so the test can kill it mid-run) and every
    metrics row flushed at once (so rows after the last checkpoint are on disk when it dies)."""
    delay = float(argv[0])
    from acodm_gym.cli import main
    from acodm_gym.envs.pretrain_env import PretrainEnv
    from acodm_gym.runs.logger import MetricsLogger

    step, log = PretrainEnv.step, MetricsLogger.log

    def slow_step(self, action):
        out = step(self, action)
        time.sleep(delay)
        return out

    def log_and_flush(self, *args, **kwargs):
        row = log(self, *args, **kwargs)
        self._fh.flush()
        return row

    PretrainEnv.step, MetricsLogger.log = slow_step, log_and_flush
    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))


# ------------------------------------------------------------------------------------------------
# Test side
# ------------------------------------------------------------------------------------------------
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from acodm_gym.cli import main  # noqa: E402
from acodm_gym.config import load_config  # noqa: E402
from acodm_gym.data.corpus import corpus_dir  # noqa: E402
from acodm_gym.runs import checkpoint  # noqa: E402
from acodm_gym.runs.logger import read_metrics  # noqa: E402
from acodm_gym.runs.runner import resume, train  # noqa: E402

from conftest import LAUNCH_VARS, small_config  # noqa: E402

ACODM = {"name": "acodm", "options": {"layers": 1, "width": 16, "batch_size": 16, "warmup_steps": 5}}


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    return env


def _cli(args: list[str], delay: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, str(delay), *args],
        cwd=REPO,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    return out + err


def _config_file(tmp_path: Path, corpus_text_dir, cache_dir, agent: dict, **sections) -> str:
    cfg = small_config(
        corpus_text_dir,
        cache_dir,
        agent=agent,
        train={"total_steps": TOTAL, **sections.pop("train", {})},
        run={"checkpoint_interval": INTERVAL, "plots": False, "tensorboard": False, **sections.pop("run", {})},
        **sections,
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _assert_same_run(run_dir: Path, ref_dir: Path) -> None:
    """Bit for bit: every metrics row, the summary's numbers, the final model and the agent."""
    csv = (run_dir / "metrics.csv").read_text()
    assert csv == (ref_dir / "metrics.csv").read_text()
    assert read_metrics(run_dir / "metrics.csv")["step"].tolist() == list(range(1, TOTAL + 1))
    a, b = (json.loads((d / "summary.json").read_text()) for d in (run_dir, ref_dir))
    for key in ("steps", "tokens", "final_val_ppl", "val_curve", "test_ppl", "mean_weights", "skipped_steps"):
        assert a[key] == b[key], key
    from safetensors.torch import load_file

    ma, mb = (load_file(d / "model" / "model.safetensors") for d in (run_dir, ref_dir))
    assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    sa, sb = (torch.load(d / "agent.pt", weights_only=True)["state"] for d in (run_dir, ref_dir))
    _assert_equal_tree(sa, sb)


def _assert_equal_tree(a, b, where="agent") -> None:
    if torch.is_tensor(a):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _kill_and_resume(tmp_path: Path, cfg: str, extra: list[str] = ()) -> tuple[Path, Path]:
    """An uninterrupted run and a run killed (SIGKILL) after its first checkpoint, then resumed."""
    ref = _cli(["train", "--config", cfg, "--out-dir", str(tmp_path / "ref"), "--name", "run", *extra])
    _finish(ref)
    run_dir = tmp_path / "killed" / "run"
    proc = _cli(["train", "--config", cfg, "--out-dir", str(tmp_path / "killed"), "--name", "run", *extra], delay=0.05)
    deadline = time.monotonic() + 180
    while not (run_dir / "checkpoints" / "latest").exists():
        assert proc.poll() is None, proc.communicate()[1][-4000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    time.sleep(0.25)  # a few steps past the checkpoint (each takes at least 0.05 s)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()
    ckpt = checkpoint.find(run_dir)
    assert INTERVAL <= ckpt.step < TOTAL
    rows_at_kill = (run_dir / "metrics.csv").read_text().count("\n") - 1  # complete rows on disk when it died
    out = _finish(_cli(["train", "--resume", str(run_dir)]))
    assert f"resuming {run_dir} from {ckpt.path.name}" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_at"] == [ckpt.step] and rows_at_kill >= ckpt.step
    return run_dir, tmp_path / "ref" / "run"


# -- kill and resume: bit for bit ------------------------------------------------------------------
@pytest.fixture(scope="module")
def acodm_runs(corpus_text_dir, cache_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acodm")
    cfg = _config_file(tmp, corpus_text_dir, cache_dir, ACODM)
    return _kill_and_resume(tmp, cfg)


def test_acodm_killed_and_resumed_equals_uninterrupted_run(acodm_runs):
    run_dir, ref_dir = acodm_runs
    _assert_same_run(run_dir, ref_dir)
    state = torch.load(run_dir / "agent.pt", weights_only=True)["state"]
    held_out = TOTAL // 10  # every 10th transition is kept out of the replay for the diagnostics
    assert state["t"] == TOTAL and len(state["sb3"]["replay"]["rewards"]) == TOTAL - held_out  # every other one, once
    assert np.any(state["sb3"]["replay"]["ema"].numpy() != 0)  # the reward EMA travelled with the replay buffer


def test_odm_killed_and_resumed_equals_uninterrupted_run(corpus_text_dir, cache_dir, tmp_path):
    cfg = _config_file(tmp_path, corpus_text_dir, cache_dir, {"name": "odm"}, run={"tensorboard": True})
    run_dir, ref_dir = _kill_and_resume(tmp_path, cfg)
    _assert_same_run(run_dir, ref_dir)
    assert any((run_dir / "tensorboard").iterdir())


@pytest.mark.parametrize(
    "agent",
    [
        {"name": "aioli", "options": {"lp_steps": 1, "update_steps": 4}},
        {"name": "ado", "options": {"ignore_steps": 2, "start_step": 8, "update_interval": 4, "savgol_window": 5}},
    ],
    ids=lambda a: a["name"],
)
def test_online_mixers_killed_and_resumed_equal_uninterrupted_runs(corpus_text_dir, cache_dir, tmp_path, agent):
    """Aioli's burst order and loss-change matrix, ADO's loss history and fits travel in the checkpoint."""
    cfg = _config_file(tmp_path, corpus_text_dir, cache_dir, agent)
    run_dir, ref_dir = _kill_and_resume(tmp_path, cfg)
    _assert_same_run(run_dir, ref_dir)
    metrics = read_metrics(run_dir / "metrics.csv")
    weights = np.stack([v for key, v in metrics.items() if key.startswith("weight/")], axis=1)
    assert weights.std(axis=0).max() > 1e-3, "the mixture never changed"


def test_vector_sac_killed_and_resumed_equals_uninterrupted_run_with_its_diagnostics(
    corpus_text_dir, cache_dir, tmp_path
):
    """The logistic-normal SAC (entropy temperature and its optimiser, policy sampling from the global
    RNG) and every diagnostic (held-out transitions, reward window) resume bit for bit."""
    options = {**ACODM["options"], "gamma": 0.5, "holdout_every": 2, "target_weights": [1, 1, 1, 1]}
    cfg = _config_file(
        tmp_path, corpus_text_dir, cache_dir, {"name": "vector-sac", "options": options}, run={"plots": True}
    )
    run_dir, ref_dir = _kill_and_resume(tmp_path, cfg)
    _assert_same_run(run_dir, ref_dir)
    m = read_metrics(run_dir / "metrics.csv")
    late = json.loads((run_dir / "summary.json").read_text())["diagnostics"]
    for name in ("td_error", "q_return_spearman", "reward_snr", "target_cosine", "weight_entropy"):
        assert np.isfinite(m[f"diag/{name}"]).sum() >= 10, name
        second_half = m[f"diag/{name}"][len(m["step"]) // 2 :]
        assert late[name] == pytest.approx(np.median(second_half[np.isfinite(second_half)]))
    assert (run_dir / "diagnostics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def deepspeed_runs(corpus_text_dir, cache_dir, tmp_path_factory):
    pytest.importorskip("deepspeed", reason="the DeepSpeed backend needs: pip install -e '.[deepspeed]'")
    tmp = tmp_path_factory.mktemp("deepspeed")
    cfg = _config_file(
        tmp, corpus_text_dir, cache_dir, ACODM, train={"backend": "deepspeed", "deepspeed_config": "zero1"}
    )
    return _kill_and_resume(tmp, cfg)


def test_deepspeed_world1_killed_and_resumed_equals_uninterrupted_run(deepspeed_runs):
    run_dir, ref_dir = deepspeed_runs
    _assert_same_run(run_dir, ref_dir)
    shards = sorted(p.name for p in (run_dir / "checkpoints" / "step-000030" / "deepspeed" / "state").iterdir())
    assert shards == [
        "mp_rank_00_model_states.pt",
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
    ]  # DeepSpeed's own format


def test_deepspeed_checkpoint_refuses_another_world_size(deepspeed_runs, monkeypatch):
    from acodm_gym.lm import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(checkpoint.ResumeError, match=r"written by 1 ranks and this run has 2.*--nproc_per_node 1"):
        resume(deepspeed_runs[0], log=lambda _: None)


# -- checkpoints on disk ---------------------------------------------------------------------------
def test_checkpoints_are_complete_pruned_and_pointed_to(acodm_runs):
    root = acodm_runs[1] / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-000020", "step-000030"]  # run.keep_checkpoints=2
    assert (root / "latest").read_text().strip() == "step-000030"
    meta = checkpoint.verify(root / "step-000030")
    assert meta["step"] == 30 and meta["world_size"] == 1 and meta["backend"] == "torch"
    assert set(meta["files"]) == {"state.pt", "agent.pt", "model.pt", "rng-rank0.pt"}


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(acodm_runs, tmp_path):
    ref_dir = acodm_runs[1]
    run_dir = tmp_path / "run"
    shutil.copytree(ref_dir, run_dir)
    (run_dir / "summary.json").unlink()
    state = run_dir / "checkpoints" / "step-000030" / "agent.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    (run_dir / "checkpoints" / "step-000040.tmp-99999").mkdir()  # what a crash while writing leaves
    warnings: list[str] = []
    result = resume(run_dir, log=warnings.append)
    assert any("step-000030 is incomplete or corrupt (agent.pt has" in w for w in warnings), warnings
    assert result.summary["resumed_at"] == [20]
    _assert_same_run(run_dir, ref_dir)  # metrics.csv was cut back to step 20 and rows 21..30 written again
    root = run_dir / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-000020", "step-000030"]
    checkpoint.verify(root / "step-000030")  # rewritten, complete; the stale temporary directory is gone

    for name in ("step-000020", "step-000030"):
        (root / name / "meta.json").unlink()
    with pytest.raises(checkpoint.ResumeError, match="none of its checkpoints"):
        resume(run_dir, log=lambda _: None)


@pytest.mark.parametrize("name", ["model.pt", "agent.pt", "state.pt"])
def test_same_size_garbage_in_a_checkpoint_is_an_error_naming_the_file(acodm_runs, tmp_path, capsys, name):
    """The size check passes, so only loading finds it: an error naming the file and the way back, before any change."""
    run_dir = tmp_path / "run"
    shutil.copytree(acodm_runs[1], run_dir)
    (run_dir / "summary.json").unlink()
    ckpt = run_dir / "checkpoints" / "step-000030"
    bad = ckpt / name
    bad.write_bytes(np.random.default_rng(0).bytes(bad.stat().st_size))
    checkpoint.verify(ckpt)  # every size is right
    metrics = (run_dir / "metrics.csv").read_bytes()
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and f"Delete {ckpt} to resume from the checkpoint before it." in err, err
    assert "weights_only" not in err and "Traceback" not in err
    assert (run_dir / "metrics.csv").read_bytes() == metrics  # nothing was cut back or rewritten
    shutil.rmtree(ckpt)  # as the error says: the previous checkpoint is then the one resumed from
    assert checkpoint.find(run_dir, warn=lambda _: None).step == 20


def test_resume_refuses_changed_config_other_model_and_other_corpus(
    acodm_runs, corpus_text_dir, cache_dir, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    shutil.copytree(acodm_runs[1], run_dir)

    assert main(["train", "--resume", str(run_dir), "train.total_steps=40", "train.lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert (
        "train.total_steps: 30 -> 40" in err
        and "train.lr" in err
        and "--allow-change train.lr,train.total_steps" in err
    )

    # Accepting a change with --allow-change still meets the model and corpus checks.
    assert (
        main(
            [
                "train",
                "--resume",
                str(run_dir),
                "--allow-change",
                "model.intermediate_size",
                "model.intermediate_size=96",
            ]
        )
        == 2
    )
    assert "written for another model" in capsys.readouterr().err

    other = tmp_path / "text"
    shutil.copytree(corpus_text_dir, other)
    for path in (other / "docs").iterdir():
        path.write_text(path.read_text()[: len(path.read_text()) // 2])  # same domains, other text
    assert (
        main(
            ["train", "--resume", str(run_dir), "--allow-change", "data", f"data.corpus={other}", "run.progress=false"]
        )
        == 2
    )
    assert "written for another corpus" in capsys.readouterr().err

    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err

    # Keys that only change what is shown, logged or kept are accepted.
    shutil.rmtree(run_dir / "checkpoints" / "step-000030")
    code = main(
        [
            "train",
            "--resume",
            str(run_dir),
            "run.plots=true",
            "run.keep_checkpoints=1",
            "run.checkpoint_interval=5",
            "env.eval_interval=5",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert read_metrics(run_dir / "metrics.csv")["step"].tolist() == list(range(1, TOTAL + 1))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step-000030"]
    assert (run_dir / "weights.png").exists()


# -- faults ------------------------------------------------------------------------------------------
def _quick_config(corpus_text_dir, cache_dir, out: Path, **sections):
    return small_config(
        corpus_text_dir,
        cache_dir,
        agent={"name": "natural"},
        train={"total_steps": 20, **sections.pop("train", {})},
        run={
            "out_dir": str(out),
            "name": "run",
            "checkpoint_interval": 5,
            "plots": False,
            "tensorboard": False,
            **sections.pop("run", {}),
        },
        **sections,
    )


def test_nonfinite_steps_are_skipped_then_a_burst_stops_the_run_and_the_checkpoint_before_resumes(
    corpus_text_dir, cache_dir, tmp_path, monkeypatch, capsys
):
    import acodm_gym.envs.pretrain_env as pretrain_env

    real_step, calls = pretrain_env.train_step, []

    def nan_at(steps):
        def train_step(backend, *args, **kwargs):
            calls.append(1)
            if len(calls) in steps:
                forward = backend.forward
                backend.forward = lambda ids: (setattr(backend, "forward", forward), forward(ids) * float("nan"))[1]
            return real_step(backend, *args, **kwargs)

        return train_step

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        yaml.safe_dump(_quick_config(corpus_text_dir, cache_dir, tmp_path, train={"max_nonfinite_steps": 3}))
    )
    monkeypatch.setattr(pretrain_env, "train_step", nan_at({3, 13, 14, 15}))
    assert main(["train", "--config", str(cfg_path)]) == 1
    err = capsys.readouterr().err
    assert "3 consecutive steps had a non-finite loss or gradient (last at step 15)" in err
    assert "The checkpoint of step 10" in err and f"--resume {tmp_path / 'run'}" in err
    m = read_metrics(tmp_path / "run" / "metrics.csv")
    assert m["step"].tolist() == list(range(1, 15)) and m["skipped"][[2, 12, 13]].tolist() == [1, 1, 1]

    monkeypatch.setattr(pretrain_env, "train_step", real_step)  # the burst is gone: continue from step 10
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    m = read_metrics(tmp_path / "run" / "metrics.csv")
    assert m["step"].tolist() == list(range(1, 21))
    assert np.flatnonzero(m["skipped"]).tolist() == [2]  # the skipped step 3 is in the checkpoint; 13-14 were redone
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_steps"] == 1


def test_full_disk_while_checkpointing_stops_the_run_and_keeps_the_previous_checkpoint(
    corpus_text_dir, cache_dir, tmp_path, monkeypatch
):
    real_write, seen = checkpoint._write_file, []

    def write(path, writer):
        seen.append(path.name)
        if path.name == "state.pt" and seen.count("state.pt") == 2:  # the checkpoint of step 10, partway
            writer(path)
            with open(path, "r+b") as fh:
                fh.truncate(path.stat().st_size // 2)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, writer)

    monkeypatch.setattr(checkpoint, "_write_file", write)
    cfg = load_config(_quick_config(corpus_text_dir, cache_dir, tmp_path))
    with pytest.raises(
        checkpoint.CheckpointError, match=r"step 10 failed \(No space left on device.*step-000005\) is intact.*--resume"
    ):
        train(cfg, log=lambda _: None)
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-000005"]  # the partial directory is gone
    assert (root / "latest").read_text().strip() == "step-000005"

    monkeypatch.setattr(checkpoint, "_write_file", real_write)
    result = resume(tmp_path / "run", log=lambda _: None)
    assert result.summary["resumed_at"] == [5]
    ref = train(load_config(_quick_config(corpus_text_dir, cache_dir, tmp_path / "ref")), log=lambda _: None)
    assert (tmp_path / "run" / "metrics.csv").read_text() == (ref.run_dir / "metrics.csv").read_text()


def test_truncated_token_file_is_a_clear_error_with_exit_code_2(
    acodm_runs, corpus_text_dir, cache_dir, tmp_path, capsys
):
    cfg = small_config(corpus_text_dir, cache_dir)
    source = corpus_dir(load_config(cfg).data)
    copy = corpus_dir(load_config(small_config(corpus_text_dir, tmp_path / "cache")).data)
    shutil.copytree(source, copy)
    token_file = copy / "legal" / "train.bin"
    token_file.write_bytes(token_file.read_bytes()[:-7])
    assert (
        main(
            [
                "train",
                "--agent",
                "uniform",
                f"data.corpus={corpus_text_dir}",
                f"data.cache_dir={tmp_path / 'cache'}",
                "data.vocab_size=512",
                "train.total_steps=2",
                "train.warmup_steps=1",
                f"run.out_dir={tmp_path / 'runs'}",
                "run.progress=false",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"Token file {token_file} is truncated or corrupt" in err
    # The same on resume (data.cache_dir may change on resume: the corpus is checked by its fingerprint).
    run_dir = tmp_path / "run"
    shutil.copytree(acodm_runs[1], run_dir)
    assert main(["train", "--resume", str(run_dir), f"data.cache_dir={tmp_path / 'cache'}"]) == 2
    assert "is truncated or corrupt" in capsys.readouterr().err


def test_resume_verifies_token_checksums_and_refuses_a_corpus_whose_inputs_changed(
    corpus_text_dir, tmp_path, monkeypatch, capsys
):
    from acodm_gym.data import token_corpus

    text = tmp_path / "text"
    shutil.copytree(corpus_text_dir, text)
    cfg = load_config(_quick_config(text, tmp_path / "cache", tmp_path, train={"total_steps": 10}))
    train(cfg, log=lambda _: None)
    run_dir = tmp_path / "run"

    # Same-size zeros in a token file, in a corpus too large to be hashed on open: resume checks every checksum.
    monkeypatch.setattr(token_corpus, "VERIFY_ON_OPEN_BYTES", 0)
    token_file = corpus_dir(cfg.data) / "legal" / "train.bin"
    saved = token_file.read_bytes()
    token_file.write_bytes(bytes(len(saved)))
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert f"Token file {token_file} does not match its checksum" in capsys.readouterr().err
    token_file.write_bytes(saved)

    # An input file edited since: the corpus is rebuilt (the log says why) and the resume refused, with the reason.
    doc = sorted((text / "docs").iterdir())[0]
    doc.write_text(doc.read_text()[: len(doc.read_text()) // 2])
    assert main(["train", "--resume", str(run_dir)]) == 2
    captured = capsys.readouterr()
    assert "domain 'docs' changed" in captured.out
    assert "written for another corpus" in captured.err and "input files changed since" in captured.err
