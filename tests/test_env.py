"""PretrainEnv on a real multi-domain corpus: API contract, observation, reward, failures."""

from __future__ import annotations

import math
import warnings

import gymnasium
import numpy as np
import pytest
import torch

import acodm_gym
from acodm_gym.config import ConfigError
from acodm_gym.envs import ImportanceWeightedRewardEMA, PretrainEnv, action_to_weights
from acodm_gym.errors import NonFiniteLossError
from acodm_gym.lm.models import build_model
from acodm_gym.lm.step import TorchBackend

from conftest import small_config

K = 4
ALPHA = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)


@pytest.fixture()
def make_env(corpus_text_dir, cache_dir, corpus):
    envs = []

    def make(cls=PretrainEnv, **sections):
        env = cls(small_config(corpus_text_dir, cache_dir, **sections), corpus=corpus, log=lambda _: None)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


def _rollout(env, seed, actions):
    obs, info = env.reset(seed=seed)
    out = [(obs, None, info)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, info))
    return out


def _assert_clean(obs, info):
    assert np.all(np.isfinite(obs))
    for key, value in info.items():
        if isinstance(value, (np.ndarray, float)):
            assert np.all(np.isfinite(value)), key


# ---------------------------------------------------------------------------------------------
# Gymnasium / SB3 contract


def test_gymnasium_make_builds_the_registered_env(config):
    env = gymnasium.make(acodm_gym.ENV_ID, config=config)
    try:
        assert isinstance(env.unwrapped, PretrainEnv)
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and isinstance(reward, float)
        assert env.unwrapped.reward_space.shape == (K,) and info["vector_reward"].shape == (K,)
    finally:
        env.close()


def test_gymnasium_env_checker_passes(make_env):
    from gymnasium.utils.env_checker import check_env

    env = make_env(train={"total_steps": 6})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    # unbounded observation bounds are by design; anything else (obs outside the space, dtype,
    # non-determinism, shared arrays) is a failure
    problems = [str(w.message) for w in caught if "infinity" not in str(w.message)]
    assert problems == []


def test_sb3_env_checker_passes(make_env):
    from stable_baselines3.common.env_checker import check_env

    env = make_env(train={"total_steps": 6})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True)
    problems = [str(w.message) for w in caught if "symmetric and normalized Box action space" not in str(w.message)]
    assert problems == []


def test_gaussian_policies_start_near_uniform_on_symmetric_actions(make_env):
    """RescaleAction(env, -1, 1): stock PPO's and SAC's first (mean) action gives weights within 0.05 of uniform,
    and SB3's env checker no longer asks for a symmetric action space. On the [0, 1] box PPO's starts far from it."""
    from gymnasium.wrappers import RescaleAction
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.env_checker import check_env

    def first_weights(env, algorithm):
        model = algorithm("MlpPolicy", env, seed=0, device="cpu")
        obs, _ = env.reset(seed=0)
        return env.step(model.predict(obs, deterministic=True)[0])[4]["domain_weights"]

    raw = make_env(train={"total_steps": 6})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = RescaleAction(raw, -1, 1)  # integer bounds: the Box keeps float32 without a warning
        check_env(env, warn=True)
    assert [str(w.message) for w in caught] == []
    for algorithm in (PPO, SAC):
        np.testing.assert_allclose(first_weights(env, algorithm), 1 / K, atol=0.05)
    assert np.abs(first_weights(raw, PPO) - 1 / K).max() > 0.1


def test_step_returns_python_types_and_fresh_arrays(make_env):
    env = make_env()
    obs0, info0 = env.reset(seed=0)
    obs1, reward, terminated, truncated, info1 = env.step(ALPHA)
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert obs1.dtype == np.float32 and not np.shares_memory(obs0, obs1)
    keep = {k: np.array(v, copy=True) for k, v in info1.items() if isinstance(v, np.ndarray)}
    obs2, _, _, _, info2 = env.step(ALPHA)
    for key, value in keep.items():
        assert not np.shares_memory(info1[key], info2[key]), key
        assert np.array_equal(info1[key], value), key  # the next step did not mutate the old info


