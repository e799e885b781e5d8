"""Domain mixing in the user's own training loop (DomainMixer and the documented example)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from acodm_gym.agents import read_weights
from acodm_gym.config import ConfigError, load_config
from acodm_gym.lm.models import build_model
from acodm_gym.lm.step import sequence_losses
from acodm_gym.mixing import DomainMixer
from acodm_gym.runs.runner import train

from conftest import small_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_training_loop.py"


def _example():
    spec = importlib.util.spec_from_file_location("own_training_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def saved_actor(corpus_text_dir, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy")
    cfg = load_config(
        small_config(
            corpus_text_dir,
            cache_dir,
            agent={"name": "acodm", "options": {"warmup_steps": 4, "batch_size": 8, "width": 32}},
            train={"total_steps": 10},
            run={"out_dir": str(out), "plots": False, "tensorboard": False},
        )
    )
    return train(cfg, log=lambda _: None).run_dir / "agent.pt"


def _loop(mixer, model, steps):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = mixer.next_batch()
        seq = sequence_losses(model(input_ids=batch.input_ids).logits, batch.input_ids)
        (seq * mixer.loss_weights(batch)).sum().backward()
        opt.step()
        opt.zero_grad()
        mixer.observe(seq.detach())
    return batch, seq


def test_example_loop_with_odm_moves_weights_and_exports_a_reusable_mixture(config, tmp_path, corpus, capsys):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    mixer = _example().main(
        ["--config", str(cfg_path), "--agent", "odm", "--steps", "12", "--export", str(tmp_path / "m.json")]
    )
    schedule = np.array(mixer.schedule)
    assert schedule.shape == (12, len(corpus.domains))
    np.testing.assert_allclose(schedule.sum(axis=1), 1.0)
    assert np.abs(schedule[-1] - schedule[0]).max() > 1e-3  # EXP3 reacted to the losses it was fed
    mean = read_weights(tmp_path / "m.json", corpus.domains)
    np.testing.assert_allclose(mean, schedule.mean(axis=0), atol=1e-6)
    assert "step 12" in capsys.readouterr().out


def test_frozen_actor_steers_a_larger_model_of_another_architecture(saved_actor, corpus, config):
    cfg = load_config(config, ["model.arch=llama", "model.num_layers=3", "model.hidden_size=48"])
    model = build_model(cfg.model, corpus.vocab_size, seed=1)
    mixer = DomainMixer(
        corpus,
        model,
        {"name": "frozen", "options": {"path": str(saved_actor)}},
        total_steps=5,
        batch_size=8,
        seq_len=32,
    )
    batch, seq = _loop(mixer, model, 5)
    seq = seq.detach()
    assert mixer.step == 5
    np.testing.assert_allclose(np.array(mixer.schedule).sum(axis=1), 1.0)
    obs = mixer.state.observation(mixer.sampler.samples_seen, mixer.step)
    assert obs.shape == mixer.spec.observation_space.shape and np.isfinite(obs).all()
    # the loss part is the last batch's per-domain mean sequence loss over ln V
    lay = mixer.spec.observation_layout
    for i in range(len(corpus.domains)):
        rows = batch.domain_ids == i
        if rows.any():
            assert obs[lay["loss"]][i] == pytest.approx(float(seq[rows].mean()) / math.log(corpus.vocab_size), rel=1e-5)


def test_loss_weights_give_the_alpha_weighted_objective(corpus, config):
    cfg = load_config(config)
    model = build_model(cfg.model, corpus.vocab_size, seed=0)
    mixer = DomainMixer(
        corpus, model, {"name": "static", "weights": [0.7, 0.1, 0.1, 0.1]}, total_steps=3, batch_size=8, seq_len=32
    )
    batch = mixer.next_batch()
    seq = torch.rand(len(batch.domain_ids))
    objective = float((seq * mixer.loss_weights(batch)).sum())
    per_domain = [float(seq[batch.domain_ids == i].mean()) for i in range(4)]
    assert objective == pytest.approx(float(np.dot(mixer.weights, per_domain)), rel=1e-6)


def test_mixer_refuses_a_learning_agent_and_misuse(corpus, config):
    model = build_model(load_config(config).model, corpus.vocab_size, seed=0)
    with pytest.raises(ConfigError, match="frozen"):
        DomainMixer(corpus, model, "acodm", total_steps=3, batch_size=8, seq_len=32)
    mixer = DomainMixer(corpus, model, "uniform", total_steps=3, batch_size=8, seq_len=32)
    with pytest.raises(RuntimeError, match="next_batch"):
        mixer.observe(torch.zeros(8))
    mixer.next_batch()
    with pytest.raises(ValueError, match="3 sequence losses"):
        mixer.observe(torch.zeros(3))
