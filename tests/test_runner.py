"""The runner, the command line and the comparison report, end to end on the small corpus."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml

from acodm_gym.cli import main
from acodm_gym.config import load_config
from acodm_gym.runs.logger import read_metrics
from acodm_gym.runs.runner import train

from conftest import small_config


@pytest.fixture(scope="module")
def natural_run(corpus_text_dir, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = load_config(small_config(corpus_text_dir, cache_dir, run={"out_dir": str(out)}))
    return train(cfg, log=lambda _: None)


def test_run_directory_holds_every_output(natural_run):
    names = {p.name for p in natural_run.run_dir.iterdir()}
    assert {"config.yaml", "metrics.csv", "summary.json", "mixture.json", "model", "agent.pt", "tensorboard"} <= names
    for png in ("weights.png", "val_ppl.png", "test_ppl.png"):
        data = (natural_run.run_dir / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    assert any((natural_run.run_dir / "tensorboard").iterdir())


def test_metrics_csv_has_one_row_per_step_and_no_nan_losses(natural_run):
    m = read_metrics(natural_run.run_dir / "metrics.csv")
    assert m["step"].tolist() == list(range(1, 21))
    domains = natural_run.summary["domains"]
    losses = np.stack([m[f"loss/{d}"] for d in domains], axis=1)
    weights = np.stack([m[f"weight/{d}"] for d in domains], axis=1)
    assert np.isfinite(losses).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
    evaluated = ~np.isnan(m["val_ppl_avg"])
    assert m["step"][evaluated].tolist() == [10, 20]


def test_an_agent_without_reward_logs_no_reward_columns_or_scalars(natural_run):
    """The natural agent computes no reward (env.compute_reward false): a constant 0 curve would mean nothing."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    columns = read_metrics(natural_run.run_dir / "metrics.csv").keys()
    assert "reward" not in columns and not [c for c in columns if c.startswith("reward/")]
    assert {"objective", "loss/code", "weight/code"} <= set(columns)
    events = EventAccumulator(str(natural_run.run_dir / "tensorboard"))
    tags = events.Reload().Tags()["scalars"]
    assert "objective" in tags and not [t for t in tags if t.startswith("reward")]


