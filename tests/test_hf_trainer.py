"""A DomainMixer steering the Hugging Face Trainer (MixingTrainer) and the documented example."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader
from transformers import TrainingArguments

from acodm_gym.agents import read_weights
from acodm_gym.config import ConfigError, load_config
from acodm_gym.hf_trainer import MixedBatches, MixingTrainer
from acodm_gym.lm.models import build_model
from acodm_gym.mixing import DomainMixer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hf_trainer.py"
STEPS = 6


def _args(out: Path, **overrides) -> TrainingArguments:
    kwargs = dict(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        learning_rate=3e-3,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    return TrainingArguments(**{**kwargs, **overrides})


def _mixer_and_model(corpus, config, agent, batch_size=16, steps=STEPS):
    model = build_model(load_config(config).model, corpus.vocab_size, seed=0)
    return DomainMixer(corpus, model, agent, total_steps=steps, batch_size=batch_size, seq_len=32), model


def _record(trainer, mixer):
    """Spy on what the mixer drew, what the Trainer trained on and what the mixer observed."""
    drawn, trained, observed = [], [], []
    next_batch, compute_loss, observe = mixer.next_batch, trainer.compute_loss, mixer.observe

    def draw():
        drawn.append(next_batch())
        return drawn[-1]

    def loss(model, inputs, *args, **kwargs):
        trained.append(inputs["input_ids"].clone())
        return compute_loss(model, inputs, *args, **kwargs)

    def see(losses):
        observed.append(losses.clone())
        observe(losses)

    mixer.next_batch, trainer.compute_loss, mixer.observe = draw, loss, see
    return drawn, trained, observed


def test_trainer_trains_on_the_mixers_draws_and_feeds_back_each_step(corpus, config, tmp_path):
    static = {"name": "static", "weights": [0.97, 0.01, 0.01, 0.01]}
    mixer, model = _mixer_and_model(corpus, config, static)
    trainer = MixingTrainer(mixer, model=model, args=_args(tmp_path))
    drawn, trained, observed = _record(trainer, mixer)
    trainer.train()

    # one draw per optimiser step, trained on as 2 micro-batches of 8, in the drawn order
    assert len(drawn) == len(observed) == mixer.step == len(mixer.schedule) == STEPS
    assert [len(t) for t in trained] == [8] * 2 * STEPS
    assert torch.equal(torch.cat(trained), torch.cat([b.input_ids for b in drawn]))
    counts = np.sum([b.counts for b in drawn], axis=0)
    assert counts[0] / counts.sum() > 0.7  # 12 of 16 rows follow α; the floor keeps one row per domain

    # the mixer saw every row's loss once per step, and the Trainer descended Σ α_i ℓ_i over the whole step
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(train_logs) == STEPS
    for batch, losses, alpha, log in zip(drawn, observed, mixer.schedule, train_logs, strict=True):
        assert losses.shape == (16,)
        per_domain = [float(losses[batch.domain_ids == i].mean()) for i in range(4)]
        assert log["loss"] == pytest.approx(float(np.dot(alpha, per_domain)), rel=1e-4)
        assert log["weight/code"] == pytest.approx(0.97)

    mean = read_weights(tmp_path / "mixture.json", corpus.domains)
    np.testing.assert_allclose(mean, [0.97, 0.01, 0.01, 0.01], atol=1e-6)


def test_odm_weights_move_with_the_losses_and_the_plain_mean_is_available(corpus, config, tmp_path):
    steps = 12  # EXP3 stays uniform while its exploration rate is 1/K (the first K ln K ≈ 5.5 steps)
    mixer, model = _mixer_and_model(corpus, config, "odm", batch_size=8, steps=steps)
    args = _args(tmp_path, max_steps=steps, gradient_accumulation_steps=1)
    trainer = MixingTrainer(mixer, model=model, args=args, weight_losses=False)
    _, _, observed = _record(trainer, mixer)
    trainer.train()
    schedule = np.array(mixer.schedule)
    assert schedule.shape == (steps, 4)
    assert np.abs(schedule[-1] - schedule[0]).max() > 1e-3  # EXP3 reacted to the losses it was fed
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    for losses, log in zip(observed, train_logs, strict=True):
        assert log["loss"] == pytest.approx(float(losses.mean()), rel=1e-4)
    np.testing.assert_allclose(
        read_weights(tmp_path / "mixture.json", corpus.domains), schedule.mean(axis=0), atol=1e-6
    )
    with pytest.raises(
        RuntimeError, match="new DomainMixer"
    ):  # a second run (or a resume) would skew the mixer's state
        trainer.train()
    assert mixer.step == steps


def test_bad_setups_name_the_fix(corpus, config, tmp_path):
    mixer, model = _mixer_and_model(corpus, config, "uniform")
    with pytest.raises(ConfigError, match=r"dataloader_num_workers=0"):
        MixingTrainer(mixer, model=model, args=_args(tmp_path, dataloader_num_workers=2))
    with pytest.raises(ConfigError, match=r"batch_size=16.*= 32"):
        MixingTrainer(mixer, model=model, args=_args(tmp_path, per_device_train_batch_size=16))
    with pytest.raises(ConfigError, match=r"max_steps=10.*total_steps=6"):
        MixingTrainer(mixer, model=model, args=_args(tmp_path, max_steps=10))
    with pytest.raises(RuntimeError, match="num_workers=0"):
        next(iter(DataLoader(MixedBatches(mixer), batch_size=None, num_workers=1)))
    assert mixer.step == 0 and not mixer.schedule  # nothing was drawn in the main process


def test_example_runs_and_exports(config, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("hf_trainer_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    mixer = example.main(
        ["--config", str(cfg_path), "--agent", "odm", "--steps", "3", "--output-dir", str(tmp_path / "out")]
    )
    assert mixer.step == 3
    assert (tmp_path / "out" / "mixture.json").is_file()
    out = capsys.readouterr().out
    assert "'weight/code'" in out and "3 steps, mean weights" in out
