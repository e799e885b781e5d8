"""Agents on synthetic transitions: the actor–critic maths, warm-up, EXP3, saving and bad input."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from torch import nn

from acodm_gym.agents import (
    AGENTS,
    ACODMAgent,
    ACODMReleasedAgent,
    ACODMTD3Agent,
    ActorCriticAgent,
    ADOAgent,
    AioliAgent,
    DoGEAgent,
    EnvSpec,
    EXP3Agent,
    FrozenActorAgent,
    LogisticNormalDistribution,
    SACAgent,
    TD3Agent,
    VectorDDPG,
    VectorReplayBuffer,
    VectorSAC,
    VectorSACAgent,
    VectorTD3,
    make_agent,
    options_markdown,
)
from acodm_gym.agents.sb3 import build_sb3_model
from acodm_gym.agents.vector_td3 import cosine_schedule
from acodm_gym.config import AgentConfig, ConfigError
from acodm_gym.errors import AgentError, NonFiniteLossError

K, OBS = 3, 11
NATURAL = np.array([0.5, 0.3, 0.2])
SMALL = {"layers": 1, "width": 32, "batch_size": 16}


def make_spec(domains=("a", "b", "c"), obs_size=OBS, total_steps=200) -> EnvSpec:
    k = len(domains)
    return EnvSpec(
        spaces.Box(-np.inf, np.inf, (obs_size,), np.float32),
        spaces.Box(0.0, 1.0, (k,), np.float32),
        list(domains),
        NATURAL[:k] / NATURAL[:k].sum() if k <= 3 else np.full(k, 1.0 / k),
        {"all": slice(0, obs_size)},
        total_steps,
    )


def info_for(rng, reward=None, probs=(0.4, 0.3, 0.3)):
    return {
        "vector_reward": rng.normal(size=K) if reward is None else np.asarray(reward, dtype=np.float64),
        "sampling_probs": np.asarray(probs),
        "domain_counts": np.array([3, 2, 3]),
        "domain_losses": np.array([5.0, 6.0, 7.0]),
    }


def vector_model(algorithm=VectorDDPG, n=64, policy_kwargs=None, **kwargs):
    """A vector AC model without an env, its buffer filled with random simplex transitions."""
    policy_kwargs = {"net_arch": [32], **(policy_kwargs or {})}
    model = build_sb3_model(
        algorithm, make_spec(), seed=0, device="cpu", learning_starts=0, policy_kwargs=policy_kwargs, **kwargs
    )
    rng = np.random.default_rng(0)
    for _ in range(n):
        w = rng.dirichlet(np.ones(K))
        obs, nxt = rng.normal(size=(2, 1, OBS)).astype(np.float32)
        model.replay_buffer.add(obs, nxt, (2 * w - 1)[None], np.zeros(1), np.zeros(1), [info_for(rng)])
    return model


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def drive(agent, steps, rng, reward=None):
    """The runner's loop on random observations."""
    obs = rng.normal(size=OBS).astype(np.float32)
    for _ in range(steps):
        action = agent.act(obs)
        nxt = rng.normal(size=OBS).astype(np.float32)
        info = info_for(rng, reward)
        agent.observe(obs, action, float(action @ info["vector_reward"]), nxt, info)
        agent.update()
        obs = nxt
    return obs


# -- vector actor–critic -------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", [VectorDDPG, VectorTD3])
def test_actor_step_moves_the_actor_and_never_the_critic(algorithm):
    model = vector_model(algorithm)
    data = model.replay_buffer.sample(16)
    actor, critic, targets = (
        params(model.actor),
        params(model.critic),
        params(model.critic_target) + params(model.actor_target),
    )
    model.actor_step(data.observations)
    assert not same(actor, params(model.actor)), "the actor optimiser must step (the authors' code never did)"
    assert same(critic, params(model.critic)), "the actor loss must not move the critic"
    assert same(targets, params(model.critic_target) + params(model.actor_target))


def test_train_updates_actor_critic_and_soft_targets():
    model = vector_model(VectorDDPG, tau=0.5)
    before = {name: params(getattr(model, name)) for name in ("actor", "critic", "actor_target", "critic_target")}
    model.train(1, 16)
    for name, old in before.items():
        assert not same(old, params(getattr(model, name))), f"{name} did not move"


def test_td_target_is_per_component_bootstrap_from_target_actor():
    """y = r + γ(1 − d)·Q̄(s', μ̄(s')) with Q̄(s', a) = 2a + c, so y depends on μ̄(s') per domain."""
    model = vector_model(VectorDDPG, n=1, gamma=0.9)
    linear = nn.Linear(OBS + K, K)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[:, OBS:] = 2 * torch.eye(K)
        linear.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    model.critic_target.q_networks[0] = nn.Sequential(linear)
    obs, nxt = torch.randn(2, 4, OBS)
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0], [0.5, 0.5, 0.5], [2.0, 0.0, -3.0]])
    dones = torch.tensor([[0.0], [1.0], [0.0], [0.0]])
    batch = ReplayBufferSamples(obs, torch.zeros(4, K), nxt, dones, rewards)
    p = model.actor_target.mu(nxt).detach()  # the target actor's softmax weights μ̄(s')
    expected = rewards + 0.9 * (1 - dones) * (2 * (2 * p - 1) + torch.tensor([1.0, -2.0, 0.5]))
    torch.testing.assert_close(model.td_target(batch), expected)


def test_td3_target_takes_the_per_component_minimum_of_its_critics():
    model = vector_model(VectorTD3, n=1, gamma=0.5)
    for net, bias in zip(model.critic_target.q_networks, ([1.0, 5.0, 2.0], [3.0, 0.0, 4.0])):
        with torch.no_grad():
            net[-1].weight.zero_()
            net[-1].bias.copy_(torch.tensor(bias))
    rewards = torch.ones(2, K)
    batch = ReplayBufferSamples(torch.randn(2, OBS), torch.zeros(2, K), torch.randn(2, OBS), torch.zeros(2, 1), rewards)
    torch.testing.assert_close(model.td_target(batch), rewards + 0.5 * torch.tensor([1.0, 0.0, 2.0]))


def test_predict_returns_the_softmax_weights():
    model = vector_model(VectorDDPG, n=1)
    obs = np.random.default_rng(1).normal(size=(5, OBS)).astype(np.float32)
    weights, _ = model.predict(obs, deterministic=True)
    logits = model.actor.mu[:-1](torch.as_tensor(obs)).detach()
    np.testing.assert_allclose(weights, torch.softmax(logits, dim=-1).numpy(), atol=1e-6)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("scalarization", ["alpha_weighted", "sum"])
def test_scalarization(scalarization):
    model = vector_model(VectorDDPG, n=1, scalarization=scalarization)
    q = torch.tensor([[1.0, 2.0, 3.0]])
    weights = torch.tensor([[0.2, 0.3, 0.5]])
    expected = 0.2 + 0.6 + 1.5 if scalarization == "alpha_weighted" else 6.0
    assert model.scalarize(q, 2 * weights - 1).item() == pytest.approx(expected)


def flat_critic(model, q):
    """Make Q(s, a) = q for every state and action (the critic carries no action signal)."""
    last = model.critic.q_networks[0][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.as_tensor(q, dtype=torch.float32))


