"""The offline agent: d3rlpy's IQL trained on transitions logged by a real run, then frozen in the env.

Skipped where d3rlpy (the optional extra ``offline``) is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acodm_gym.agents import EnvSpec, OfflineAgent
from acodm_gym.config import load_config
from acodm_gym.envs import PretrainEnv
from acodm_gym.errors import AgentError, ConfigError, MissingFileError
from acodm_gym.runs.runner import train

from conftest import small_config

pytest.importorskip("d3rlpy", reason="the offline agent needs d3rlpy: pip install -e '.[offline]'")

TINY = {"n_steps": 40, "batch_size": 8, "hidden": [16]}
RUN = {"plots": False, "tensorboard": False, "log_transitions": True}


@pytest.fixture(scope="module")
def logged(corpus_text_dir, cache_dir, tmp_path_factory) -> list[str]:
    """Two logged runs of acodm (its warm-up noise varies the weights), 12 steps each."""
    out, paths = tmp_path_factory.mktemp("logged"), []
    for seed in (0, 1):
        agent = {"name": "acodm", "options": {"warmup_steps": 4, "batch_size": 4, "width": 16, "seed": seed}}
        cfg = small_config(
            corpus_text_dir,
            cache_dir,
            agent=agent,
            train={"total_steps": 12},
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