def test_a_stock_sb3_agent_trains_on_the_scalar_reward(make_env):
    from stable_baselines3 import DDPG

    env = make_env(train={"total_steps": 8})
    agent = DDPG(
        "MlpPolicy",
        env,
        learning_starts=4,
        batch_size=4,
        buffer_size=100,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [16]},
    )
    before = [p.detach().clone() for p in agent.actor.parameters()]
    agent.learn(total_timesteps=10)
    assert agent.num_timesteps == 10
    # it learned: gradient steps after learning_starts moved the actor, on the env's own (finite, non-zero) rewards
    assert agent._n_updates > 0 and any(not torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
    rewards = agent.replay_buffer.rewards[: agent.replay_buffer.pos]
    assert len(rewards) == 10 and np.all(np.isfinite(rewards)) and np.any(rewards != 0)


# ---------------------------------------------------------------------------------------------
# Determinism and observation


def test_reset_seed_determinism(make_env):
    env = make_env()
    actions = [ALPHA, np.array([0.7, 0.1, 0.1, 0.1]), np.ones(K)]
    a, b, c = (_rollout(env, s, actions) for s in (3, 3, 4))
    for (oa, ra, ia), (ob, rb, ib) in zip(a, b):
        assert np.array_equal(oa, ob)
        assert ra == rb
        assert np.array_equal(ia["domain_losses"], ib["domain_losses"])
        if ra is not None:
            assert np.array_equal(ia["vector_reward"], ib["vector_reward"])
            assert np.array_equal(ia["domain_counts"], ib["domain_counts"])
    assert not np.array_equal(a[1][2]["domain_losses"], c[1][2]["domain_losses"])
    assert not np.array_equal(a[-1][0], c[-1][0])


def test_observation_layout_and_values(make_env):
    env = make_env()
    L = env.L
    layout = env.observation_layout()
    size = 3 * K + 1 + 2 * L
    assert env.observation_space.shape == (size,)
    # the parts tile the observation exactly, in order
    spans = sorted((s.start, s.stop) for s in layout.values())
    assert spans[0][0] == 0 and spans[-1][1] == size
    assert all(x[1] == y[0] for x, y in zip(spans, spans[1:]))
    sizes = {name: s.stop - s.start for name, s in layout.items()}
    assert sizes == {"samples_seen": K, "step": 1, "loss": K, "loss_change": K, "weight_norm": L, "update_norm": L}

    obs, info = env.reset(seed=0)
    assert obs.shape == (size,) and obs.dtype == np.float32
    assert np.allclose(obs[layout["samples_seen"]], 0.25) and obs[layout["step"]][0] == 0
    assert np.allclose(obs[layout["weight_norm"]], 1.0) and np.all(obs[layout["loss_change"]] == 0)
    log_v = math.log(env.corpus.vocab_size)
    assert np.allclose(obs[layout["loss"]], info["domain_losses"] / log_v, rtol=1e-6)
    assert np.allclose(obs[layout["loss"]], 1.0, atol=0.05)  # an untrained model is near uniform
    for t in range(1, 4):
        obs, _, _, _, info = env.step(ALPHA)
        _assert_clean(obs, info)
        assert env.observation_space.contains(obs)
        seen = info["samples_seen"]
        assert seen.sum() == t * env.cfg.train.batch_size
        assert np.allclose(obs[layout["samples_seen"]], seen / seen.sum())
        assert obs[layout["step"]][0] == pytest.approx(t / env.cfg.train.total_steps)
        assert np.allclose(obs[layout["loss"]], info["domain_losses"] / log_v, rtol=1e-6)
        upd = obs[layout["update_norm"]]
        assert np.all((upd > -2) & (upd < 2))  # a real update: neither clipped end
        assert not np.allclose(obs[layout["weight_norm"]], 1.0)


def test_observation_size_is_free_of_model_size_and_architecture(make_env):
    shapes = set()
    for model in (
        {"num_layers": 2},
        {"num_layers": 4, "hidden_size": 64, "intermediate_size": 128},
        {"arch": "llama", "num_layers": 3},
    ):
        env = make_env(model=model)
        obs, _ = env.reset(seed=0)
        obs, *_ = env.step(ALPHA)
        assert np.all(np.isfinite(obs))
        shapes.add((env.observation_space.shape, obs.shape))
    assert shapes == {((3 * K + 1 + 2 * 4,), (3 * K + 1 + 2 * 4,))}


# ---------------------------------------------------------------------------------------------
# Actions


@pytest.mark.parametrize(
    "action, fragment",
    [
        (np.ones(3), "shape"),
        (np.ones((K, 1)), "shape"),
        (np.array([0.5, np.nan, 0.2, 0.1]), "NaN"),
        (np.array([0.5, np.inf, 0.2, 0.1]), "inf"),
        (np.array([-np.inf, 0.1, 0.2, 0.1]), "inf"),
        ("0.25,0.25,0.25,0.25", r"not numeric: give 4 float domain weights, shape \(4,\)"),
        (["a", "b", "c", "d"], "not numeric"),
        ([0.1, None, 0.2, 0.3], "not numeric"),
        (np.array([-1.0, -2.0, -0.5, -3.0]), "no positive weight"),
        (np.array([-1.0, 0.0, 0.0, 0.0]), "no positive weight"),
    ],
)
def test_invalid_actions_are_rejected(make_env, action, fragment):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=fragment) as err:
        env.step(action)
    assert "Action" in str(err.value)
    assert env.t == 0  # nothing was trained


