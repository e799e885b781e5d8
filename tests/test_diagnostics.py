"""The diagnostics are the values they claim: a known critic, known rewards and returns, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from acodm_gym.agents import ACODMAgent, VectorDDPG
from acodm_gym.agents.diagnostics import DIAGNOSTICS, Diagnostics, ranks, return_horizon, spearman

from test_agents import NATURAL, OBS, SMALL, K, make_spec, vector_model


def test_ranks_and_spearman_by_hand():
    np.testing.assert_array_equal(ranks([10.0, 30.0, 20.0, 20.0]), [1.0, 4.0, 2.5, 2.5])
    # ranks x: 1 2 3 4 5, y: 2 1 4 3 5 → d² = 1+1+1+1+0 = 4, ρ = 1 − 6·4 / (5·24) = 0.8
    assert spearman([1.0, 2.0, 3.0, 4.0, 5.0], [0.2, 0.1, 0.9, 0.5, 7.0]) == pytest.approx(0.8)
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))


def test_reward_snr_cosine_and_entropy_by_hand():
    diag = Diagnostics(K, target_weights=[2.0, 0.0, 0.0], window=3)
    for w in ([9.0, 0.0, 1.0], [1.0, 1.0, 1.0], [2.0, 2.0, 4.0], [3.0, 0.0, 1.0]):  # the first leaves the window
        diag.record(np.array(w))
    stats = diag.stats(before=np.array([0.5, 0.3, 0.2]), after=np.array([0.6, 0.25, 0.15]))
    # window [1,1,1], [2,2,4], [3,0,1]: domain means 2, 1, 2 → signal = std(2, 1, 2) = 1/√3;
    # per-domain stds (ddof 1): 1, 1, √3 → noise = (2 + √3) / 3
    assert stats["reward_signal"] == pytest.approx(1 / math.sqrt(3))
    assert stats["reward_noise"] == pytest.approx((2 + math.sqrt(3)) / 3)
    assert stats["reward_snr"] == pytest.approx((1 / math.sqrt(3)) / ((2 + math.sqrt(3)) / 3))
    # step (0.1, −0.05, −0.05), towards the target (1, 0, 0): (0.5, −0.3, −0.2)
    dot, norms = 0.05 + 0.015 + 0.01, math.sqrt(0.015) * math.sqrt(0.38)
    assert stats["target_cosine"] == pytest.approx(dot / norms)
    assert stats["weight_entropy"] == pytest.approx(
        -(0.6 * math.log(0.6) + 0.25 * math.log(0.25) + 0.15 * math.log(0.15))
    )
    assert "target_cosine" not in diag.stats(before=np.array([0.5, 0.3, 0.2]), after=np.array([0.5, 0.3, 0.2]))
    assert "target_cosine" not in Diagnostics(K).stats(
        before=np.array([0.5, 0.3, 0.2]), after=np.array([0.6, 0.25, 0.15])
    )


def test_td_error_is_the_mean_absolute_td_error_of_the_critic_batch():
    model = vector_model(VectorDDPG, n=1)
    linear = nn.Linear(OBS + K, K)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[:, 0] = 1.0  # Q_i(s, a) = s_0 + b_i
        linear.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    model.critic.q_networks[0] = nn.Sequential(linear)
    obs = torch.zeros(2, OBS)
    obs[:, 0] = torch.tensor([1.0, 3.0])
    target = torch.tensor([[0.0, 0.0, 0.0], [4.0, 1.0, 3.5]])
    model.critic_step(obs, torch.zeros(2, K), target)
    # Q = [[2, −1, 1.5], [4, 1, 3.5]]: |δ| = 2, 1, 1.5, 0, 0, 0 → mean 0.75
    assert model.td_error == pytest.approx(0.75)


def known_critic(agent, c):
    """Q_i(s, a) = c_i·s_0 for every action."""
    linear = nn.Linear(OBS + K, K)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[:, 0] = torch.as_tensor(c, dtype=torch.float32)
        linear.bias.zero_()
    agent.model.critic.q_networks[0] = nn.Sequential(linear)


def test_q_return_spearman_on_held_out_transitions_with_a_known_critic():
    """Every 2nd transition is held out of the replay buffer; its return over H = 7 steps (γ = 0.5) and
    Q = c·s_0, both scalarised with its own action, are ranked against each other."""
    gamma, steps = 0.5, 30
    agent = ACODMAgent(make_spec(), gamma=gamma, holdout_every=2, reward_ema=None, warmup_steps=100, **SMALL)
    c = np.array([1.0, 2.0, -1.0])
    known_critic(agent, c)
    assert return_horizon(gamma) == 7
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(steps, OBS)).astype(np.float32)
    weights = rng.dirichlet(np.ones(K), size=steps)
    rewards = rng.normal(size=(steps, K))
    for t in range(steps):
        agent.observe(obs[t], weights[t], 0.0, obs[t], {"vector_reward": rewards[t], "sampling_probs": NATURAL})
    held = [t for t in range(1, steps, 2) if t + 7 <= steps]  # held out, and 7 later rewards seen
    assert agent.model.replay_buffer.pos == steps // 2, "held-out transitions stay out of the replay buffer"
    returns = np.array([sum(gamma**j * rewards[t + j] for j in range(7)) for t in held])
    w = np.array([weights[t] for t in held])
    q = (w * (obs[held, 0:1] * c)).sum(axis=1)
    g = (w * returns).sum(axis=1)
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731 (no ties among random values)
    expected = np.corrcoef(rank(q), rank(g))[0, 1]
    stats = agent.diagnostics.stats(q_and_return=agent.q_and_return)
    assert len(held) == 12 and stats["q_return_spearman"] == pytest.approx(expected, abs=1e-6)
    # across domains: the critic's mean Q_i = c_i·mean(s_0) against each domain's mean return
    q_domain = c * obs[held, 0].mean()
    assert stats["q_domain_spearman"] == pytest.approx(spearman(q_domain, returns.mean(axis=0)), abs=1e-9)
    # the held-out returns are the hand-computed ones
    stored = sorted(i["ret"].tolist() for i in agent.diagnostics.heldout)
    np.testing.assert_allclose(stored, sorted(returns.tolist()), rtol=1e-12)


def test_q_domain_spearman_tells_a_critic_that_ranks_the_domains_from_one_that_does_not():
    """Returns that rank the domains 0 < 1 < 2: a critic c = (1, 2, 3) ranks them right (+1), c = (3, 2, 1) wrong (−1)."""
    diag = Diagnostics(K, gamma=0.5, holdout_every=2)
    rng = np.random.default_rng(1)
    for _ in range(40):
        diag.record(
            np.zeros(K), rng.normal(size=OBS), np.zeros(K), np.array([0.0, 1.0, 2.0]) + rng.normal(0, 0.1, K), True
        )
    obs_mean = lambda o: np.abs(o[:, :1]) + 1.0  # noqa: E731 (a positive state feature)

    def critic(c):
        return lambda o, a, r: (np.zeros(len(o)), np.zeros(len(o)), obs_mean(o) * np.asarray(c))

    assert diag.stats(q_and_return=critic([1.0, 2.0, 3.0]))["q_domain_spearman"] == pytest.approx(1.0)
    assert diag.stats(q_and_return=critic([3.0, 2.0, 1.0]))["q_domain_spearman"] == pytest.approx(-1.0)


def test_acodm_update_returns_every_diagnostic():
    agent = ACODMAgent(make_spec(), gamma=0.5, holdout_every=2, warmup_steps=3, target_weights=[0.2, 0.3, 0.5], **SMALL)
    rng = np.random.default_rng(0)
    obs, stats = rng.normal(size=OBS).astype(np.float32), {}
    for _ in range(25):
        action = agent.act(obs)
        nxt = rng.normal(size=OBS).astype(np.float32)
        agent.observe(obs, action, 0.0, nxt, {"vector_reward": rng.normal(size=K), "sampling_probs": NATURAL})
        stats = agent.update()
        obs = nxt
    assert set(DIAGNOSTICS) <= stats.keys()


def test_bad_diagnostics_options_are_refused():
    with pytest.raises(ValueError, match="holdout_every"):
        ACODMAgent(make_spec(), holdout_every=1, **SMALL)
    with pytest.raises(ValueError, match="diagnostics_window"):
        ACODMAgent(make_spec(), diagnostics_window=1, **SMALL)
    with pytest.raises(ValueError, match="target_weights"):
        ACODMAgent(make_spec(), target_weights=[0.5, -0.5, 1.0], **SMALL)
    with pytest.raises(ValueError, match="unknown domains"):
        ACODMAgent(make_spec(), target_weights={"a": 1.0, "b": 1.0, "z": 1.0}, **SMALL)


def test_target_weights_from_a_mapping_or_a_mixture_file(tmp_path):
    from acodm_gym.agents.static import write_mixture

    path = write_mixture(tmp_path / "mixture.json", ["a", "b", "c"], [1], np.array([[0.6, 0.2, 0.2]]))
    for target in ({"c": 2.0, "a": 6.0, "b": 2.0}, str(path)):
        agent = ACODMAgent(make_spec(), target_weights=target, **SMALL)
        np.testing.assert_allclose(agent.diagnostics.target, [0.6, 0.2, 0.2])
