"""Training and scoring episodes, and learning one agent across episodes (runs/learn.py), end to end on the
small corpus: the agent carries across episodes, train and test seeds never overlap, a killed ``learn``
resumes bit for bit (between and inside episodes), bad input fails before any work."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_resume import ACODM, _assert_equal_tree, _cli, _finish

from acodm_gym.cli import main
from acodm_gym.config import load_config
from acodm_gym.envs.pretrain_env import PretrainEnv
from acodm_gym.errors import RunDirError
from acodm_gym.runs import checkpoint
from acodm_gym.runs.learn import learn
from acodm_gym.runs.runner import train

from conftest import small_config

STEPS = 8


def _cfg(corpus_text_dir, cache_dir, tmp_path, **sections) -> dict:
    return small_config(
        corpus_text_dir,
        cache_dir,
        agent=ACODM,
        train={"total_steps": STEPS, **sections.pop("train", {})},
        env={"eval_interval": 4},
        run={"out_dir": str(tmp_path), "plots": False, "tensorboard": False, **sections.pop("run", {})},
        **sections,
    )


def _agent_state(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state"]


def test_a_training_episode_skips_the_final_evaluation_and_trains_what_a_scoring_one_does(
    corpus_text_dir, cache_dir, tmp_path, monkeypatch
):
    finals: list[str] = []
    evaluate = PretrainEnv.evaluate

    def counted(self, split="validation", final=False):
        if final:
            finals.append(f"{self.cfg.env.episode}:{split}")
        return evaluate(self, split, final)

    monkeypatch.setattr(PretrainEnv, "evaluate", counted)
    cfg = _cfg(corpus_text_dir, cache_dir, tmp_path)
    scoring = train(load_config(cfg, ["run.name=scoring"]), log=lambda _: None)
    training = train(load_config(cfg, ["run.name=training", "env.episode=training"]), log=lambda _: None)
    assert finals == ["scoring:validation", "scoring:test"]  # the training episode never ran the final evaluation
    assert scoring.summary["episode"] == "scoring" and training.summary["episode"] == "training"
    for key in ("test_metric", "score", "test_ppl", "final_val_ppl", "val_metric"):
        assert key in scoring.summary and key not in training.summary, key
    # the same training: every step's losses, weights, rewards and the periodic validation; the same agent
    assert (scoring.run_dir / "metrics.csv").read_text() == (training.run_dir / "metrics.csv").read_text()
    _assert_equal_tree(_agent_state(scoring.run_dir / "agent.pt"), _agent_state(training.run_dir / "agent.pt"))
    assert training.summary["val_curve"] == scoring.summary["val_curve"]


def test_learn_carries_the_agent_across_episodes_and_tests_it_frozen_on_other_seeds(
    corpus_text_dir, cache_dir, tmp_path
):
    cfg = load_config(_cfg(corpus_text_dir, cache_dir, tmp_path))
    curve = learn(cfg, 2, tmp_path / "learn", test_seeds=[0], log=lambda _: None)
    ep0, ep1 = tmp_path / "learn" / "train" / "ep-000", tmp_path / "learn" / "train" / "ep-001"
    configs = [yaml.safe_load((d / "config.yaml").read_text()) for d in (ep0, ep1)]
    assert [c["run"]["seed"] for c in configs] == [1000, 1001]  # a fresh model each episode, none a test seed
    assert [c["agent"]["options"]["seed"] for c in configs] == [1000, 1000]  # one agent, seeded by the first level
    assert [c["env"]["episode"] for c in configs] == ["training", "training"]
    assert configs[0]["agent"]["init_from"] is None and configs[1]["agent"]["init_from"] == str(ep0 / "agent.pt")
    first, last = _agent_state(ep0 / "agent.pt"), _agent_state(ep1 / "agent.pt")
    assert (first["t"], last["t"]) == (STEPS, 2 * STEPS)  # counters and replay buffer run on across episodes
    held_out = 2 * STEPS // 10
    assert len(last["sb3"]["replay"]["rewards"]) == 2 * STEPS - held_out
    assert not torch.equal(
        first["sb3"]["params"]["policy"]["actor.mu.0.weight"], last["sb3"]["params"]["policy"]["actor.mu.0.weight"]
    )
    assert (tmp_path / "learn" / "agent.pt").read_bytes() == (ep1 / "agent.pt").read_bytes()
    test = tmp_path / "learn" / "test" / "after-2" / "seed-0"
    test_cfg = yaml.safe_load((test / "config.yaml").read_text())
    assert test_cfg["agent"] == {
        "name": "frozen",
        "weights": None,
        "options": {"path": str(tmp_path / "learn" / "agent.pt")},
        "init_from": None,
        "frozen": False,  # agent 'frozen' is an actor without learning of its own
        # how the actor was trained: a run of an actor trained otherwise is never reused for it
        "trained": {"name": "acodm", "options": cfg.agent.options, "episodes": 2, "first_seed": 1000},
    }
    assert (test_cfg["env"]["episode"], test_cfg["run"]["seed"], test_cfg["env"]["eval_interval"]) == ("scoring", 0, 4)
    summary = json.loads((test / "summary.json").read_text())
    assert [p["seed"] for p in curve["train"]] == [1000, 1001]
    assert all(np.isfinite(p["val_metric"]) and np.isfinite(p["mean_reward"]) for p in curve["train"])
    assert curve["test"] == [
        {
            "episodes": 2,
            "seeds": [0],
            "test_metric": [summary["test_metric"]],
            "score": [None],
            "mean_test_metric": summary["test_metric"],
            "mean_score": None,
        }
    ]
    assert json.loads((tmp_path / "learn" / "curve.json").read_text()) == curve
    assert (tmp_path / "learn" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_learned_compare_method_trains_its_policy_once_and_scores_it_frozen_on_every_seed(
    corpus_text_dir, cache_dir, tmp_path
):
    from acodm_gym.runs.compare import compare
    from acodm_gym.runs.records import restore_records, save_records
    from acodm_gym.runs.reproduce import reproduce

    cfg = load_config(_cfg(corpus_text_dir, cache_dir, tmp_path), ["learn.episodes=2", "learn.first_seed=500"])
    lines: list[str] = []
    out = compare(cfg, [0, 1], ["natural", "acodm-learned"], tmp_path / "cmp", log=lines.append)
    learned = out / "acodm-learned"
    assert sorted(p.name for p in (learned / "train").iterdir()) == ["ep-000", "ep-001"]  # 2 episodes
    reused = "finished earlier with this config: reused"
    for e in ("ep-000", "ep-001"):  # trained for seed 0, reused for seed 1
        assert sum(line == f"{learned / 'train' / e} {reused}" for line in lines) == 1
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["acodm-learned"]["seeds"] == [0, 1]
    for seed in (0, 1):
        run = yaml.safe_load((learned / "test" / "after-2" / f"seed-{seed}" / "config.yaml").read_text())
        assert (run["agent"]["name"], run["run"]["seed"], run["env"]["episode"]) == ("frozen", seed, "scoring")
    assert json.loads((learned / "curve.json").read_text())["test"][0]["seeds"] == [0, 1]
    episodes = [yaml.safe_load((learned / "train" / e / "config.yaml").read_text()) for e in ("ep-000", "ep-001")]
    assert [c["run"]["seed"] for c in episodes] == [500, 501]  # learn.first_seed on

    lines.clear()
    compare(cfg, [0, 1], ["natural", "acodm-learned"], out, log=lines.append)
    assert sum(reused in line for line in lines) == 2 + 2  # natural and the scoring runs: no episode is looked at

    save_records(out, tmp_path / "records")  # another machine or a clean clone: records only, no agent.pt
    rows = reproduce(tmp_path / "records", tmp_path / "rerun", log=lambda _: None)  # one record per method
    assert [r["record"] for r in rows] == ["acodm-learned/test/after-2/seed-0", "natural-seed0"]
    assert all(r["match"] for r in rows)  # the learned policy's episodes rerun from their records, then scored
    out.rename(tmp_path / "trained")
    restore_records(tmp_path / "records", out)
    assert not (learned / "agent.pt").exists()
    lines.clear()
    compare(cfg, [0, 1], ["natural", "acodm-learned"], out, log=lines.append)
    assert not any(line.startswith("== training episode") for line in lines)  # the policy is not trained again
    assert sum(reused in line for line in lines) == 2 + 2

    lines.clear()
    compare(cfg, [0, 1], ["acodm-learned"], out, log=lines.append, overwrite=True)
    assert sum(line.startswith("== training episode 1 of 2") for line in lines) == 1  # trained again once
    assert not any(reused in line for line in lines)  # and every seed scored again


def test_learn_train_only_scores_nothing_and_compare_then_scores_that_policy_without_training_it_again(
    corpus_text_dir, cache_dir, tmp_path
):
    """Hyper-parameters are chosen on the training episodes' validation (``--train-only``), then only the chosen
    policy is scored on the test seeds: the learned compare method reuses its episodes."""
    from acodm_gym.runs.compare import compare

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_cfg(corpus_text_dir, cache_dir, tmp_path)))
    args = ["learn", "--config", str(config), "--agent", "acodm", "--episodes", "2", "--train-only"]
    assert main([*args, "--out-dir", str(tmp_path / "cmp"), "--name", "acodm-learned"]) == 0
    learned = tmp_path / "cmp" / "acodm-learned"
    curve = json.loads((learned / "curve.json").read_text())
    assert (len(curve["train"]), curve["test"], (learned / "test").exists()) == (2, [], False)  # no test seed
    lines: list[str] = []
    compare(load_config(config, ["learn.episodes=2"]), [0], ["acodm-learned"], tmp_path / "cmp", log=lines.append)
    assert sum(line.endswith("finished earlier with this config: reused") for line in lines) == 2  # both episodes
    assert json.loads((learned / "curve.json").read_text())["test"][0]["seeds"] == [0]


def test_a_learned_policy_of_other_training_seeds_is_scored_again_not_reused(corpus_text_dir, cache_dir, tmp_path):
    """Any agent, not only an actor-critic (agent 'frozen'): its scoring runs record the training protocol."""
    cfg = load_config({**_cfg(corpus_text_dir, cache_dir, tmp_path), "agent": {"name": "odm"}})
    lines: list[str] = []
    learn(cfg, 1, tmp_path / "learn", [0], first_seed=1000, log=lines.append)
    test = tmp_path / "learn" / "test" / "after-1" / "seed-0"
    agent = yaml.safe_load((test / "config.yaml").read_text())["agent"]
    assert (agent["name"], agent["frozen"], agent["trained"]) == ("odm", True, {"episodes": 1, "first_seed": 1000})
    with pytest.raises(RunDirError, match="ep-000 already holds"):  # not scored: its episode is another's
        learn(cfg, 1, tmp_path / "learn", [0], first_seed=2000, log=lines.append)
    lines.clear()
    learn(cfg, 1, tmp_path / "learn", [0], first_seed=2000, log=lines.append, overwrite=True)
    assert not any("reused" in line for line in lines)  # trained on seed 2000 and scored again
    assert yaml.safe_load((test / "config.yaml").read_text())["agent"]["trained"]["first_seed"] == 2000
    assert yaml.safe_load((tmp_path / "learn" / "train" / "ep-000" / "config.yaml").read_text())["run"]["seed"] == 2000


def _kill_when(proc, ready, what: str, wait: float = 0.0) -> None:
    deadline = time.monotonic() + 180
    while not ready():
        assert proc.poll() is None, proc.communicate()[1][-4000:]
        assert time.monotonic() < deadline, f"{what} never appeared"
        time.sleep(0.02)
    time.sleep(wait)
    assert proc.poll() is None, "learn finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def test_a_killed_learn_resumes_bit_for_bit_between_and_inside_episodes(corpus_text_dir, cache_dir, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(_cfg(corpus_text_dir, cache_dir, tmp_path, run={"checkpoint_interval": 3})))
    args = ["learn", "--config", str(cfg), "--agent", "acodm", "--episodes", "2", "--test-seeds", "0"]
    _finish(_cli([*args, "--out-dir", str(tmp_path / "ref"), "--name", "run"]))
    killed = [*args, "--out-dir", str(tmp_path / "killed"), "--name", "run"]
    run = tmp_path / "killed" / "run"
    ep0, ep1 = run / "train" / "ep-000", run / "train" / "ep-001"

    proc = _cli(killed, delay=0.05)  # killed between episodes: the first has finished, the second not started
    _kill_when(proc, lambda: (ep0 / "summary.json").is_file(), "the first episode's summary")
    assert not (ep1 / "checkpoints").exists()
    proc = _cli(killed, delay=0.05)  # killed inside the second episode, a few steps past its first checkpoint
    _kill_when(proc, lambda: (ep1 / "checkpoints" / "latest").is_file(), "a checkpoint of episode 2", wait=0.12)
    ckpt = checkpoint.find(ep1)
    assert not (ep1 / "summary.json").exists() and 3 <= ckpt.step < STEPS
    out = _finish(_cli(killed))
    assert f"{ep0} finished earlier with this config: reused" in out and f"resuming {ep1} from {ckpt.path.name}" in out
    assert json.loads((ep1 / "summary.json").read_text())["resumed_at"] == [ckpt.step]

    ref = tmp_path / "ref" / "run"
    for episode in ("train/ep-000", "train/ep-001", "test/after-2/seed-0"):
        a, b = run / episode, ref / episode
        assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text(), episode
        ma, mb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
        assert all(torch.equal(ma[k], mb[k]) for k in mb), episode
        _assert_equal_tree(_agent_state(a / "agent.pt"), _agent_state(b / "agent.pt"), episode)
    curves = [json.loads((d / "curve.json").read_text()) for d in (run, ref)]
    assert [p["val_metric"] for p in curves[0]["train"]] == [p["val_metric"] for p in curves[1]["train"]]
    assert curves[0]["test"] == curves[1]["test"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--agent", "nope", "--episodes", "2"], "agent.name='nope' is not supported"),
        (["--agent", "acodm", "--episodes", "0"], "--episodes 0: learning needs at least 1"),
        (["--agent", "odm", "--episodes", "2", "agent.options.updater=exp4"], "choose one of exp3, smoothed_mean"),
        (["--agent", "acodm", "--episodes", "2", "agent.options.gamma=1.5"], "agent.options.gamma=1.5 is out of range"),
        (["--agent", "odm", "--episodes", "2", "agent.frozen=true"], "agent.frozen=true"),
        (["--agent", "acodm", "--episodes", "3", "--train-seed", "2"], "share [2, 3, 4]"),
        (["--agent", "acodm", "--episodes", "1", "--test-seeds", "5", "5"], "repeat a seed"),
        (["--agent", "acodm", "--episodes", "1", "--test-seeds", "0", "-1"], "--test-seeds -1 is not a seed"),
    ],
)
def test_bad_learn_input_fails_before_any_work(config, tmp_path, capsys, args, message):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({**config, "data": {**config["data"], "cache_dir": str(tmp_path / "cache")}}))
    assert main(["learn", "--config", str(cfg), "--out-dir", str(tmp_path / "runs"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()  # no corpus, no directory


def test_learn_refuses_a_frozen_agent_it_could_not_train(config, tmp_path):
    from acodm_gym.errors import ConfigError
    from acodm_gym.runs.learn import check_protocol

    (tmp_path / "agent.pt").write_bytes(b"")
    cfg = load_config(config, ["agent.name=odm", "agent.frozen=true", f"agent.init_from={tmp_path / 'agent.pt'}"])
    with pytest.raises(ConfigError, match="learn trains the agent, then freezes it itself; drop agent.frozen"):
        check_protocol(cfg, 2, [1000, 1001], [0])


def test_an_unknown_task_fails_before_any_work(tmp_path, capsys):
    assert main(["learn", "--task", "nope", "--agent", "acodm", "--episodes", "2", "--out-dir", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_training_record_belongs_to_a_frozen_agent(config):
    """``agent.trained`` says how a saved policy was trained: refused on an agent that trains itself."""
    from acodm_gym.errors import ConfigError

    trained = {"episodes": 1, "first_seed": 1000}
    with pytest.raises(ConfigError, match="agent.trained records how a frozen agent was trained"):
        load_config({**config, "agent": {"name": "odm", "trained": trained}})
    frozen = load_config({**config, "agent": {"name": "frozen", "options": {"path": "agent.pt"}, "trained": trained}})
    assert frozen.agent.trained == trained
