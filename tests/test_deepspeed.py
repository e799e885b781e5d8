"""The DeepSpeed backend and multi-rank lockstep, on CPU (gloo).

* World size 1 (in this process): DeepSpeed at ZeRO 0, 1 and 2 reproduces the torch backend's
  losses, rewards, gradient norms and observations step for step (relative 1e-5; measured ≤ 1e-7),
  including a non-finite step that both skip.
* World size 2 (two ranks started with ``python -m torch.distributed.run``, this file as the worker):
  the reward W, losses and observations equal the single-process torch run on the same global
  batches (relative 1e-4), every rank reports the same domain weights and bit-identical model
  weights although each rank's "agent" proposes different actions, a NaN on one rank skips the
  step on both, and a bad action on rank 0 fails every rank instead of hanging them.
* The CLI under torchrun (rank 0 writes the run directory, the numbers are the single-process
  run's) and the process-group timeout (a hung rank makes the other fail after train.dist_timeout).
* A stopped rank (SIGSTOP) under torchrun: the other exits 1 after train.dist_timeout with one line naming
  it and the last checkpoint, and ``--resume`` finishes the run with the uninterrupted run's numbers.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------
# Worker side: `python -m torch.distributed.run --nproc_per_node N tests/test_deepspeed.py MODE ...`
# ------------------------------------------------------------------------------------------------
def _nan_forward(backend):
    """Make the backend's next forward return NaN logits (then restore it)."""
    original = backend.forward

    def forward(ids):
        backend.forward = original
        return original(ids) * float("nan")

    backend.forward = forward


def _param_checksum(model) -> list[float]:
    return [
        float(sum(p.detach().double().sum() for p in model.parameters())),
        float(sum(p.detach().double().norm() ** 2 for p in model.parameters())),
    ]


def run_episode(env, steps: int, action_seed: int, nan_step: int | None = None, nan_rank: int = 0) -> list[dict]:
    """Step ``env`` with Dirichlet actions from ``action_seed``; record what every rank must agree on."""
    rng = np.random.default_rng(action_seed)
    records = []
    for t in range(steps):
        action = rng.dirichlet(np.ones(env.k))
        if nan_step == t and env.backend.rank == nan_rank:
            _nan_forward(env.backend)
        obs, reward, _, _, info = env.step(action)
        records.append(
            {
                "weights": info["domain_weights"].tolist(),
                "losses": info["domain_losses"].tolist(),
                "W": info["vector_reward"].tolist(),
                "reward": float(reward),
                "grad_norm": float(info["grad_norm"]),
                "objective": float(info["objective"]),
                "lr": float(info["lr"]),
                "skipped": bool(info["skipped"]),
                "obs": obs.tolist(),
                "params": _param_checksum(env.backend.model),
            }
        )
    return records


def _worker(argv: list[str]) -> int:
    argv = [a for a in argv if not a.startswith("--local_rank")]  # the deepspeed launcher adds it
    mode, config_path, out_dir = argv[0], Path(argv[1]), Path(argv[2])
    spec = json.loads(config_path.read_text())
    from acodm_gym.envs import PretrainEnv

    env = PretrainEnv(spec["config"], log=lambda _: None)
    env.reset(seed=spec["seed"])
    rank = env.backend.rank
    result: dict = {"rank": rank, "world_size": env.backend.world_size, "threads": torch.get_num_threads()}
    if mode == "lockstep":
        started = time.perf_counter()
        # Every rank proposes its own actions (seeded by rank): the env must use rank 0's.
        result["records"] = run_episode(env, spec["steps"], 100 + rank, spec.get("nan_step"), spec.get("nan_rank", 0))
        result["seconds_per_step"] = (time.perf_counter() - started) / spec["steps"]
        try:  # an invalid action on rank 0 must fail every rank, not leave the others waiting
            env.step(np.full(env.k, np.nan) if rank == 0 else None)
            result["bad_action"] = "accepted"
        except Exception as exc:  # noqa: BLE001 - the type is what the test checks
            result["bad_action"] = type(exc).__name__
    elif mode == "hang":
        if rank == 1:
            time.sleep(600)  # alive but stuck: only the process-group timeout can free rank 0
        started = time.perf_counter()
        try:
            env.step(np.ones(env.k))
        except Exception as exc:  # noqa: BLE001
            result["error"] = f"{type(exc).__name__}: {exc}"[:300]
        result["waited"] = time.perf_counter() - started
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    return 1 if "error" in result else 0  # a failed rank makes torchrun stop the others