def prior_optimum(q, prior, coef):
    """argmax_α Σ α_i q̃_i − λ KL(prior ‖ α) on the simplex: α_i = λ prior_i / (μ − q̃_i), Σ α = 1."""
    z = np.asarray(q) / np.std(q, ddof=1)
    lo, hi = z.max() + 1e-12, z.max() + coef + 1.0
    for _ in range(200):
        mu = (lo + hi) / 2
        lo, hi = (mu, hi) if (coef * prior / (mu - z)).sum() > 1 else (lo, mu)
    return coef * prior / (mu - z)


def test_without_the_prior_a_flat_critic_drives_the_actor_to_a_corner():
    """The collapse the prior term exists for: Σ α_i Q_i is linear in α, so its maximum is a vertex."""
    model = vector_model(VectorDDPG, learning_rate=0.01, prior=NATURAL, prior_coef=0.0)
    flat_critic(model, [5.0, 0.0, 0.0])
    obs = model.replay_buffer.sample(64).observations
    for _ in range(300):
        model.actor_step(obs)
    assert model.predict(obs.numpy(), deterministic=True)[0][:, 0].min() > 0.99


@pytest.mark.parametrize("coef", [0.3, 1.0])
def test_prior_term_holds_the_actor_at_its_interior_optimum(coef):
    model = vector_model(VectorDDPG, learning_rate=0.01, prior=NATURAL, prior_coef=coef)
    q = np.array([5.0, 0.0, 0.0])
    flat_critic(model, q)
    obs = model.replay_buffer.sample(64).observations
    for _ in range(300):
        model.actor_step(obs)
    weights = model.predict(obs.numpy(), deterministic=True)[0]
    optimum = prior_optimum(q, NATURAL, coef)
    np.testing.assert_allclose(weights, np.broadcast_to(optimum, weights.shape), atol=0.02)
    z = q / np.std(q, ddof=1)
    assert (weights >= NATURAL * coef / (coef + z.max() - z.min()) - 1e-3).all(), "the documented lower bound"


@pytest.mark.parametrize("gradient, winner", [("critic", 0), ("values", 2)])
def test_actor_gradient_through_the_critic_or_its_values(gradient, winner):
    """Q_i(s, a) = q_i + 4·a_0: the values favour domain 2, the critic's slope in its action input domain 0.
    DDPG's gradient follows the slope; ``actor_gradient: values`` follows the values."""
    model = vector_model(VectorDDPG, learning_rate=0.01, prior=NATURAL, prior_coef=0.3, actor_gradient=gradient)
    linear = torch.nn.Linear(OBS + K, K)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[:, OBS] = 4.0
        linear.bias.copy_(torch.tensor([0.0, 0.5, 1.0]))
    model.critic.q_networks[0] = torch.nn.Sequential(linear)
    obs = model.replay_buffer.sample(64).observations
    for _ in range(200):
        model.actor_step(obs)
    weights = model.predict(obs.numpy(), deterministic=True)[0].mean(axis=0)
    assert weights.argmax() == winner, weights


def test_values_gradient_needs_the_alpha_weighted_scalarisation():
    with pytest.raises(AgentError, match="alpha_weighted"):
        vector_model(VectorDDPG, scalarization="sum", actor_gradient="values")
    with pytest.raises(AgentError, match="critic, values"):
        vector_model(VectorDDPG, actor_gradient="q")


def test_prior_term_pulls_a_saturated_actor_back():
    """From a one-hot actor (softmax saturated) the KL gradient α − prior still moves the logits."""
    model = vector_model(VectorDDPG, learning_rate=0.01, prior=NATURAL, prior_coef=1.0)
    with torch.no_grad():
        model.actor.mu[-2].bias.copy_(torch.tensor([0.0, 0.0, 40.0]))  # α ≈ (0, 0, 1)
    flat_critic(model, [0.0, 0.0, 1.0])
    obs = model.replay_buffer.sample(64).observations
    for _ in range(300):
        model.actor_step(obs)
    assert model.predict(obs.numpy(), deterministic=True)[0][:, :2].min() > 0.05


def test_non_finite_critic_loss_stops_before_writing_weights():
    model = vector_model(VectorDDPG)
    with torch.no_grad():
        for p in model.critic_target.parameters():
            p.fill_(float("nan"))
    critic = params(model.critic)
    with pytest.raises(NonFiniteLossError, match="critic loss"):
        model.train(1, 16)
    assert same(critic, params(model.critic))


def test_replay_buffer_rejects_a_non_finite_reward_and_averages_with_importance_correction():
    rng = np.random.default_rng(0)
    buffer = VectorReplayBuffer(10, spaces.Box(-1, 1, (OBS,)), spaces.Box(0, 1, (K,)), reward_ema=0.5)
    obs = np.zeros((1, OBS), np.float32)
    with pytest.raises(ValueError, match="finite"):
        buffer.add(obs, obs, np.zeros((1, K)), np.zeros(1), np.zeros(1), [info_for(rng, [1.0, float("nan"), 0.0])])
    r1, p1, r2, p2 = (
        np.array([1.0, 2.0, 3.0]),
        np.array([0.5, 0.25, 0.25]),
        np.array([-1.0, 0.0, 1.0]),
        np.array([0.2, 0.4, 0.4]),
    )
    buffer.add(obs, obs, np.zeros((1, K)), np.zeros(1), np.zeros(1), [info_for(rng, r1, p1)])
    buffer.add(obs, obs, np.zeros((1, K)), np.zeros(1), np.zeros(1), [info_for(rng, r2, p2)])
    first = 0.5 * r1 / p1
    np.testing.assert_allclose(buffer.rewards[:2, 0], [first, 0.5 * first + 0.5 * r2 / p2], rtol=1e-6)


def test_cosine_learning_rate():
    lr = cosine_schedule(0.01, 0.001)
    assert (lr(1.0), lr(0.5), lr(0.0)) == pytest.approx((0.01, 0.0055, 0.001))


# -- AC-ODM agent ------------------------------------------------------------------------------------
def test_warmup_follows_natural_weights_and_fits_actor_and_critic():
    rng = np.random.default_rng(0)
    agent = ACODMAgent(make_spec(), warmup_steps=150, reward_ema=None, gamma=0.5, **SMALL)
    probe = rng.normal(size=(20, OBS)).astype(np.float32)
    start_error = np.abs(agent.model.predict(probe, deterministic=True)[0] - NATURAL).mean()
    reward = np.array([0.1, 0.2, 0.3])
    obs = rng.normal(size=OBS).astype(np.float32)
    actions = []
    for _ in range(150):
        action = agent.act(obs)
        actions.append(action)
        nxt = rng.normal(size=OBS).astype(np.float32)
        agent.observe(obs, action, 0.0, nxt, info_for(rng, reward))
        stats = agent.update()
        obs = nxt
    actions = np.array(actions)
    assert np.abs(actions - NATURAL).max() < 0.1 and np.abs(actions.mean(0) - NATURAL).max() < 0.01
    assert actions.std(0).min() > 0.005, "warm-up adds N(0, 0.02) noise"
    assert "clone_loss" in stats and "actor_loss" not in stats
    end_error = np.abs(agent.model.predict(probe, deterministic=True)[0] - NATURAL).mean()
    assert end_error < 0.02 and end_error < start_error / 5
    q = agent.model.critic(
        torch.as_tensor(probe), torch.as_tensor(2 * NATURAL[None].repeat(20, 0) - 1, dtype=torch.float32)
    )[0]
    np.testing.assert_allclose(q.detach().mean(0).numpy(), 1.5 * reward, atol=0.05)
    agent.observe(obs, agent.act(obs), 0.0, obs, info_for(rng, reward))
    assert "actor_loss" in agent.update(), "after warm-up: one actor–critic update per step"


