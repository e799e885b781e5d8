"""The offline agent: d3rlpy's IQL trained on transitions logged by a real run, then frozen in the env.

Skipped where d3rlpy (the optional extra ``offline``) is not installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from acodm_gym.agents import EnvSpec, OfflineAgent
from acodm_gym.agents.offline import metric_rewards
from acodm_gym.config import load_config
from acodm_gym.envs import PretrainEnv
from acodm_gym.errors import AgentError, ConfigError, MissingFileError
from acodm_gym.runs.logger import read_metrics
from acodm_gym.runs.runner import train

from conftest import small_config

pytest.importorskip("d3rlpy", reason="the offline agent needs d3rlpy: pip install -e '.[offline]'")

TINY = {"n_steps": 40, "batch_size": 8, "hidden": [16]}
RUN = {"plots": False, "tensorboard": False, "log_transitions": True}


@pytest.fixture(scope="module")
def logged(corpus_text_dir, cache_dir, tmp_path_factory) -> list[str]:
    """Two logged runs of acodm (its warm-up noise varies the weights), 12 steps each, validated every 4."""
    out, paths = tmp_path_factory.mktemp("logged"), []
    for seed in (0, 1):
        agent = {"name": "acodm", "options": {"warmup_steps": 4, "batch_size": 4, "width": 16, "seed": seed}}
        cfg = small_config(
            corpus_text_dir,
            cache_dir,
            agent=agent,
            train={"total_steps": 12},
            env={"eval_interval": 4},
            run={**RUN, "out_dir": str(out), "seed": seed},
        )
        paths.append(str(train(load_config(cfg), log=lambda _: None).run_dir / "transitions.npz"))
    return paths


def test_offline_policy_trains_on_logged_runs_then_acts_frozen_in_the_env(config, logged, tmp_path):
    env = PretrainEnv(config, {"train": {"total_steps": 5}, "env": {"eval_interval": 0, "compute_reward": False}})
    agent = OfflineAgent(EnvSpec.from_env(env), dataset=logged, **TINY)
    obs, _ = env.reset(seed=0)
    assert agent.state_dict() == {"trained": False}
    first = agent.act(obs)  # trains on the logged runs
    trained = agent.state_dict()
    assert trained["trained"] and first.shape == (env.k,) and first.sum() == pytest.approx(1.0) and first.min() >= 0
    actions = []
    for _ in range(5):
        action = agent.act(obs)
        next_obs, reward, _, truncated, info = env.step(action)
        agent.observe(obs, action, reward, next_obs, info)
        assert agent.update() == {}
        actions.append(action)
        obs = next_obs
    assert truncated and torch.equal(agent.state_dict()["model"], trained["model"]), "the policy stayed frozen"
    assert np.ptp(np.array(actions), axis=0).max() > 0, "the policy reads its observation"
    agent.save(tmp_path / "agent.pt")
    clone = OfflineAgent(EnvSpec.from_env(env), dataset=logged, **{**TINY, "seed": 5})
    clone.load(tmp_path / "agent.pt")  # loaded, not retrained
    np.testing.assert_array_equal(clone.act(obs), agent.act(obs))
    retrained = OfflineAgent(EnvSpec.from_env(env), dataset=logged, **TINY)
    np.testing.assert_array_equal(retrained.act(obs), agent.act(obs))  # training is seeded


def test_offline_agent_runs_under_the_runner(corpus_text_dir, cache_dir, logged, tmp_path):
    agent = {"name": "offline", "options": {"dataset": logged, **TINY}}
    run = {"plots": False, "tensorboard": False, "out_dir": str(tmp_path)}
    cfg = small_config(corpus_text_dir, cache_dir, agent=agent, train={"total_steps": 4}, run=run)
    result = train(load_config(cfg), log=lambda _: None)
    assert result.summary["steps"] == 4
    assert torch.load(result.run_dir / "agent.pt", weights_only=True)["state"]["trained"]


def test_offline_agent_refuses_bad_datasets(config, logged, tmp_path):
    env = PretrainEnv(config, {"train": {"total_steps": 3}, "env": {"eval_interval": 0, "compute_reward": False}})
    spec = EnvSpec.from_env(env)
    with pytest.raises(ConfigError, match="dataset"):
        OfflineAgent(spec)
    with pytest.raises(ConfigError, match="algorithm"):
        OfflineAgent(spec, dataset=logged, algorithm="bcq")
    with pytest.raises(MissingFileError, match="log_transitions"):
        OfflineAgent(spec, dataset=[str(tmp_path / "none.npz")])
    short = tmp_path / "short.npz"
    np.savez(short, obs=np.zeros((3, 5)), action=np.zeros((3, env.k)), reward=np.zeros(3))
    with pytest.raises(AgentError, match="observations"):
        OfflineAgent(spec, dataset=[str(short)])
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(AgentError, match="not a transitions file"):
        OfflineAgent(spec, dataset=[str(tmp_path / "text.npz")])


def test_the_metric_reward_is_the_task_metrics_fall_between_the_logged_validations(config, logged):
    """reward=metric learns from the task metric the run logged at its validations (the Data Mixing Agent's
    signal), not from the alignment reward; the runner logs it with the transitions, as metrics.csv has it."""
    for path in logged:
        with np.load(path) as t:
            logged_val = t["val_metric"]
        csv_val = read_metrics(Path(path).parent / "metrics.csv")["val_metric"]
        np.testing.assert_allclose(logged_val, csv_val, rtol=1e-6, equal_nan=True)
        assert np.isfinite(logged_val).sum() == 3  # steps 4, 8, 12
    val = np.array([np.nan, 10.0, np.nan, 5.0, np.nan, np.nan, 4.0])
    rewards = metric_rewards(val)
    np.testing.assert_allclose(rewards[:2], 0.0)  # before the first validation nothing is known
    np.testing.assert_allclose(rewards[2:4], np.log(2.0) / 2)  # 10 -> 5 over two steps
    np.testing.assert_allclose(rewards[4:], np.log(5.0 / 4.0) / 3)
    assert rewards.sum() == pytest.approx(np.log(10.0 / 4.0))

    env = PretrainEnv(config, {"train": {"total_steps": 3}, "env": {"eval_interval": 0, "compute_reward": False}})
    spec = EnvSpec.from_env(env)
    by_metric = OfflineAgent(spec, dataset=logged, reward="metric", **TINY)
    by_alignment = OfflineAgent(spec, dataset=logged, **TINY)
    for episode, path in zip(by_metric.episodes, logged):
        with np.load(path) as t:
            np.testing.assert_allclose(episode["reward"], metric_rewards(t["val_metric"].astype(np.float64)), rtol=1e-6)
    assert not np.allclose(by_metric.episodes[0]["reward"], by_alignment.episodes[0]["reward"])
    obs, _ = env.reset(seed=0)
    assert by_metric.act(obs).sum() == pytest.approx(1.0)  # it trains on them and acts


def test_the_metric_reward_refuses_runs_without_validations(config, logged, tmp_path):
    env = PretrainEnv(config, {"train": {"total_steps": 3}, "env": {"eval_interval": 0, "compute_reward": False}})
    spec = EnvSpec.from_env(env)
    with np.load(logged[0]) as t:
        arrays = {k: t[k] for k in t.files}
    np.savez(tmp_path / "old.npz", **{k: v for k, v in arrays.items() if k != "val_metric"})  # logged before
    with pytest.raises(AgentError, match="0 validations.*eval_interval"):
        OfflineAgent(spec, dataset=[str(tmp_path / "old.npz")], reward="metric")
    OfflineAgent(spec, dataset=[str(tmp_path / "old.npz")])  # the alignment reward needs none
    with pytest.raises(ConfigError, match="reward"):
        OfflineAgent(spec, dataset=logged, reward="loss")


def test_a_dataset_folder_stands_for_every_transitions_file_below_it(config, logged, tmp_path):
    env = PretrainEnv(config, {"train": {"total_steps": 3}, "env": {"eval_interval": 0, "compute_reward": False}})
    spec = EnvSpec.from_env(env)
    folder = Path(logged[0]).parent.parent  # the fixture's out dir: both runs
    assert OfflineAgent(spec, dataset=[str(folder)], **TINY).files == sorted(Path(p) for p in logged)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="holds no transitions.npz"):
        OfflineAgent(spec, dataset=[str(tmp_path / "empty")])