# ------------------------------------------------------------------------------------------------
# Test side
# ------------------------------------------------------------------------------------------------
with warnings.catch_warnings():  # DeepSpeed's import touches deprecated torch.jit APIs
    warnings.simplefilter("ignore", DeprecationWarning)
    pytest.importorskip("deepspeed", reason="the DeepSpeed backend needs: pip install -e '.[deepspeed]'")

from acodm_gym.config import ConfigError, load_config  # noqa: E402
from acodm_gym.envs import PretrainEnv  # noqa: E402
from acodm_gym.lm import distributed  # noqa: E402
from acodm_gym.lm.deepspeed_backend import engine_config  # noqa: E402
from acodm_gym.lm.step import sequence_losses, train_step  # noqa: E402
from acodm_gym.runs import checkpoint  # noqa: E402

from conftest import LAUNCH_VARS, small_config  # noqa: E402


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(
        DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    )
    return env


def _launcher(nproc: int, launcher: str = "torchrun") -> list[str]:
    """The command that starts ``nproc`` ranks with torchrun or the deepspeed launcher (append a script and its args)."""
    port = str(distributed.free_port())
    if launcher == "torchrun":
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            port,
        ]
    else:  # the `deepspeed` command; it passes --local_rank=N to the script and leaves OMP_NUM_THREADS alone
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(nproc), "--master_port", port]
    return cmd


def _launch(
    nproc: int, args: list[str], launcher: str = "torchrun", timeout: float = 240
) -> subprocess.CompletedProcess:
    """Start ``nproc`` ranks of ``args`` (a script and its arguments) with torchrun or the deepspeed launcher."""
    env = _clean_env()
    if launcher != "torchrun":
        env.pop("OMP_NUM_THREADS")  # as a user's shell would: the backend must pick 1 thread per rank itself
    cmd = _launcher(nproc, launcher)
    return subprocess.run([*cmd, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _run_workers(
    tmp_path: Path, mode: str, spec: dict, nproc: int = 2, expect_ok: bool = True, launcher: str = "torchrun"
) -> list[dict]:
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = _launch(nproc, [__file__, mode, str(tmp_path / "spec.json"), str(tmp_path)], launcher)
    if expect_ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]


@pytest.fixture()
def single_rank_env(monkeypatch):
    """A launch environment of one rank for DeepSpeed in this process (the process group then stays up)."""
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(distributed.free_port()))


def _cfg(corpus_text_dir, cache_dir, **train):
    return small_config(corpus_text_dir, cache_dir, train={"total_steps": 40, **train})


# -- configuration: no process group needed -------------------------------------------------------
def test_deepspeed_config_owns_batch_clip_precision_and_refuses_the_rest(tmp_path, monkeypatch):
    cfg = load_config(
        {"train": {"backend": "deepspeed", "deepspeed_config": "zero1", "batch_size": 16, "micro_batch_size": 3}}
    )
    ds = engine_config(cfg.train, world=2, on_cuda=False)
    assert ds["zero_optimization"]["stage"] == 1
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (
        3,
        3,
        18,
    )
    assert ds["gradient_clipping"] == cfg.train.grad_clip and ds["bf16"]["enabled"] is False
    assert engine_config(cfg.train, world=1, on_cuda=True)["bf16"]["enabled"] is True
    assert (
        engine_config(load_config({"train": {"deepspeed_config": "zero0"}}).train, 1, False)["gradient_clipping"] == 0.0
    )  # stage 0: the backend clips
    assert (
        engine_config(
            load_config({"train": {"deepspeed_config": str(REPO / "acodm_gym/configs/deepspeed/zero2.json")}}).train,
            1,
            False,
        )["zero_optimization"]["stage"]
        == 2
    )

    for bad, match in [
        ({"zero_optimization": {"stage": 3}}, "stage 3"),
        ({"optimizer": {"type": "Adam"}}, "optimizer"),
        ({"fp16": {"enabled": True}}, "fp16"),
        ("zero9", "not found"),
    ]:
        with pytest.raises(ConfigError, match=match):
            engine_config(load_config({"train": {"deepspeed_config": bad}}).train, 1, False)
    with pytest.raises(ConfigError, match="train.backend"):
        load_config({"train": {"backend": "horovod"}})
    with pytest.raises(ConfigError, match="multiple of the world size"):
        distributed.shard_rows(10, 0, 4)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="train.backend=deepspeed"):
        distributed.check_launch(load_config({}).train)


