"""Agents against the real PretrainEnv: the runner's loop for every registered agent, SB3's learn()."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DDPG, PPO, SAC, TD3

from acodm_gym.agents import AGENTS, ACODMAgent, EnvSpec, VectorDDPG, VectorSAC, VectorTD3, make_agent
from acodm_gym.config import AgentConfig
from acodm_gym.envs import PretrainEnv

TINY_AC = {"layers": 1, "width": 32, "batch_size": 16, "warmup_steps": 3}
OPTIONS = {
    "acodm": TINY_AC,
    "acodm-td3": TINY_AC,
    "vector-sac": TINY_AC,
    "doge": {},
    "odm": {"warmup_steps": 2},
    "ddpg": {"learning_starts": 3, "batch_size": 16, "policy_kwargs": {"net_arch": [32]}},
    "td3": {"learning_starts": 3, "batch_size": 16, "policy_kwargs": {"net_arch": [32]}},
    "sac": {"learning_starts": 3, "batch_size": 16, "policy_kwargs": {"net_arch": [32]}},
    "ppo": {"n_steps": 4, "batch_size": 4, "n_epochs": 1, "policy_kwargs": {"net_arch": [32]}},
    "acodm-released": TINY_AC,
    "ado": {"ignore_steps": 1, "start_step": 6, "update_interval": 2, "savgol_window": 5},
    "aioli": {"lp_steps": 1, "update_steps": 2},
}
LEARNERS = set(OPTIONS) - {"odm", "aioli"}  # aioli logs nothing


def make_env(config, cls=None, total_steps=10) -> PretrainEnv:
    """The env as the runner builds it for an agent class: probes and floor only where it needs them."""
    overrides = {"train": {"total_steps": total_steps}, "env": {"eval_interval": 0}}
    if cls is not None:
        overrides["train"]["exploration_floor"] = cls.exploration_floor
        overrides["env"]["compute_reward"] = cls.needs_reward
    return PretrainEnv(config, overrides, log=lambda *_: None)


def _log_random_run(env, tmp_path) -> str:
    """A logged run as ``run.log_transitions`` writes it, of Dirichlet-random weights."""
    rng, rows = np.random.default_rng(0), {"obs": [], "action": [], "reward": []}
    obs, _ = env.reset(seed=1)
    for _ in range(env.cfg.train.total_steps):
        action = rng.dirichlet(np.ones(env.k))
        next_obs, reward, *_ = env.step(action)
        for key, value in zip(rows, (obs, action, reward)):
            rows[key].append(value)
        obs = next_obs
    np.savez(tmp_path / "transitions.npz", **{key: np.array(v, dtype=np.float32) for key, v in rows.items()})
    return str(tmp_path / "transitions.npz")


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_registered_agent_runs_the_runner_loop(name, config, tmp_path):
    cls = AGENTS[name]
    env = make_env(config, cls)
    spec = EnvSpec.from_env(env)
    cfg = AgentConfig(name=name, options=dict(OPTIONS.get(name, {})))
    if name == "static":
        cfg.weights = [1, 2, 3, 4]
    if name == "schedule":
        cfg.weights = {"steps": [1, env.cfg.train.total_steps], "weights": [[1, 2, 3, 4], [4, 3, 2, 1]]}
    if name == "frozen":
        ACODMAgent(spec, layers=1, width=32).save(tmp_path / "proxy.pt")
        cfg.options["path"] = str(tmp_path / "proxy.pt")
    if name == "offline":
        pytest.importorskip("d3rlpy", reason="the offline agent needs d3rlpy: pip install -e '.[offline]'")
        cfg.options = {"dataset": [_log_random_run(env, tmp_path)], "n_steps": 20, "batch_size": 8, "hidden": [16]}
    agent = make_agent(cfg, spec)
    agent.check_env(env)
    obs, info = env.reset(seed=0)
    logged = {}
    for _ in range(env.cfg.train.total_steps):
        action = agent.act(obs)
        assert action.shape == (env.k,) and np.all(action >= 0) and action.sum() == pytest.approx(1.0)
        next_obs, reward, terminated, truncated, info = env.step(action)
        if not cls.needs_reward:
            assert not info["vector_reward"].any(), "needs_reward=False: the env skips its probes"
        if not cls.exploration_floor:
            np.testing.assert_allclose(info["sampling_probs"], info["domain_weights"])
        agent.observe(obs, action, reward, next_obs, info)
        stats = agent.update()
        assert all(isinstance(v, float) and np.isfinite(v) for v in stats.values())
        logged.update(stats)
        obs = next_obs
    assert truncated
    if name in LEARNERS:
        assert logged, f"{name} never trained"
    agent.save(tmp_path / "agent.pt")
    agent.load(tmp_path / "agent.pt")


def test_an_agent_refuses_an_env_with_other_domains(config):
    env = make_env(config)
    spec = EnvSpec.from_env(env)
    agent = ACODMAgent(dataclasses.replace(spec, domains=spec.domains[:-1] + ["other"]), **TINY_AC)
    with pytest.raises(ValueError, match="domains"):
        agent.check_env(env)


class RecordWeights(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.weights = []

    def step(self, action):
        out = self.env.step(action)
        self.weights.append(out[-1]["domain_weights"])
        return out


STOCK = {
    "ddpg": (DDPG, {"learning_starts": 5}),
    "td3": (TD3, {"learning_starts": 5, "policy_delay": 1}),
    "sac": (SAC, {"learning_starts": 5}),
    "ppo": (PPO, {"n_steps": 8, "batch_size": 8, "n_epochs": 2}),
    "vector-ddpg": (VectorDDPG, {"learning_starts": 5}),
    "vector-td3": (VectorTD3, {"learning_starts": 5, "policy_delay": 1}),
    "vector-sac": (VectorSAC, {"learning_starts": 5}),
}


@pytest.mark.parametrize("name", sorted(STOCK))
def test_sb3_learn_runs_on_the_env_and_moves_the_weights(name, config):
    """SB3's own learn() on the scalar reward (the vector variants read info["vector_reward"])."""
    algorithm, kwargs = STOCK[name]
    env = RecordWeights(make_env(config, total_steps=12))
    model = algorithm("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [32]}, **kwargs)
    obs, _ = env.reset(seed=0)
    before = model.predict(obs, deterministic=True)[0]
    model.learn(total_timesteps=16)
    after = model.predict(obs, deterministic=True)[0]
    assert len(env.weights) == 16
    assert not np.allclose(before, after, atol=1e-6), "training did not change the policy's weights"
    weights = np.array(env.weights)
    assert weights.std(axis=0).max() > 1e-3, "the mixture never changed across steps"
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)