def test_tensorboard_holds_the_config_as_hparams(natural_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    events = EventAccumulator(str(natural_run.run_dir / "tensorboard")).Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["train.total_steps"].number_value == 20 and hparams["agent.name"].string_value == "natural"
    assert hparams["model.hidden_size"].number_value == 32 and hparams["run.progress"].bool_value is False
    assert hparams["data.domains"].string_value == "null"  # lists and nulls as JSON text
    experiment = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/experiment"])
    assert {m.name.tag for m in experiment.experiment.metric_infos} == {"val_metric", "objective"}


def test_summary_matches_metrics_and_training_lowers_perplexity(natural_run):
    s = natural_run.summary
    m = read_metrics(natural_run.run_dir / "metrics.csv")
    assert s["steps"] == 20 and s["tokens"] == 20 * 8 * 32
    assert s["final_val_ppl_avg"] == pytest.approx(m["val_ppl_avg"][-1])
    assert s["val_curve"]["avg_ppl"][-1] < s["val_curve"]["avg_ppl"][0]
    assert s["final_val_ppl_avg"] < 512  # better than uniform guessing over the 512-token vocabulary
    assert set(s["test_ppl"]) == set(s["domains"])


def test_saved_model_and_tokenizer_load_with_transformers(natural_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(natural_run.run_dir / "model")
    tok = AutoTokenizer.from_pretrained(natural_run.run_dir / "model")
    ids = tok("def main():\n    return 0", return_tensors="pt").input_ids
    assert tok.decode(ids[0]) == "def main():\n    return 0"
    out = model(input_ids=ids)
    assert out.logits.shape == (1, ids.shape[1], model.config.vocab_size)


def test_exported_tokenizer_pads_and_truncates_to_the_models_positions(natural_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(natural_run.run_dir / "model")
    assert (
        tok.pad_token == tok.eos_token == "<|endoftext|>" and tok.model_max_length == 32
    )  # model.seq_len of small_config
    batch = tok(["def f():", "import os\n" * 200], padding=True, truncation=True, return_tensors="pt")
    assert batch.input_ids.shape == (2, 32) and batch.attention_mask[0].sum() < 32 == batch.attention_mask[1].sum()
    model = AutoModelForCausalLM.from_pretrained(natural_run.run_dir / "model")
    assert model.config.max_position_embeddings >= tok.model_max_length
    assert model(**batch).logits.shape[:2] == (2, 32)


def test_exported_model_generates_with_its_cache_and_batches_like_single_prompts(natural_run):
    """use_cache on and left padding: each row of a batched greedy generation is the prompt's own generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(natural_run.run_dir / "model")
    tok = AutoTokenizer.from_pretrained(natural_run.run_dir / "model")
    assert model.config.use_cache is True and tok.padding_side == "left"
    prompts = ["def main():\n    return", "import os", "Copyright (C) 2007 Free Software", "x ="]
    greedy = dict(max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    batch = tok(prompts, padding=True, return_tensors="pt")
    assert batch.attention_mask[:, 0].tolist().count(0) == 3  # the shorter prompts are padded on the left
    batched = model.generate(**batch, **greedy)[:, batch.input_ids.shape[1] :]
    for prompt, row in zip(prompts, batched):
        single = tok(prompt, return_tensors="pt")
        alone = model.generate(**single, **greedy)[0, single.input_ids.shape[1] :]
        assert row.tolist() == alone.tolist(), prompt


def test_a_short_run_needs_no_warmup_override_and_prints_nothing_without_progress(corpus_text_dir, cache_dir, tmp_path):
    """train.total_steps=20 alone (the warm-up fits the run); run.progress=false: no DeepSpeed accelerator line,
    no "Writing model shards" bar, nothing on stdout."""
    import subprocess
    import sys

    cfg = small_config(corpus_text_dir, cache_dir, run={"out_dir": str(tmp_path), "progress": False})
    del cfg["train"]["warmup_steps"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code = (
        "from acodm_gym.config import load_config; from acodm_gym.runs.runner import train; "
        f"train(load_config({str(tmp_path / 'c.yaml')!r}, ['train.total_steps=20']), log=lambda _: None)"
    )
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}  # as a user's shell would start it
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Setting accelerator" not in done.stdout + done.stderr and "Writing model shards" not in done.stderr
    assert done.stdout == ""
    saved = yaml.safe_load((tmp_path / "natural-seed0" / "config.yaml").read_text())
    assert saved["train"]["total_steps"] == 20 and saved["train"]["warmup_steps"] == 2


def test_exported_mixture_is_reusable_as_a_static_agent(natural_run, corpus_text_dir, cache_dir, tmp_path):
    mixture = json.loads((natural_run.run_dir / "mixture.json").read_text())
    assert len(mixture["schedule"]["weights"]) == 20
    cfg = load_config(
        small_config(
            corpus_text_dir,
            cache_dir,
            agent={"name": "static", "weights": str(natural_run.run_dir / "mixture.json")},
            train={"total_steps": 3},
            run={"out_dir": str(tmp_path), "plots": False, "tensorboard": False},
        )
    )
    result = train(cfg, log=lambda _: None)
    expected = [mixture["mean_weights"][d] for d in result.summary["domains"]]
    np.testing.assert_allclose(list(result.summary["mean_weights"].values()), expected, atol=1e-12)


def _write_config(path, corpus_text_dir, cache_dir, **sections):
    path.write_text(yaml.safe_dump(small_config(corpus_text_dir, cache_dir, **sections)))
    return str(path)


def test_cli_train_with_overrides(corpus_text_dir, cache_dir, tmp_path, capsys):
    cfg = _write_config(tmp_path / "c.yaml", corpus_text_dir, cache_dir)
    code = main(
        [
            "train",
            "--config",
            cfg,
            "--agent",
            "uniform",
            "--out-dir",
            str(tmp_path / "runs"),
            "train.total_steps=4",
            "env.eval_interval=2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "outputs:" in out
    summary = json.loads((tmp_path / "runs" / "uniform-seed0" / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["val_curve"]["steps"] == [2, 4]
    assert list(summary["mean_weights"].values()) == pytest.approx([0.25] * 4)


def test_cli_unknown_key_is_a_clear_error(corpus_text_dir, cache_dir, tmp_path, capsys):
    cfg = _write_config(tmp_path / "c.yaml", corpus_text_dir, cache_dir)
    assert main(["train", "--config", cfg, "train.total_step=4"]) == 2
    err = capsys.readouterr().err
    assert "train.total_step" in err and "total_steps" in err


def test_cli_data_describes_the_corpus(corpus_text_dir, cache_dir, tmp_path, capsys):
    cfg = _write_config(tmp_path / "c.yaml", corpus_text_dir, cache_dir)
    assert main(["data", "--config", cfg]) == 0
    out = capsys.readouterr().out
    for domain in ("code", "docs", "fonts", "legal"):
        assert domain in out


def test_compare_writes_report_table_and_plots(corpus_text_dir, cache_dir, tmp_path, capsys):
    cfg = _write_config(
        tmp_path / "c.yaml",
        corpus_text_dir,
        cache_dir,
        run={"tensorboard": False},
        train={"total_steps": 6},
        env={"eval_interval": 3},
    )
    out = tmp_path / "cmp"
    assert (
        main(["compare", "--config", cfg, "--methods", "natural,uniform", "--seeds", "0", "1", "--out", str(out)]) == 0
    )
    report = (out / "report.md").read_text()
    main_table, per_domain = report.split("Per-domain test perplexity")
    for table in (main_table, per_domain):
        rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| method")]
        assert [r.split("|")[1].strip() for r in rows] == ["natural", "uniform"]
    assert main_table.count("| n/a (no ODM run) |") == 2  # steps to ODM's best: nothing to reach, not "not reached"
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["natural"]["seeds"] == [0, 1]
    assert len(results["methods"]["uniform"]["final_val_ppl"]) == 2
    assert (out / "val_ppl.png").exists() and (out / "test_ppl.png").exists()


def test_transitions_are_logged_for_offline_rl(corpus_text_dir, cache_dir, tmp_path):
    cfg = load_config(
        small_config(
            corpus_text_dir,
            cache_dir,
            agent={"name": "acodm", "options": {"warmup_steps": 2, "batch_size": 4, "width": 16}},
            train={"total_steps": 6},
            run={
                "out_dir": str(tmp_path),
                "log_transitions": True,
                "plots": False,
                "tensorboard": False,
                "checkpoint_interval": 3,
            },
        )
    )
    result = train(cfg, log=lambda _: None)
    t = np.load(result.run_dir / "transitions.npz")
    k = len(result.summary["domains"])
    assert t["obs"].shape == t["next_obs"].shape == (6, 3 * k + 1 + 2 * 4)
    assert t["action"].shape == t["vector_reward"].shape == (6, k) and t["reward"].shape == (6,)
    np.testing.assert_array_equal(t["next_obs"][:-1], t["obs"][1:])  # consecutive steps chain
    np.testing.assert_allclose(t["reward"], (t["action"] * t["vector_reward"]).sum(axis=1), rtol=1e-4, atol=1e-9)
    assert np.abs(t["vector_reward"]).max() > 0
    m = read_metrics(result.run_dir / "metrics.csv")  # an agent that learns from the reward logs it
    np.testing.assert_allclose(m["reward"], t["reward"], rtol=1e-6)
    np.testing.assert_allclose(
        np.stack([m[f"reward/{d}"] for d in result.summary["domains"]], axis=1), t["vector_reward"], rtol=1e-5
    )


def test_report_lists_each_agents_diagnostics_over_seeds():
    from acodm_gym.runs.compare import diagnostics_lines

    results = {
        "natural": {"diagnostics": [{}, {}]},
        "acodm": {"diagnostics": [{"reward_snr": 0.4, "td_error": 1.0}, {"reward_snr": 0.6}]},
    }
    lines = diagnostics_lines(results)
    assert "| method | reward_snr | td_error |" in lines
    assert "| natural | n/a | n/a |" in lines and "| acodm | 0.5 | 1 |" in lines
    assert diagnostics_lines({"natural": {"diagnostics": [{}]}}) == []