def test_odm_behaviour_during_warmup():
    agent = ACODMAgent(make_spec(), warmup_steps=5, warmup_behaviour="odm", **SMALL)
    rng = np.random.default_rng(0)
    drive(agent, 5, rng)
    assert agent.behaviour.t == 5
    np.testing.assert_allclose(agent.act(np.zeros(OBS, np.float32)).sum(), 1.0)


def test_exploration_noise_after_warmup():
    obs = np.zeros(OBS, np.float32)
    agent = ACODMAgent(make_spec(), warmup_steps=0, **SMALL)
    greedy = agent.model.predict(obs, deterministic=True)[0]
    actions = np.array([agent.act(obs) for _ in range(50)])
    assert 0.005 < np.abs(actions - greedy).mean() < 0.05
    agent = ACODMAgent(make_spec(), warmup_steps=0, exploration="authors", **SMALL)
    assert np.abs(agent.act(obs) - greedy).max() < 0.002


@pytest.mark.parametrize("phase", ["warmup", "gaussian"])
def test_noise_that_leaves_no_weight_positive_falls_back_to_the_noise_free_weights(phase):
    """A huge noise (σ = 10) often makes every weight negative: the env would refuse that action."""
    obs = np.zeros(OBS, np.float32)
    if phase == "warmup":
        agent = ACODMAgent(make_spec(), warmup_steps=1000, warmup_noise=10.0, **SMALL)
        clean = NATURAL
    else:
        agent = ACODMAgent(make_spec(), warmup_steps=0, exploration_noise=10.0, **SMALL)
        clean = agent.model.predict(obs, deterministic=True)[0]
    actions = np.array([agent.act(obs) for _ in range(100)])
    np.testing.assert_allclose(actions.sum(axis=1), 1.0)
    fell_back = np.all(np.isclose(actions, clean, atol=1e-6), axis=1)
    assert 0 < fell_back.sum() < 100  # about 1/8 of the draws: all three weights + N(0, 100) below 0


@pytest.mark.parametrize("cls", [ACODMAgent, ACODMTD3Agent])
def test_save_load_round_trip_gives_identical_actions(cls, tmp_path):
    rng = np.random.default_rng(0)
    agent = cls(make_spec(), warmup_steps=5, **SMALL)
    obs = drive(agent, 12, rng)
    agent.save(tmp_path / "agent.pt")
    clone = cls(make_spec(), warmup_steps=5, seed=7, **SMALL)
    clone.load(tmp_path / "agent.pt")
    assert clone.t == agent.t and clone.model.replay_buffer.pos == agent.model.replay_buffer.pos
    for _ in range(3):
        np.testing.assert_array_equal(agent.act(obs), clone.act(obs))
    # both keep learning identically from the same transition (same replay and optimiser state)
    torch.manual_seed(0), np.random.seed(0)
    agent.observe(obs, agent.act(obs), 0.0, obs, info_for(np.random.default_rng(1)))
    agent.update()
    torch.manual_seed(0), np.random.seed(0)
    clone.observe(obs, clone.act(obs), 0.0, obs, info_for(np.random.default_rng(1)))
    clone.update()
    np.testing.assert_array_equal(agent.act(obs), clone.act(obs))


@pytest.mark.parametrize("cls", [TD3Agent, SACAgent])
def test_stock_agent_save_load_round_trip(cls, tmp_path):
    agent = cls(make_spec(), learning_starts=2, batch_size=8)
    obs = drive(agent, 6, np.random.default_rng(0))
    agent.save(tmp_path / "agent.pt")
    clone = cls(make_spec(), seed=3, learning_starts=2, batch_size=8)
    clone.load(tmp_path / "agent.pt")
    np.testing.assert_array_equal(
        agent.model.predict(obs, deterministic=True)[0], clone.model.predict(obs, deterministic=True)[0]
    )
    assert clone.model.replay_buffer.pos == 6
    greedy = clone.greedy(obs)  # what it plays frozen: the deterministic action on the env's [0, 1]^k
    np.testing.assert_array_equal(greedy, clone._to_weights(clone.model.predict(obs, deterministic=True)[0]))
    np.testing.assert_array_equal(greedy, clone.greedy(obs))


def test_non_finite_actor_output_is_a_clear_error():
    agent = ACODMAgent(make_spec(), warmup_steps=0, **SMALL)
    with torch.no_grad():
        for p in agent.model.actor.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ValueError, match="Agent 'acodm' produced an invalid action.*NaN"):
        agent.act(np.zeros(OBS, np.float32))


def test_bad_spaces_and_options_are_refused():
    spec = make_spec()
    spec.action_space = spaces.Box(0.0, 1.0, (K + 1,), np.float32)
    with pytest.raises(ValueError, match="one weight per domain"):
        ACODMAgent(spec)
    with pytest.raises(ConfigError, match="widht"):
        make_agent(AgentConfig(name="acodm", options={"widht": 8}), make_spec())
    with pytest.raises(ConfigError, match="exploration"):
        ACODMAgent(make_spec(), exploration="boltzmann")
    with pytest.raises(ValueError, match="scalarization"):
        ACODMAgent(make_spec(), scalarization="max")
    with pytest.raises(ValueError, match="prior_coef"):
        ACODMAgent(make_spec(), prior_coef=-1.0)
    with pytest.raises(ConfigError, match="prior"):
        ACODMAgent(make_spec(), prior="doremi")
    with pytest.raises(ConfigError, match="path"):
        make_agent(AgentConfig(name="frozen"), make_spec())


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("w.json", b'{"a": 0.5, "b": ', "is not valid UTF-8 JSON"),
        ("w.json", b"", "is not valid UTF-8 JSON"),
        ("w.yaml", b"a: [0.5\nb: 0.3\n", "is not valid UTF-8 YAML"),
        ("w.yaml", b"a: 0.5\nb: caf\xe9\n", "is not valid UTF-8 YAML"),
        ("w.yaml", b"just some text\n", "holds 'just some text': give a list of weights or a {domain: weight} mapping"),
        ("w.yaml", b"", "holds nothing"),
        ("w.json", b'["x", 1, 2]', "are not all numbers"),
        ("w.json", b'{"a": "lots", "b": 1, "c": 2}', "are not all numbers"),
        ("w.json", b'{"a": 1, "b": 1}', r"miss domains \['c'\]"),
    ],
)
def test_static_weights_file_errors_name_the_file(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        make_agent(AgentConfig(name="static", weights=str(path)), make_spec())
    assert f"Weights file {path}" in str(err.value)
    assert re.search(fragment, str(err.value)), str(err.value)


def test_a_schedule_agent_replays_a_runs_mixture_and_resumes_where_it_stopped(tmp_path):
    from acodm_gym.agents.static import write_mixture

    weights = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]])
    path = write_mixture(tmp_path / "mixture.json", ["a", "b", "c"], [1, 2, 3, 4], weights)
    agent = make_agent(AgentConfig(name="schedule", weights=str(path)), make_spec())
    obs = np.zeros(OBS, np.float32)
    np.testing.assert_allclose([agent.act(obs) for _ in range(2)], weights[:2])  # step by step as the run played
    agent.save(tmp_path / "agent.pt")
    again = make_agent(AgentConfig(name="schedule", weights=str(path)), make_spec())
    again.load(tmp_path / "agent.pt")
    np.testing.assert_allclose([again.act(obs) for _ in range(3)], weights[[2, 3, 3]])  # on from step 3; then held
    inline = {"steps": [1, 3], "weights": [{"a": 1, "b": 0, "c": 0}, [0, 0, 1]]}  # linear in between
    between = make_agent(AgentConfig(name="schedule", weights=inline), make_spec())
    np.testing.assert_allclose([between.act(obs) for _ in range(2)], [[1, 0, 0], [0.5, 0, 0.5]])