def test_acodm_keeps_every_weight_off_the_corners_on_the_real_env(config):
    """After warm-up the greedy actor stays above the prior term's bound (no collapse to a domain).

    At the actor's optimum α_i ≥ prior_i·λ / (λ + range Q̃) and range Q̃ ≤ √(2(k − 1)) for k values
    scaled by their standard deviation; half that bound leaves room for the actor's lag.
    """
    env = make_env(config, ACODMAgent, total_steps=60)
    spec = EnvSpec.from_env(env)
    agent = ACODMAgent(spec, layers=1, width=32, batch_size=16, warmup_steps=10)
    bound = 0.5 * spec.natural_weights / (1 + np.sqrt(2 * (env.k - 1)))
    obs, _ = env.reset(seed=0)
    lowest = np.ones(env.k)
    for t in range(60):
        action = agent.act(obs)
        next_obs, reward, _, _, info = env.step(action)
        agent.observe(obs, action, reward, next_obs, info)
        agent.update()
        obs = next_obs
        if t >= 10:
            lowest = np.minimum(lowest, agent.model.predict(obs, deterministic=True)[0])
    assert (lowest >= bound).all(), f"lowest greedy weights {lowest.round(4)} fell below {bound.round(4)}"


def test_anchored_acodm_starts_uniform_and_learns_off_it_on_the_real_env(config):
    """``actor: anchored`` on the real env: the greedy weights are uniform through warm-up, move once the
    actor steps, and keep every weight above its minimum probability."""
    env = make_env(config, ACODMAgent, total_steps=30)
    spec = EnvSpec.from_env(env)
    agent = ACODMAgent(spec, actor="anchored", min_weight=0.02, layers=1, width=32, batch_size=16, warmup_steps=10)
    obs, _ = env.reset(seed=0)
    greedy = []
    for _ in range(30):
        action = agent.act(obs)
        next_obs, reward, _, _, info = env.step(action)
        agent.observe(obs, action, reward, next_obs, info)
        agent.update()
        obs = next_obs
        greedy.append(agent.greedy(obs))
    greedy = np.array(greedy)
    np.testing.assert_allclose(greedy[:9], 1 / env.k, atol=1e-6)
    assert np.abs(greedy[-1] - 1 / env.k).max() > 1e-3
    assert greedy.min() >= 0.02 - 1e-6
    np.testing.assert_allclose(greedy.sum(axis=1), 1.0, atol=1e-5)