# -- world size 1, in this process ----------------------------------------------------------------
@pytest.mark.parametrize("stage,micro", [("zero0", None), ("zero1", None), ("zero2", 3)])
def test_deepspeed_world1_matches_torch_backend(stage, micro, corpus_text_dir, cache_dir, single_rank_env):
    """Same losses, rewards, norms, observations as TorchBackend over 6 steps, a skipped NaN step included."""
    steps, nan_step = 6, 3
    runs = {}
    for backend in ("torch", "deepspeed"):
        env = PretrainEnv(
            _cfg(corpus_text_dir, cache_dir, backend=backend, deepspeed_config=stage, micro_batch_size=micro),
            log=lambda _: None,
        )
        env.reset(seed=5)
        runs[backend] = run_episode(env, steps, 7, nan_step=nan_step)
        env.close()
    for t, (ref, ds) in enumerate(zip(runs["torch"], runs["deepspeed"])):
        assert ds["skipped"] == ref["skipped"] == (t == nan_step)
        assert ds["weights"] == ref["weights"]
        for key in ("losses", "W", "obs", "params"):
            assert _rel(ds[key], ref[key]) < 1e-5, (t, key, ds[key], ref[key])
        for key in ("grad_norm", "objective", "lr", "reward"):
            if t != nan_step:
                assert ds[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-12), (t, key)
        assert ds["lr"] == ref["lr"]  # the schedule advances on a skipped step in both backends