@pytest.mark.parametrize(
    "weights, fragment",
    [
        (None, "needs agent.weights"),
        ({"steps": [1, 2], "weights": [[1, 0, 0]]}, "is not a schedule"),
        ({"steps": [3, 2], "weights": [[1, 0, 0], [0, 1, 0]]}, "must increase"),
    ],
)
def test_a_bad_schedule_is_refused_before_any_work(weights, fragment):
    from acodm_gym.config import load_config
    from acodm_gym.runs.runner import prepare_config

    with pytest.raises(ConfigError, match=fragment):
        prepare_config(load_config(None, {"agent": {"name": "schedule", "weights": weights}}))


def test_a_run_seeds_its_agent_unless_the_agent_seed_is_given():
    """A method's seeds vary its agent too (networks, exploration), as SB3 and CleanRL seed one run with one seed."""
    from acodm_gym.config import load_config
    from acodm_gym.runs.runner import prepare_config

    def prepared(run_seed, **options):
        return prepare_config(
            load_config(None, {"agent": {"name": "acodm", "options": {**SMALL, **options}}, "run": {"seed": run_seed}})
        )

    def actor(cfg):
        return [p.detach().clone() for p in make_agent(cfg.agent, make_spec()).model.actor.parameters()]

    assert prepared(3).agent.options["seed"] == 3
    assert prepared(3, seed=7).agent.options["seed"] == 7  # given: kept
    assert (
        "seed"
        not in prepare_config(load_config(None, {"agent": {"name": "uniform"}, "run": {"seed": 3}})).agent.options
    )
    one, again, other = actor(prepared(1)), actor(prepared(1)), actor(prepared(2))
    assert all(torch.equal(a, b) for a, b in zip(one, again))
    assert not all(torch.equal(a, b) for a, b in zip(one, other))


# -- frozen actor (proxy → target) ------------------------------------------------------------------
def test_frozen_actor_acts_like_the_saved_actor_and_refuses_other_envs(tmp_path):
    rng = np.random.default_rng(0)
    agent = ACODMAgent(make_spec(), warmup_steps=3, **SMALL)
    obs = drive(agent, 8, rng)
    path = tmp_path / "acodm.pt"
    agent.save(path)
    frozen = FrozenActorAgent(make_spec(), str(path))
    assert not FrozenActorAgent.needs_reward
    np.testing.assert_allclose(frozen.act(obs), agent.model.predict(obs, deterministic=True)[0], atol=1e-6)

    with pytest.raises(ValueError, match="domains"):
        FrozenActorAgent(make_spec(domains=("a", "b", "z")), str(path))
    with pytest.raises(ValueError, match="observation_size"):
        FrozenActorAgent(make_spec(obs_size=OBS + 2), str(path))
    with pytest.raises(ValueError, match="one weight per domain"):
        spec = make_spec()
        spec.action_space = spaces.Box(0.0, 1.0, (K + 1,), np.float32)
        FrozenActorAgent(spec, str(path))

    corrupted = tmp_path / "corrupted.pt"
    corrupted.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match="corrupted"):
        FrozenActorAgent(make_spec(), str(corrupted))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file" * 10)
    with pytest.raises(ValueError, match="corrupted"):
        FrozenActorAgent(make_spec(), str(garbage))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a saved agent"):
        FrozenActorAgent(make_spec(), str(tmp_path / "foreign.pt"))
    EXP3Agent(make_spec()).save(tmp_path / "odm.pt")
    with pytest.raises(ValueError, match="frozen actor must be saved by"):
        FrozenActorAgent(make_spec(), str(tmp_path / "odm.pt"))
    with pytest.raises(FileNotFoundError):
        FrozenActorAgent(make_spec(), str(tmp_path / "missing.pt"))
    wider = ACODMAgent(make_spec(), layers=1, width=64)
    with pytest.raises(ValueError, match="hidden sizes"):
        wider.load(path)


# -- EXP3 (ODM) --------------------------------------------------------------------------------------
def hand_policy(rewards, t, k=K):
    """π_t = (1 − kε_t)·exp(ε_{t−1}R̂)/Σ + ε_t, written out without any stabilisation."""
    eps = [1 / k] + [min(1 / k, math.sqrt(math.log(k) / (k * s))) for s in range(1, t + 1)]
    w = np.exp(eps[t - 1] * np.asarray(rewards))
    return (1 - k * eps[t]) * w / w.sum() + eps[t]


def test_exp3_probabilities_match_a_hand_computation():
    agent = EXP3Agent(make_spec())
    assert not agent.needs_reward and not agent.exploration_floor
    losses = [
        np.array([5.0, 6.0, 7.0]),
        np.array([4.0, 9.0, 2.0]),
        np.array([3.0, 3.0, 8.0]),
        np.array([6.0, 1.0, 1.0]),
        np.array([2.0, 7.0, 4.0]),
    ]
    counts = [np.array([2, 0, 3]), np.array([1, 4, 0]), np.array([3, 3, 3]), np.array([0, 5, 1]), np.array([2, 2, 2])]
    expected_rewards = np.zeros(K)
    np.testing.assert_allclose(agent.act(None), np.full(K, 1 / K))
    for t, (loss, count) in enumerate(zip(losses, counts), start=1):
        pi = agent.act(None)
        np.testing.assert_allclose(pi, hand_policy(expected_rewards, t), rtol=1e-12)
        assert pi.sum() == pytest.approx(1.0)
        agent.observe(None, pi, 0.0, None, {"domain_counts": count, "domain_losses": loss, "sampling_probs": pi})
        expected_rewards = expected_rewards + np.where(count > 0, loss / 10 / pi, 0.0)
        np.testing.assert_allclose(agent.rewards, expected_rewards, rtol=1e-12)
    # t = 6 > K ln K: ε < 1/K, so the rewards now shape π
    assert agent.epsilon(6) < 1 / K
    assert not np.allclose(agent.act(None), 1 / K)


def test_exp3_is_stable_for_huge_rewards():
    agent = EXP3Agent(make_spec())
    agent.t = 100
    agent.rewards = np.array([1e9, 0.0, -1e9])
    pi = agent.probabilities()
    eps = agent.epsilon(101)
    assert np.all(np.isfinite(pi)) and pi.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(pi, [1 - 2 * eps, eps, eps])


def test_exp3_smoothed_mean_and_warmup():
    agent = EXP3Agent(make_spec(), updater="smoothed_mean", warmup_steps=1)
    np.testing.assert_allclose(agent.act(None), NATURAL)
    agent.rewards = np.array([2.0, 4.0, 6.0])
    info = {"domain_counts": np.array([1, 0, 1]), "domain_losses": np.array([1.0, 2.0, 0.5]), "sampling_probs": NATURAL}
    agent.observe(None, NATURAL, 0.0, None, info)
    np.testing.assert_allclose(agent.rewards, [1 + 0.5 * math.e, 4.0, 3 + 0.5 * math.exp(0.5)])
    assert not np.allclose(agent.act(None), NATURAL)