def test_action_normalisation(make_env):
    """Negatives count as 0, then divide by the sum: the ranking the agent meant survives."""
    assert np.allclose(action_to_weights(np.zeros(K), K), 0.25)  # a corner of the box: uniform
    assert np.allclose(action_to_weights([2.0, -1.0, 0.5, 0.5], K), [2 / 3, 0.0, 1 / 6, 1 / 6])
    assert np.allclose(action_to_weights([10.0, 1.0, 1.0, 0.0], K), [10 / 12, 1 / 12, 1 / 12, 0.0])
    assert np.allclose(action_to_weights([1e308, 1e308, 0.0, 0.0], K), [0.5, 0.5, 0.0, 0.0])  # no overflow
    assert np.allclose(action_to_weights(torch.tensor([1.0, 1.0, 2.0, 0.0]), K), [0.25, 0.25, 0.5, 0.0])
    env = make_env()
    env.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an action inside the box is never warned about
        _, _, _, _, info = env.step(np.zeros(K, dtype=np.float32))
        assert np.allclose(info["domain_weights"], 0.25)
        _, _, _, _, info = env.step(np.array([1.0, 0.0, 1.0, 0.5], dtype=np.float32))
        assert np.allclose(info["domain_weights"], [0.4, 0.0, 0.4, 0.2])
    with pytest.warns(
        UserWarning, match=r"outside its action space \[0, 1\]\^4: negative weights count as 0.*once per env"
    ):
        _, _, _, _, info = env.step(np.array([3.0, -2.0, 1.0, 0.0]))
    assert np.allclose(info["domain_weights"], [0.75, 0.0, 0.25, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per env, not on every step
        _, _, _, _, info = env.step(np.array([10.0, 1.0, 1.0, 0.0]))
    assert np.allclose(info["domain_weights"], [10 / 12, 1 / 12, 1 / 12, 0.0])
    assert info["domain_weights"].sum() == pytest.approx(1.0)


def test_truncation_at_total_steps(make_env):
    env = make_env(train={"total_steps": 5}, env={"eval_interval": 0})
    env.reset(seed=0)
    flags = [env.step(ALPHA)[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]
    for _ in range(2):  # a truncated episode takes no more steps until reset()
        with pytest.raises(RuntimeError, match=r"truncated at step 5 \(train.total_steps=5\): call reset\(\)"):
            env.step(ALPHA)
    assert (
        env.t == 5 and env._observation()[env.observation_layout()["step"]][0] == 1.0
    )  # the step feature stays t/T = 1
    _, info = env.reset(seed=0)  # a new episode starts from step 0
    assert info["step"] == 0 and env.step(ALPHA)[4]["step"] == 1


# ---------------------------------------------------------------------------------------------
# Losses


def test_loss_change_is_against_the_previous_step(make_env):
    env = make_env()
    layout = env.observation_layout()
    _, info = env.reset(seed=0)
    losses = [info["domain_losses"]]
    changes = []
    for _ in range(6):
        obs, _, _, _, info = env.step(np.full(K, 0.25))
        losses.append(info["domain_losses"])
        changes.append(obs[layout["loss_change"]])
    for t in range(1, len(losses)):
        expected = np.clip((losses[t] - losses[t - 1]) / losses[t - 1], -1, 1)
        assert np.allclose(changes[t - 1], expected, rtol=1e-5, atol=1e-7)
    against_first = (losses[-1] - losses[1]) / losses[1]
    assert not np.allclose(changes[-1], against_first, atol=1e-4)


def test_absent_domain_keeps_its_last_loss_and_nothing_is_nan(make_env):
    env = make_env(train={"exploration_floor": False})
    layout = env.observation_layout()
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(np.full(K, 0.25))
    before = info["domain_losses"].copy()
    for _ in range(3):
        obs, reward, _, _, info = env.step(np.array([0.0, 1.0, 0.0, 0.0]))
        assert info["domain_counts"].tolist() == [0, env.cfg.train.batch_size, 0, 0]
        _assert_clean(obs, info)
        assert math.isfinite(reward)
        absent = [0, 2, 3]
        assert np.array_equal(info["domain_losses"][absent], before[absent])
        assert np.all(obs[layout["loss_change"]][absent] == 0)
        assert np.all(info["vector_reward"][absent] == 0)
        assert info["vector_reward"][1] > 0  # ⟨g, g⟩ of the only domain
    assert info["domain_losses"][1] != before[1]


def test_val_ppl_every_eval_interval_and_at_the_last_step(make_env):
    env = make_env(train={"total_steps": 7}, env={"eval_interval": 3})
    env.reset(seed=0)
    evaluated = []
    for _ in range(7):
        *_, info = env.step(ALPHA)
        if "val_ppl" in info:
            evaluated.append(info["step"])
            assert info["val_ppl"].shape == (K,) and np.all(info["val_ppl"] > 1)
            assert np.allclose(info["val_ppl"], np.exp(info["val_loss"]))
            assert np.allclose(info["val_loss"], env.evaluate("validation"))
    assert evaluated == [3, 6, 7]
    assert env.evaluate("test").shape == (K,)


# ---------------------------------------------------------------------------------------------
# Reward


def test_reward_is_alpha_weighted_alignment_by_default(make_env):
    env = make_env()
    env.reset(seed=0)
    for action in (ALPHA, np.array([0.7, 0.1, 0.1, 0.1])):
        _, reward, _, _, info = env.step(action)
        alpha, w = info["domain_weights"], info["vector_reward"]
        assert w.shape == (K,) and np.any(w != 0)
        assert reward == pytest.approx(float(np.dot(alpha, w)), rel=1e-12)


@pytest.mark.parametrize("mode, fn", [("sum", np.sum), ("mean", np.mean)])
def test_other_scalarizations(make_env, mode, fn):
    env = make_env(env={"scalarization": mode})
    env.reset(seed=0)
    _, reward, _, _, info = env.step(ALPHA)
    assert reward == pytest.approx(float(fn(info["vector_reward"])), rel=1e-12)


def test_authors_reward_variant(make_env):
    env = make_env(env={"reward_variant": "authors"})
    env.reset(seed=0)
    for _ in range(3):
        *_, info = env.step(ALPHA)
        w = info["vector_reward"]
        assert np.all(np.abs(w) <= 3) and w.mean() == pytest.approx(0, abs=1e-9)
        assert w.std() == pytest.approx(1.0, rel=1e-6)  # z-scored over domains (no clamp hit at k=4)


def test_reward_aligned_with_the_eval_domains(make_env):
    """env.reward_target: eval_domains aligns W with the task's eval domains; with every domain it is the paper's W."""
    corpus_env = make_env()
    domains = corpus_env.domains
    every = make_env(env={"reward_target": "eval_domains"})
    two = make_env(env={"reward_target": "eval_domains"}, task={"eval_domains": domains[:2]})
    rewards = []
    for env in (corpus_env, every, two):
        env.reset(seed=0)
        *_, info = env.step(ALPHA)
        rewards.append(info["vector_reward"])
    assert np.array_equal(rewards[0], rewards[1])
    assert two._alignment.target.tolist() == [True, True] + [False] * (len(domains) - 2)
    assert not np.allclose(rewards[2], rewards[0], rtol=1e-3)


def test_authors_reward_with_absent_domains_stays_bounded_under_the_ema(make_env):
    env = ImportanceWeightedRewardEMA(make_env(train={"exploration_floor": False}, env={"reward_variant": "authors"}))
    env.reset(seed=0)
    for _ in range(3):
        _, reward, _, _, info = env.step(np.array([0.4, 0.0, 0.3, 0.3]))
        raw = info["vector_reward_raw"]
        assert raw[1] == 0 and info["sampling_probs"][1] == 0 and info["domain_counts"][1] == 0
        present = raw[[0, 2, 3]]  # z-scored over the domains in the batch
        assert present.mean() == pytest.approx(0, abs=1e-9) and present.std() == pytest.approx(1, rel=1e-6)
        assert np.all(np.abs(info["vector_reward"]) <= 3 / 0.3) and abs(reward) <= 3 / 0.3


def test_compute_reward_false_gives_zero_reward_and_no_hooks(make_env):
    env = make_env(env={"compute_reward": False})
    env.reset(seed=0)
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in env.backend.model.modules())
    assert hooks == 0
    _, reward, _, _, info = env.step(ALPHA)
    assert reward == 0.0 and np.all(info["vector_reward"] == 0) and info["vector_reward"].shape == (K,)
    with_reward = make_env()
    with_reward.reset(seed=0)
    assert sum(len(m._forward_hooks) for m in with_reward.backend.model.modules()) > 0
    # the reward does not change the training: same losses either way
    _, _, _, _, info2 = with_reward.step(ALPHA)
    assert np.array_equal(info["domain_losses"], info2["domain_losses"])
    assert np.array_equal(env.step(ALPHA)[4]["domain_losses"], with_reward.step(ALPHA)[4]["domain_losses"])


def test_importance_weighted_reward_ema_by_hand(make_env):
    xi = 0.8
    raw_env = make_env()
    wrapped = ImportanceWeightedRewardEMA(make_env(), xi=xi)
    raw_env.reset(seed=1)
    wrapped.reset(seed=1)
    ema = np.zeros(K)
    actions = [ALPHA, np.array([0.05, 0.05, 0.1, 0.8]), np.array([0.4, 0.4, 0.1, 0.1])]
    for action in actions:
        _, _, _, _, raw = raw_env.step(action)
        _, reward, _, _, info = wrapped.step(action)
        p = raw["sampling_probs"]
        ema = xi * ema + (1 - xi) * raw["vector_reward"] / p
        assert np.allclose(info["vector_reward_raw"], raw["vector_reward"])
        assert np.allclose(info["vector_reward"], ema, rtol=1e-12)
        assert reward == pytest.approx(float(np.dot(raw["domain_weights"], ema)), rel=1e-12)
    wrapped.reset(seed=1)
    _, _, _, _, info = wrapped.step(ALPHA)
    assert np.allclose(info["vector_reward"], (1 - xi) * info["vector_reward_raw"] / info["sampling_probs"])
    with pytest.raises(ValueError, match="xi"):
        ImportanceWeightedRewardEMA(raw_env, xi=1.0)


# ---------------------------------------------------------------------------------------------
# Failures


def test_nonfinite_step_is_skipped_counted_and_recovered(make_env):
    env = make_env()
    env.reset(seed=0)
    obs, _, _, _, info = env.step(ALPHA)
    last = info["domain_losses"].copy()
    emb = env.backend.model.get_input_embeddings().weight
    saved = emb.detach().clone()
    with torch.no_grad():
        emb[:] = float("nan")
    obs, reward, _, _, info = env.step(ALPHA)
    _assert_clean(obs, {k: v for k, v in info.items() if k not in ("objective", "grad_norm")})
    assert info["skipped"] is True and info["skipped_steps"] == 1
    assert reward == 0.0 and np.array_equal(info["domain_losses"], last)
    assert math.isnan(info["objective"])
    with torch.no_grad():
        emb.copy_(saved)
    assert torch.equal(emb, saved)  # the skipped update did not touch the weights
    obs, _, _, _, info = env.step(ALPHA)
    assert info["skipped"] is False and info["skipped_steps"] == 1
    _assert_clean(obs, info)


def test_consecutive_nonfinite_steps_raise_a_clear_error(make_env):
    env = make_env(train={"lr": 1e6, "warmup_steps": 0, "max_nonfinite_steps": 3})
    env.reset(seed=0)
    skipped = []
    with pytest.raises(NonFiniteLossError) as err:
        for _ in range(10):
            obs, _, _, _, info = env.step(ALPHA)
            assert np.all(np.isfinite(obs))
            skipped.append(info["skipped"])
    assert skipped == [False, True, True]  # the third skipped step raises
    msg = str(err.value)
    assert "3 consecutive steps" in msg and "train.lr" in msg and "train.max_nonfinite_steps" in msg


def test_nan_in_a_probed_weight_keeps_the_observation_finite(make_env):
    env = make_env(train={"max_nonfinite_steps": 2})
    env.reset(seed=0)
    env.step(ALPHA)
    with torch.no_grad():
        env._norm_probe.modules[-1].weight[0, 0] = float("nan")
    obs, _, _, _, info = env.step(ALPHA)
    assert info["skipped"] and np.all(np.isfinite(obs))
    with pytest.raises(NonFiniteLossError, match="2 consecutive"):
        env.step(ALPHA)


def test_vocab_mismatch_between_corpus_and_model(make_env, corpus):
    class SmallVocabEnv(PretrainEnv):
        def make_backend(self, model):
            small = build_model(self.cfg.model, self.corpus.vocab_size // 2, seed=0)
            return TorchBackend(small, self.cfg.train)

    env = make_env(SmallVocabEnv)
    with pytest.raises(ConfigError) as err:
        env.reset(seed=0)
    msg = str(err.value)
    assert f"{corpus.vocab_size // 2} token embeddings" in msg and f"{corpus.vocab_size} token ids" in msg
    assert "vocab_size" in msg and str(corpus.root) in msg


def test_step_before_reset_is_an_error(make_env):
    with pytest.raises(RuntimeError, match="reset"):
        make_env().step(ALPHA)


def test_drop_state_zeroes_exactly_the_named_parts(config):
    full = PretrainEnv(config, log=lambda _: None)
    dropped = PretrainEnv(config, ["env.drop_state=[loss_change, weight_norm]"], corpus=full.corpus, log=lambda _: None)
    for env in (full, dropped):
        env.reset(seed=3)
        env.step(env.natural_weights)
        env.last = env.step(env.natural_weights)[0]
    lay = full.observation_layout()
    for part, sl in lay.items():
        if part in ("loss_change", "weight_norm"):
            assert not np.any(dropped.last[sl]) and np.any(full.last[sl])
        else:
            np.testing.assert_array_equal(dropped.last[sl], full.last[sl])


def test_drop_state_rejects_unknown_parts(config):
    from acodm_gym.config import load_config

    with pytest.raises(ConfigError, match="loss_chnge"):
        load_config(config, ["env.drop_state=[loss_chnge]"])