def test_deepspeed_zero1_skip_and_state_dict_round_trip(corpus_text_dir, cache_dir, single_rank_env):
    """A dropped ZeRO update leaves no trace (weights, Adam state, gradient buffers); a saved state replays a step."""
    env = PretrainEnv(
        _cfg(corpus_text_dir, cache_dir, backend="deepspeed", deepspeed_config="zero1"), log=lambda _: None
    )
    env.reset(seed=1)
    run_episode(env, 2, 3)
    backend, t = env.backend, env.cfg.train
    alpha = np.full(env.k, 1.0 / env.k)
    batch = env.sampler.sample(alpha)

    def step():
        return train_step(backend, batch, alpha, t.loss_weighting, None, env._alignment, env._norm_probe)

    def snapshot():
        adam = [v.clone() for s in backend.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
        return [p.detach().clone() for p in backend.model.parameters()] + adam

    state = copy.deepcopy(backend.state_dict())
    before = snapshot()
    first = step()
    assert first.finite and not all(torch.equal(a, b) for a, b in zip(snapshot(), before))
    backend.load_state_dict(copy.deepcopy(state))
    assert all(torch.equal(a, b) for a, b in zip(snapshot(), before))

    # A finite gradient dropped on purpose: the path a non-finite loss takes through the ZeRO optimiser.
    lr = backend.lr
    backend.backward(sequence_losses(backend.forward(batch.input_ids), batch.input_ids).mean())
    assert np.isfinite(backend.grad_norm())
    backend.optimizer_step(apply=False)
    assert all(torch.equal(a, b) for a, b in zip(snapshot(), before))
    assert backend.lr != lr  # the schedule moved on, as in the torch backend

    backend.load_state_dict(copy.deepcopy(state))  # (restores the schedule too) then replay the first step
    again = step()
    assert again.objective == first.objective and again.grad_norm == pytest.approx(first.grad_norm, rel=1e-6)
    assert np.allclose(again.reward, first.reward, rtol=1e-6) and np.array_equal(again.weight_norms, first.weight_norms)
    env.close()


# -- world size 2: two ranks under torchrun ------------------------------------------------------
@pytest.mark.parametrize("stage,micro,launcher", [("zero0", None, "torchrun"), ("zero2", 2, "deepspeed")])
def test_deepspeed_world2_lockstep_matches_single_process(stage, micro, launcher, corpus_text_dir, cache_dir, tmp_path):
    steps, nan_step = 5, 2
    cfg = _cfg(corpus_text_dir, cache_dir, backend="deepspeed", deepspeed_config=stage, micro_batch_size=micro)
    spec = {"config": cfg, "seed": 11, "steps": steps, "nan_step": nan_step, "nan_rank": 1}
    ranks = _run_workers(tmp_path, "lockstep", spec, launcher=launcher)
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    # torchrun sets OMP_NUM_THREADS=1; under the deepspeed launcher the backend shares the cores itself.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert all(r["threads"] == (1 if launcher == "torchrun" else max(1, cores // 2)) for r in ranks)

    # Every rank: rank 0's weights, the same numbers, bit-identical model weights.
    r0, r1 = ranks[0]["records"], ranks[1]["records"]
    assert r0 == r1
    assert [rec["skipped"] for rec in r0] == [t == nan_step for t in range(steps)]  # NaN on rank 1 only: both skip
    assert all(r["bad_action"] != "accepted" for r in ranks)  # rank 0 ValueError, rank 1 RuntimeError: no hang

    # The single-process torch backend on the same global batches (rank 0's actions, NaN at the same step).
    env = PretrainEnv(
        {**cfg, "train": {**cfg["train"], "backend": "torch", "micro_batch_size": None}}, log=lambda _: None
    )
    env.reset(seed=11)
    ref = run_episode(env, steps, 100, nan_step=nan_step)
    env.close()
    for t, (a, b) in enumerate(zip(r0, ref)):
        assert a["weights"] == b["weights"] and a["skipped"] == b["skipped"]
        assert _rel(a["W"], b["W"]) < 1e-4 or t == nan_step, (t, a["W"], b["W"])  # GLOBAL per-domain gradients
        for key in ("losses", "obs", "params"):
            assert _rel(a[key], b[key]) < 1e-4, (t, key)
        if t != nan_step:
            assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
            assert a["objective"] == pytest.approx(b["objective"], rel=1e-4)


def _tiny_run(corpus_text_dir, cache_dir) -> list[str]:
    """CLI overrides of a short run on the small corpus."""
    return [
        f"data.corpus={corpus_text_dir}",
        f"data.cache_dir={cache_dir}",
        "data.vocab_size=512",
        "model.hidden_size=32",
        "model.num_layers=2",
        "model.num_heads=2",
        "model.intermediate_size=64",
        "model.seq_len=32",
        "train.total_steps=8",
        "train.batch_size=8",
        "train.warmup_steps=2",
        "env.eval_interval=4",
        "env.eval_batches=1",
        "run.progress=false",
        "run.plots=false",
        "run.tensorboard=false",
    ]


@pytest.fixture(scope="module")
def cli_reference(corpus_text_dir, cache_dir, tmp_path_factory):
    """CLI overrides of a short run, and its single-process torch summary."""
    from acodm_gym.runs.runner import train

    overrides = _tiny_run(corpus_text_dir, cache_dir)
    out = tmp_path_factory.mktemp("runs")
    ref = train(
        load_config(None, [*overrides, "agent.name=uniform", f"run.out_dir={out}", "run.name=torch"]),
        log=lambda _: None,
    )
    return overrides, ref.summary


@pytest.mark.parametrize("launcher", ["torchrun", "deepspeed"])
def test_deepspeed_launchers_cli_rank0_writes_and_matches_single_process(launcher, cli_reference, tmp_path):
    overrides, ref = cli_reference
    proc = _launch(
        2,
        [
            "train_env.py",
            "train",
            "train.backend=deepspeed",
            "train.deepspeed_config=zero1",
            *overrides,
            "--agent",
            "uniform",
            "--out-dir",
            str(tmp_path / "runs"),
            "--name",
            "ds",
        ],
        launcher,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert proc.stdout.count("final average validation perplexity") == 1  # rank 0 reports, rank 1 is silent
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ds"]
    summary = json.loads((tmp_path / "runs" / "ds" / "summary.json").read_text())
    assert (tmp_path / "runs" / "ds" / "model").is_dir() and summary["steps"] == 8
    assert _rel(list(summary["test_ppl"].values()), list(ref["test_ppl"].values())) < 1e-4
    assert _rel(summary["val_curve"]["avg_ppl"], ref["val_curve"]["avg_ppl"]) < 1e-4


def test_deepspeed_hung_rank_times_out(corpus_text_dir, cache_dir, tmp_path):
    """A rank that stops answering makes the others fail after train.dist_timeout, not wait forever."""
    spec = {
        "config": _cfg(corpus_text_dir, cache_dir, backend="deepspeed", deepspeed_config="zero0", dist_timeout=4),
        "seed": 0,
    }
    started = time.perf_counter()
    ranks = _run_workers(tmp_path, "hang", spec, expect_ok=False)
    elapsed = time.perf_counter() - started
    assert [r["rank"] for r in ranks] == [0]  # rank 1 never got there: torchrun stopped it after rank 0 gave up
    assert "timed out" in ranks[0]["error"].lower() or "timeout" in ranks[0]["error"].lower(), ranks[0]["error"]
    assert 3.5 < ranks[0]["waited"] < 60 and elapsed < 120


def _rank_pids(launcher: subprocess.Popen, nproc: int, deadline: float) -> dict[int, int]:
    """{RANK: pid} of the processes torchrun started (read from /proc)."""
    while time.monotonic() < deadline:
        assert launcher.poll() is None, "the launcher ended before its ranks were up"
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        pids = {}
        for pid in map(int, children):
            env = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in v)
            if "RANK" in env:
                pids[int(env["RANK"])] = pid
        if len(pids) == nproc:
            return pids
        time.sleep(0.2)
    raise AssertionError("the ranks did not start")


def _running(pid: int) -> bool:
    """Alive and not yet a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow  # two launches of DeepSpeed ranks and a 20 s timeout: 45 to 75 s measured on 2 busy cores
def test_a_stopped_rank_stops_the_others_after_dist_timeout_and_resume_finishes_the_run(
    corpus_text_dir, cache_dir, tmp_path
):
    """SIGSTOP one of two ranks (a hung rank: alive, silent): the other exits 1 after train.dist_timeout with one
    line naming rank 1 and the last checkpoint; ``--resume`` then ends where the uninterrupted run does."""
    from acodm_gym.runs.runner import train

    timeout, total = 20, 40
    overrides = [
        *_tiny_run(corpus_text_dir, cache_dir),
        f"train.total_steps={total}",
        "run.checkpoint_interval=4",
        f"train.dist_timeout={timeout}",
    ]
    run_dir, logs = tmp_path / "runs" / "ds", tmp_path / "logs"
    worker = [str(REPO / "tests" / "test_resume.py"), "0.25"]  # the CLI with each step slowed by 0.25 s
    args = [*worker, "train", "--agent", "odm", "train.backend=deepspeed", *overrides]
    args += ["--out-dir", str(run_dir.parent), "--name", run_dir.name]
    cmd = [*_launcher(2), "--log-dir", str(logs), "--redirects", "3", *args]  # each rank's output in its own file
    with open(tmp_path / "launcher.err", "w") as err:
        launcher = subprocess.Popen(cmd, cwd=REPO, env=_clean_env(), stdout=subprocess.DEVNULL, stderr=err)
    pids: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 240
        pids = _rank_pids(launcher, 2, deadline)
        while not (run_dir / "checkpoints" / "latest").exists():  # 36 slowed steps (9 s) are left after it
            assert launcher.poll() is None and time.monotonic() < deadline, (tmp_path / "launcher.err").read_text()
            time.sleep(0.05)
        os.kill(pids[1], signal.SIGSTOP)
        stopped = time.monotonic()
        while _running(pids[0]) and time.monotonic() < stopped + timeout + 60:
            time.sleep(0.1)
        waited = time.monotonic() - stopped
    finally:
        for pid in pids.values():  # nothing is left stopped or running
            for sig in (signal.SIGKILL, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        launcher.wait(timeout=60) if launcher.poll() is None else None
        launcher.kill()
    report = (tmp_path / "launcher.err").read_text()
    assert timeout - 2 < waited < timeout + 15, (waited, report[-3000:])
    assert re.search(rf"exitcode\s*:\s*1 \(pid: {pids[0]}\)", report), report[-3000:]  # rank 0: exit 1, not a signal
    rank0 = next(logs.rglob("0/stderr.log")).read_text()
    lines = [line for line in rank0.splitlines() if "answer" in line]
    assert len(lines) == 1 and "Traceback" not in rank0, rank0[-3000:]
    step = checkpoint.find(run_dir).step
    assert lines[0].startswith("error: rank 1 did not answer for 20 s (train.dist_timeout): it hung or died")
    assert lines[0].endswith(
        f"last checkpoint: step {step} ({run_dir / 'checkpoints' / checkpoint.step_name(step)}); "
        f"continue with: acodm-gym train --resume {run_dir}"
    )
    assert 4 <= step < total and not (run_dir / "summary.json").exists()

    resumed = _launch(2, ["train_env.py", "train", "--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-6000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == total and summary["resumed_at"] == [step]
    ref = train(  # the uninterrupted run: one process, torch backend (the same numbers, test above)
        load_config(None, [*overrides, "agent.name=odm", f"run.out_dir={tmp_path}", "run.name=ref"]), log=lambda _: None
    ).summary
    assert _rel(list(summary["test_ppl"].values()), list(ref["test_ppl"].values())) < 1e-4
    assert _rel(summary["val_curve"]["avg_ppl"], ref["val_curve"]["avg_ppl"]) < 1e-4
    assert _rel(list(summary["mean_weights"].values()), list(ref["mean_weights"].values())) < 1e-4  # the agent too


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