# -- vector SAC on the simplex -----------------------------------------------------------------------
def simplex_grid(n):
    """Midpoints of an n × n grid over (α_1, α_2) inside the open 2-simplex, and the cell area."""
    centres = (np.arange(n) + 0.5) / n
    a1, a2 = np.meshgrid(centres, centres, indexing="ij")
    inside = a1 + a2 < 1
    w = np.stack([a1[inside], a2[inside], 1 - a1[inside] - a2[inside]], axis=1)
    return torch.as_tensor(w), 1.0 / n**2


@pytest.mark.parametrize("mean, std", [([0.3, -0.5], [0.8, 1.2]), ([1.0, 0.5], [0.4, 0.6])])
def test_logistic_normal_density_integrates_to_one_on_the_simplex(mean, std):
    dist = LogisticNormalDistribution(3).proba_distribution(
        torch.tensor([mean], dtype=torch.float64), torch.log(torch.tensor([std], dtype=torch.float64))
    )
    weights, cell = simplex_grid(1500)
    log_p = dist.log_prob(2 * weights - 1)
    assert torch.exp(log_p).sum().item() * cell == pytest.approx(1.0, abs=1e-2)
    # without the −Σ ln α_i correction the Gaussian's density in logit space is not a density on the simplex
    uncorrected = log_p + torch.log(weights).sum(dim=1)
    assert abs(torch.exp(uncorrected).sum().item() * cell - 1.0) > 0.1


def test_logistic_normal_samples_lie_on_the_simplex_with_the_log_density_of_their_logits():
    dist = LogisticNormalDistribution(4).proba_distribution(torch.zeros(1000, 3), torch.zeros(1000, 3))
    actions = dist.sample()
    weights = (actions + 1) / 2
    assert (weights > 0).all() and torch.allclose(weights.sum(dim=1), torch.ones(1000))
    torch.testing.assert_close(dist.log_prob(actions), dist.log_prob(actions, dist.logits), atol=1e-3, rtol=1e-4)
    # the mode is the image of the Gaussian's mean: softmax(0, 0, 0, 0)
    torch.testing.assert_close((dist.mode() + 1) / 2, torch.full((1000, 4), 0.25))


def sac_model(**kwargs):
    return vector_model(VectorSAC, target_entropy=-2.0, **kwargs)


def test_vector_sac_actor_step_moves_the_mean_towards_the_domain_the_critic_favours():
    model = sac_model(learning_rate=0.01, prior=NATURAL, prior_coef=0.3, ent_coef=0.01)
    flat_critic(model, [5.0, 0.0, 0.0])
    obs = model.replay_buffer.sample(64).observations
    before, critic = model.predict(obs.numpy(), deterministic=True)[0][:, 0].mean(), params(model.critic)
    for _ in range(100):
        model.actor_step(obs, model.ent_coef_tensor)
    after = model.predict(obs.numpy(), deterministic=True)[0]
    assert after[:, 0].mean() > before + 0.2, (before, after[:, 0].mean())
    assert same(critic, params(model.critic)), "the actor loss must not move the critic"


@pytest.mark.parametrize("target, direction", [(5.0, 1), (-50.0, -1)])
def test_vector_sac_temperature_rises_below_the_target_entropy_and_falls_above(target, direction):
    model = vector_model(VectorSAC, target_entropy=target, ent_coef="auto_0.1")
    before = model.log_ent_coef.item()
    model.train(1, 16)
    assert direction * (model.log_ent_coef.item() - before) > 0


def test_vector_sac_td_target_is_per_component_min_over_critics_at_policy_samples():
    model = sac_model(n=1, gamma=0.5)
    for net, bias in zip(model.critic_target.q_networks, ([1.0, 5.0, 2.0], [3.0, 0.0, 4.0])):
        with torch.no_grad():
            net[-1].weight.zero_()
            net[-1].bias.copy_(torch.tensor(bias))
    rewards = torch.ones(2, K)
    dones = torch.tensor([[0.0], [1.0]])
    batch = ReplayBufferSamples(torch.randn(2, OBS), torch.zeros(2, K), torch.randn(2, OBS), dones, rewards)
    torch.testing.assert_close(model.td_target(batch), rewards + 0.5 * (1 - dones) * torch.tensor([1.0, 0.0, 2.0]))


def test_vector_sac_agent_clones_the_behaviour_then_learns_towards_the_rewarded_domain():
    """Warm-up fits the policy's mean to the natural weights (maximum likelihood); then a reward that
    favours domain 0 raises the greedy weight on it."""
    rng = np.random.default_rng(0)
    agent = VectorSACAgent(make_spec(), warmup_steps=60, reward_ema=None, prior_coef=0.3, gamma=0.5, **SMALL)
    probe = rng.normal(size=(20, OBS)).astype(np.float32)
    drive(agent, 60, rng, reward=[1.0, 0.0, 0.0])
    warm = agent.model.predict(probe, deterministic=True)[0]
    assert np.abs(warm - NATURAL).max() < 0.05, warm.mean(0)
    stats = {}
    for _ in range(60):
        obs = rng.normal(size=OBS).astype(np.float32)
        action = agent.act(obs)
        agent.observe(
            obs, action, float(action[0]), rng.normal(size=OBS).astype(np.float32), info_for(rng, [1.0, 0.0, 0.0])
        )
        stats = agent.update()
    assert {"actor_loss", "ent_coef", "td_error", "weight_entropy"} <= stats.keys()
    learned = agent.model.predict(probe, deterministic=True)[0]
    assert learned[:, 0].mean() > warm[:, 0].mean() + 0.05, (warm[:, 0].mean(), learned[:, 0].mean())


def test_frozen_vector_sac_actor_acts_like_its_greedy_policy(tmp_path):
    agent = VectorSACAgent(make_spec(), warmup_steps=3, **SMALL)
    obs = drive(agent, 8, np.random.default_rng(0))
    agent.save(tmp_path / "sac.pt")
    frozen = FrozenActorAgent(make_spec(), str(tmp_path / "sac.pt"))
    np.testing.assert_allclose(frozen.act(obs), agent.model.predict(obs, deterministic=True)[0], atol=1e-6)


def test_vector_sac_explores_by_sampling_its_policy():
    agent = VectorSACAgent(make_spec(), warmup_steps=0, **SMALL)
    obs = np.zeros(OBS, np.float32)
    actions = np.array([agent.act(obs) for _ in range(20)])
    np.testing.assert_allclose(actions.sum(axis=1), 1.0)
    assert actions.std(axis=0).min() > 1e-3
    with pytest.raises(ConfigError, match="exploration"):
        ACODMAgent(make_spec(), exploration="policy")  # deterministic actors have no policy to sample


# -- save, load, resume bit for bit -------------------------------------------------------------------
def _tree_equal(a, b):
    if torch.is_tensor(a):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_tree_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tree_equal(x, y) for x, y in zip(a, b))
    return a == b


def _steps(agent, obs, rng_seed, n):
    """n runner steps with the global RNGs seeded per step, so two agents see the same randomness."""
    rng, stats = np.random.default_rng(rng_seed), []
    for t in range(n):
        torch.manual_seed(t), np.random.seed(t)
        action = agent.act(obs)
        nxt = rng.normal(size=OBS).astype(np.float32)
        info = info_for(rng)
        agent.observe(obs, action, float(action @ info["vector_reward"]), nxt, info)
        stats.append(agent.update())
        obs = nxt
    return stats


RESUMABLE = {
    VectorSACAgent: dict(warmup_steps=5, gamma=0.5, holdout_every=2, target_weights=[0.2, 0.3, 0.5], **SMALL),
    DoGEAgent: dict(target_weights=[0.2, 0.3, 0.5], floor=0.1),
    ACODMTD3Agent: dict(warmup_steps=5, gamma=0.5, holdout_every=2, target_weights=[0.2, 0.3, 0.5], **SMALL),
    ACODMAgent: dict(
        actor="anchored",
        anchor="natural",
        warmup_steps=5,
        gamma=0.5,
        holdout_every=2,
        target_weights=[0.2, 0.3, 0.5],
        **SMALL,
    ),
    ACODMReleasedAgent: dict(warmup_steps=5, gamma=0.5, holdout_every=2, **SMALL),  # its actor never moves
    AioliAgent: dict(lp_steps=2, update_steps=3),
    ADOAgent: dict(ignore_steps=2, start_step=10, update_interval=5, savgol_window=5),
}


@pytest.mark.parametrize("cls", list(RESUMABLE), ids=lambda c: c.name)
def test_saved_agent_resumes_bit_for_bit(cls, tmp_path):
    """Save after 20 steps, load into a fresh agent: the next 10 steps give the same stats and state."""
    agent = cls(make_spec(), **RESUMABLE[cls])
    obs = drive(agent, 20, np.random.default_rng(0))
    agent.save(tmp_path / "agent.pt")
    seeded = "seed" in {f.name for f in dataclasses.fields(cls.Options)}
    clone = cls(make_spec(), **RESUMABLE[cls], **({"seed": 7} if seeded else {}))
    clone.load(tmp_path / "agent.pt")
    assert _tree_equal(agent.state_dict(), clone.state_dict())
    ours, theirs = _steps(agent, obs, 1, 10), _steps(clone, obs, 1, 10)
    assert ours == theirs
    assert any("target_cosine" in s for s in ours) == ("target_weights" in RESUMABLE[cls])
    if issubclass(cls, ActorCriticAgent):
        assert any("q_return_spearman" in s for s in ours), "the held-out transitions' returns became known"
    assert _tree_equal(agent.state_dict(), clone.state_dict())


# -- online DoGE ------------------------------------------------------------------------------------
def test_doge_moves_weight_towards_the_domain_with_the_larger_reward():
    """Three steps against a hand computation of r̂ ← ξ r̂ + (1 − ξ) W / p, r̃ = (r̂ − mean) / std,
    α ← normalise(α ⊙ exp(η r̃))."""
    agent = DoGEAgent(make_spec(), eta=0.1, reward_ema=0.5)
    assert agent.needs_reward
    probs = np.array([0.4, 0.3, 0.3])
    rewards = [np.array([3.0, 1.0, 2.0]), np.array([2.0, 0.5, 1.0]), np.array([4.0, 1.0, 0.0])]
    alpha, ema = NATURAL.copy(), np.zeros(K)
    for w in rewards:
        np.testing.assert_allclose(agent.act(None), alpha, rtol=1e-12)
        agent.observe(None, alpha, 0.0, None, {"vector_reward": w, "sampling_probs": probs})
        agent.update()
        ema = 0.5 * ema + 0.5 * w / probs
        step = np.exp(0.1 * (ema - ema.mean()) / ema.std())
        alpha = alpha * step / (alpha * step).sum()
        np.testing.assert_allclose(agent.weights, alpha, rtol=1e-12)
    assert agent.weights[0] > NATURAL[0] + 0.05 and agent.weights[1] < NATURAL[1]
    assert agent.update() == {}, "no new reward, no step"


def test_doge_step_is_scale_free_and_its_floor_holds():
    infos = [{"vector_reward": np.array([1.0, -1.0, 0.0]) * 1e-6, "sampling_probs": np.full(K, 1 / 3)}] * 300
    small, large = DoGEAgent(make_spec()), DoGEAgent(make_spec())
    floored = DoGEAgent(make_spec(), eta=0.5, floor=0.06)
    for info in infos:
        for agent, scale in ((small, 1.0), (large, 1e9), (floored, 1.0)):
            agent.observe(None, agent.act(None), 0.0, None, {**info, "vector_reward": info["vector_reward"] * scale})
            agent.update()
    np.testing.assert_allclose(small.weights, large.weights, rtol=1e-9)
    assert small.weights[0] > 0.9 > NATURAL[0]
    assert floored.weights.min() >= 0.06 / K - 1e-12 and floored.weights[1] < 0.03


def test_doge_refuses_bad_options():
    for bad, match in (
        ({"eta": 0}, "eta"),
        ({"normalize": "max"}, "normalize"),
        ({"floor": 1.0}, "floor"),
        ({"init": "doremi"}, "init"),
        ({"target_weights": [1, 2]}, "target_weights"),
    ):
        with pytest.raises((ConfigError, ValueError), match=match):
            DoGEAgent(make_spec(), **bad)
    with pytest.raises(ConfigError, match="etta"):
        make_agent(AgentConfig(name="doge", options={"etta": 1.0}), make_spec())


def test_the_docs_list_every_agent_option_as_declared():
    """docs/agents.md's option table is generated from the ``Options`` dataclasses; regenerate it after a change."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "agents.md").read_text()
    start, end = (
        "<!-- agent-options: generated by acodm_gym.agents.options_markdown(); tests/test_agents.py checks it -->\n",
        "<!-- /agent-options -->",
    )
    assert start in page and end in page
    listed = page.split(start)[1].split(end)[0]
    assert listed == options_markdown(), (
        "docs/agents.md's agent options differ from the declarations: paste the output of "
        "python -c 'import acodm_gym.agents as a; print(a.options_markdown(), end=\"\")' between the markers."
    )
    for name in ("acodm", "doge", "odm", "ppo"):  # every declared option appears under its agent
        row = next(line for line in listed.splitlines() if f"`{name}`" in line.split("|")[1])
        assert all(
            f"`{f.name}=" in row for f in dataclasses.fields(AGENTS[name].Options) if f.name != "algorithm_kwargs"
        )


def test_agent_options_are_merged_like_a_config_section():
    """Types are coerced (YAML reads 1e-3 as a string), a typo is answered with the closest option."""
    options = ACODMAgent.make_options({"width": "64", "lr_start": "1e-3", "warmup_steps": 5})
    assert (options.width, options.lr_start, options.warmup_steps) == (64, 0.001, 5)
    with pytest.raises(ConfigError, match=r"agent.options.widht'. Did you mean 'agent.options.width'"):
        ACODMAgent.make_options({"widht": 64})
    with pytest.raises(ConfigError, match=r"agent.options.layers' got 'two'; expected int"):
        make_agent(AgentConfig(name="acodm", options={"layers": "two"}), make_spec())
    sb3 = TD3Agent.make_options({"gamma": 0.5, "batch_size": "32"})  # an SB3 keyword passes through as given
    assert sb3.algorithm_kwargs == {"gamma": 0.5} and sb3.batch_size == 32
    with pytest.raises(ConfigError, match="Did you mean 'agent.options.batch_size'"):
        TD3Agent.make_options({"batch_sise": 32})


# -- the anchored actor ------------------------------------------------------------------------------
@pytest.mark.parametrize("anchor", ["uniform", "natural"])
def test_anchored_actor_starts_at_its_anchor_and_warmup_keeps_it_there(anchor):
    """α = softmax(log π₀ + a(s)) with a(s) = 0 at the start, whatever the state; warm-up fits the critic
    only, and its behaviour perturbs π₀."""
    agent = ACODMAgent(make_spec(), actor="anchored", anchor=anchor, min_weight=0.0, warmup_steps=8, **SMALL)
    pi0 = NATURAL if anchor == "natural" else np.full(K, 1 / K)
    obs = np.random.default_rng(1).normal(size=(5, OBS)).astype(np.float32)
    np.testing.assert_allclose(agent.model.predict(obs, deterministic=True)[0], np.tile(pi0, (5, 1)), atol=1e-6)
    critic = params(agent.model.critic)
    rng = np.random.default_rng(0)
    actions = []
    for _ in range(8):
        actions.append(agent.act(obs[0]))
        info = info_for(rng)
        agent.observe(obs[0], actions[-1], 0.0, obs[1], info)
        agent.update()
    np.testing.assert_allclose(agent.greedy(obs[2]), pi0, atol=1e-6)
    assert not same(critic, params(agent.model.critic)), "warm-up fits the critic"
    assert np.abs(np.mean(actions, axis=0) - pi0).max() < 0.03


def test_anchored_actor_floor_and_bad_options():
    agent = ACODMAgent(make_spec(), actor="anchored", anchor="natural", min_weight=0.1, **SMALL)
    expected = (1 - K * 0.1) * NATURAL + 0.1
    np.testing.assert_allclose(agent.greedy(np.zeros(OBS, np.float32)), expected, atol=1e-6)
    for bad, match in (({"actor": "dirichlet"}, "actor"), ({"anchor": "doge"}, "anchor"), ({"min_weight": 0.4}, "1/k")):
        with pytest.raises(ConfigError, match=match):
            ACODMAgent(make_spec(), **bad, **SMALL)
    assert not issubclass(VectorSACAgent, ACODMAgent)  # they share the loop (ActorCriticAgent), not DDPG's agent
    with pytest.raises(ConfigError, match="Unknown config key 'agent.options.actor'"):  # no anchored form
        VectorSACAgent(make_spec(), actor="anchored", **SMALL)
    with pytest.raises(ConfigError, match="agent.options.actor='anchored' is not supported; choose one of softmax"):
        ACODMReleasedAgent(make_spec(), actor="anchored", **SMALL)


def _log_weight_step(actor: str, optimizer=torch.optim.Adam) -> np.ndarray:
    """Δ ln α after one actor step from α = π₀ under a flat critic Q = (0, 1, 1): domains 1 (2 %) and 2
    (38 %) have the same value gap, 0.6, above the mixture's average."""
    pi0 = np.array([0.6, 0.02, 0.38])
    anchored = {"anchor": pi0, "min_weight": 0.0} if actor == "anchored" else {}
    model = vector_model(
        VectorDDPG,
        learning_rate=0.01,
        prior=NATURAL,
        prior_coef=0.0,
        actor_gradient="values",
        policy_kwargs={"optimizer_class": optimizer, **anchored},
    )
    if actor == "softmax":  # the paper's actor, started at the same weights
        with torch.no_grad():
            model.actor.mu[-2].weight.zero_()
            model.actor.mu[-2].bias.copy_(torch.as_tensor(np.log(pi0), dtype=torch.float32))
    flat_critic(model, [0.0, 1.0, 1.0])
    obs = model.replay_buffer.sample(32).observations
    before = model.predict(obs.numpy(), deterministic=True)[0]
    np.testing.assert_allclose(before, np.tile(pi0, (32, 1)), atol=1e-6)
    model.actor_step(obs)
    return (np.log(model.predict(obs.numpy(), deterministic=True)[0]) - np.log(before)).mean(axis=0)


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.SGD], ids=["adam", "sgd"])
def test_anchored_step_moves_a_rare_domain_as_much_as_a_common_one(optimizer):
    """Mirror descent: the same value gap moves ln α_i by the same amount whatever α_i. The paper's softmax
    actor (plain gradient steps) moves the rare domain's log-weight far less than the common one's."""
    step = _log_weight_step("anchored", optimizer)
    assert step[1] > 0 and step[0] < 0
    np.testing.assert_allclose(step[1], step[2], rtol=1e-4)
    if optimizer is torch.optim.SGD:
        paper = _log_weight_step("softmax", optimizer)
        assert 0 < paper[1] < 0.5 * paper[2], paper


def test_frozen_anchored_actor_acts_like_the_saved_actor(tmp_path):
    agent = ACODMAgent(make_spec(), actor="anchored", anchor="natural", warmup_steps=3, **SMALL)
    obs = drive(agent, 10, np.random.default_rng(0))
    agent.save(tmp_path / "agent.pt")
    frozen = FrozenActorAgent(make_spec(), str(tmp_path / "agent.pt"))
    np.testing.assert_allclose(frozen.act(obs), agent.greedy(obs), atol=1e-6)
    assert np.abs(agent.greedy(obs) - NATURAL).max() > 1e-3, "the actor moved off its anchor"


# -- acodm-released -----------------------------------------------------------------------------------
def test_acodm_released_never_moves_its_actor():
    """The authors' code steps the critic's optimiser after the actor loss: the actor stays at its random
    initialisation through warm-up (ODM's smoothed mean) and after it, while the critic learns."""
    agent = ACODMReleasedAgent(make_spec(), warmup_steps=5, **SMALL)
    assert isinstance(agent.behaviour, EXP3Agent) and agent.behaviour.updater == "smoothed_mean"
    actor, critic = params(agent.model.actor), params(agent.model.critic)
    obs = drive(agent, 25, np.random.default_rng(0))
    assert agent.t == 25
    assert same(actor, params(agent.model.actor))
    for initial, target in zip(actor, params(agent.model.actor_target)):  # Polyak averages of a constant
        torch.testing.assert_close(initial, target)
    assert not same(critic, params(agent.model.critic))
    fresh = ACODMReleasedAgent(make_spec(), warmup_steps=5, **SMALL)  # the same seed: the same random actor
    np.testing.assert_array_equal(agent.greedy(obs), fresh.greedy(obs))
    action = agent.act(obs)  # the actor's weights less U(0, 1)/1000, renormalised
    assert np.abs(action - agent.greedy(obs)).max() < 2e-3


# -- Aioli and ADO on losses fed through observe ------------------------------------------------------
def _feed(agent, steps, losses, fall, counts=(3, 3, 2)):
    """A world where a step on mixture w lowers domain i's loss by ``fall(i, w, n)``; each step's info holds
    the losses before its update, as the env's do. Returns the actions played."""
    losses, played, n = np.array(losses, dtype=np.float64), [], 0.0
    for _ in range(steps):
        w = agent.act(None)
        played.append(w)
        info = {"domain_losses": losses.copy(), "domain_counts": np.array(counts), "sampling_probs": w}
        agent.observe(None, w, 0.0, None, info)
        agent.update()
        n += sum(counts)
        losses = losses - fall(w, n)
    return np.array(played)


def test_aioli_learns_the_weights_of_its_loss_change_matrix():
    """Training on domain i lowers only i's loss, at rate r_i. The bursts (0.75 on one domain) give
    changes 2·r_i·mixture_j(i); solved for one-hot effects A = diag(2r), normalised A = diag(r / Σr), so
    the round plays softmax(η · r / Σr): most on domain 2, whose loss falls fastest."""
    rates = np.array([0.01, 0.01, 0.05])
    agent = AioliAgent(make_spec(), lp_steps=2, update_steps=5)
    played = _feed(agent, 7, [5.0, 6.0, 7.0], lambda w, n: rates * w)
    bursts = played[:6].reshape(3, 2, K)
    assert all(np.array_equal(b[0], b[1]) for b in bursts) and sorted(b[0].argmax() for b in bursts) == [0, 1, 2]
    np.testing.assert_allclose(bursts.max(axis=2), 0.75)
    np.testing.assert_allclose(played[6], np.full(K, 1 / K))  # the step that measures the last burst
    expected = np.exp(rates / rates.sum())
    np.testing.assert_allclose(agent.act(None), expected / expected.sum(), rtol=1e-9)
    assert agent.act(None).argmax() == 2


def test_ado_moves_weight_to_the_domain_whose_loss_falls_faster():
    """L_i(n) = 2 + B_i·n^(−1/2) with B = (4, 4, 16): the fits recover the laws, and domain 2's larger slope
    raises its weight above its natural 0.2 while the others lose weight relative to theirs."""
    b = np.array([4.0, 4.0, 16.0])
    agent = ADOAgent(make_spec())
    start = 2 + b * 8.0**-0.5

    def fall(w, n):
        return b * (n**-0.5 - (n + 8) ** -0.5)  # the law's drop from n to n + 8: a step's loss sits at its n

    played = _feed(agent, 100, start, fall)
    np.testing.assert_allclose(played[:40], np.tile(NATURAL, (40, 1)))  # natural before start_step
    np.testing.assert_allclose(agent.params[:, 2], 0.5, atol=0.02)
    np.testing.assert_allclose(np.exp(agent.params[:, 1]), 2.0, atol=0.05)
    final = agent.act(None)
    assert final[2] > NATURAL[2] + 0.05 and final[2] / NATURAL[2] > final[0] / NATURAL[0]
    assert np.isclose(final.sum(), 1.0) and final.min() >= 0.01


def test_aioli_and_ado_refuse_bad_options():
    with pytest.raises(ConfigError, match="one_hot_factor=0.2 must be in \\(1/k, 1\\]"):  # needs k: when built
        AioliAgent(make_spec(), one_hot_factor=0.2)
    for cls, bad, match in (  # with the options alone, as the config check does before any work
        (AioliAgent, {"lp_steps": 0}, "agent.options.lp_steps=0 is out of range"),
        (AioliAgent, {"init": "doge"}, "agent.options.init='doge' is not supported"),
        (ADOAgent, {"savgol_window": 4}, "agent.options.savgol_window=4 is out of range"),
        (ADOAgent, {"savgol_window": 6}, "savgol_window=6 must be odd"),
        (ADOAgent, {"start_step": 3}, "agent.options.start_step=3 is out of range"),
        (ADOAgent, {"start_step": 10, "ignore_steps": 8}, "must be >= ignore_steps \\+ 4 = 12"),
        (ADOAgent, {"min_prob": 0.5}, "agent.options.min_prob=0.5 is out of range"),
    ):
        with pytest.raises(ConfigError, match=match):
            cls.make_options(bad)


@pytest.mark.parametrize(
    "name, options",
    [
        ("td3", {"learning_starts": 20}),  # random actions from the action space's generator
        ("td3", {"learning_starts": 2, "batch_size": 8}),  # the policy plus numpy's Gaussian action noise
        ("sac", {"learning_starts": 2, "batch_size": 8}),  # torch samples from the stochastic policy
        ("ppo", {}),
        ("vector-sac", {"warmup_steps": 2, **SMALL}),
    ],
)
def test_a_loaded_agent_explores_like_the_saved_one(name, options, tmp_path):
    """agent.pt carries the exploration RNGs: the next exploratory action after loading is the saved agent's,
    whatever the process's RNGs did in between."""
    agent = AGENTS[name](make_spec(), **options)
    obs = drive(agent, 6, np.random.default_rng(0))
    agent.save(tmp_path / "agent.pt")
    expected = agent.act(obs)
    torch.manual_seed(123), np.random.seed(123)
    clone = AGENTS[name](make_spec(), **options)
    clone.spec.action_space.seed(123)
    clone.load(tmp_path / "agent.pt")
    np.testing.assert_array_equal(clone.act(obs), expected)
    assert not np.allclose(agent.act(obs), expected)  # the action was exploratory: the next one differs


def test_ppo_agent_starts_near_uniform_weights():
    """The ppo agent's Gaussian policy acts on [-1, 1]^k: its draws centre on uniform weights and seldom zero a
    domain (on [0, 1]^k about half the weights were clipped to 0)."""
    agent = AGENTS["ppo"](make_spec(domains=tuple("abcdefgh")))
    obs = np.zeros(OBS, np.float32)
    draws = np.array([agent.act(obs) for _ in range(400)])
    np.testing.assert_allclose(draws.mean(axis=0), 1 / 8, atol=0.03)
    assert (draws == 0).mean() < 0.25
    mean_action = agent.model.policy.predict(obs, deterministic=True)[0]
    np.testing.assert_allclose(agent._to_weights((mean_action + 1) / 2), 1 / 8, atol=0.05)
    np.testing.assert_allclose(agent.greedy(obs), agent._to_weights((np.clip(mean_action, -1, 1) + 1) / 2))


def test_anchored_actor_returns_from_a_runaway_deviation_to_its_stationary_point():
    """The deviation a common shift cannot move: from 86 % on one domain (a measured runaway) Adam brings the
    anchored actor back to a_i − ā = (g_i − ḡ) / λ under a critic flat in the action. With the raw a_i·g_i in
    the objective every output's gradient had the same sign there and Adam shifted them all alike: it stayed."""
    lam = 3.0
    model = vector_model(
        VectorDDPG,
        learning_rate=0.01,
        prior=NATURAL,
        prior_coef=lam,
        policy_kwargs={"anchor": np.full(K, 1.0 / K), "min_weight": 0.0},
    )
    q = np.array([1.0, 0.0, 0.0])
    flat_critic(model, q)
    runaway = torch.tensor([4.0, -2.0, -2.0])
    with torch.no_grad():
        model.actor.mu[-2].bias.copy_(runaway)  # α ≈ (0.998, 0.001, 0.001), the gradient on a_0 pointing back
    obs = model.replay_buffer.sample(64).observations
    objective = model.anchored_objective(obs)
    grad = torch.autograd.grad(objective.sum(), model.actor.mu[-2].bias)[0]
    assert abs(float(grad.sum())) < 1e-4 * float(grad.abs().sum()), grad  # no push along a common shift
    for _ in range(600):
        model.actor_step(obs)
    a = model.actor.deviation(obs).detach()
    centred = (a - a.mean(dim=1, keepdim=True)).mean(dim=0).numpy()
    z = (q - q.mean()) / np.std(q, ddof=1)  # the value gaps, centred: they do not depend on α
    np.testing.assert_allclose(centred, z / lam, atol=0.05)
    assert objective.mean().item() > model.anchored_objective(obs).mean().item()
