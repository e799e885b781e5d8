"""Configuration: typos are errors that say what to write instead; overrides parse as YAML."""

from __future__ import annotations

import pytest

from acodm_gym.config import Config, ConfigError, load_config, parse_override


def test_defaults_are_valid_and_typed():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.train.loss_weighting == "alpha" and cfg.env.reward_variant == "paper"
    assert isinstance(cfg.train.lr, float) and isinstance(cfg.train.total_steps, int)


def test_unknown_key_names_the_key_and_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.learning_rat=0.1"])
    msg = str(err.value)
    assert "train.learning_rat" in msg
    with pytest.raises(ConfigError) as err:
        load_config({"train": {"totl_steps": 5}})
    assert "train.totl_steps" in str(err.value) and "Did you mean 'train.total_steps'" in str(err.value)
    with pytest.raises(ConfigError, match="Did you mean 'env.eval_interval'"):
        load_config(None, ["env.eval_intervall=3"])
    with pytest.raises(ConfigError, match="'modle'.*Did you mean 'model'"):
        load_config({"modle": {"hidden_size": 8}})


@pytest.mark.parametrize(
    "text, keys, value",
    [
        ("train.total_steps=200", ["train", "total_steps"], 200),
        ("train.lr=0.5", ["train", "lr"], 0.5),
        ("env.compute_reward=false", ["env", "compute_reward"], False),
        ("data.domains=[code, legal]", ["data", "domains"], ["code", "legal"]),
        ("train.micro_batch_size=null", ["train", "micro_batch_size"], None),
        ("run.name=a=b", ["run", "name"], "a=b"),
    ],
)
def test_parse_override_reads_yaml_values(text, keys, value):
    assert parse_override(text) == (keys, value)


def test_overrides_are_applied_with_the_declared_types():
    cfg = load_config(
        None,
        [
            "train.lr=1e-3",  # YAML 1.1 reads this as a string: it must still become a float
            "train.total_steps=1e3",
            "train.betas=[0.8, 0.99]",
            "data.domains=[code, legal]",
            "env.compute_reward=false",
            "run.name=2024",
            "train.micro_batch_size=4",
        ],
    )
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.train.total_steps == 1000 and isinstance(cfg.train.total_steps, int)
    assert cfg.train.betas == [0.8, 0.99]
    assert cfg.data.domains == ["code", "legal"]
    assert cfg.env.compute_reward is False
    assert cfg.run.name == "2024"
    assert cfg.train.micro_batch_size == 4


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.total_steps=abc", "train.total_steps"),
        ("train.total_steps=2.5", "train.total_steps"),
        ("env.compute_reward=maybe", "env.compute_reward"),
        ("train.betas=0.9", "train.betas"),
        ("train=3", "train"),
    ],
)
def test_badly_typed_values_are_config_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_override_without_equals_sign_explains_the_form():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["train.lr"])


def test_dict_options_merge_across_overrides():
    cfg = load_config({"agent": {"options": {"gamma": 0.9}}}, ["agent.options.tau=0.01"])
    assert cfg.agent.options == {"gamma": 0.9, "tau": 0.01}


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("model.arch=gpt2", "gpt_neox, llama"),
        ("train.loss_weighting=sum", "alpha, mean"),
        ("env.reward_variant=doge", "paper, authors"),
        ("env.reward_target=validation", "corpus, eval_domains"),
        ("env.scalarization=max", "alpha_weighted, sum, mean"),
        ("model.dtype=float8", "float32"),
    ],
)
def test_invalid_choices_list_the_allowed_values(override, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert allowed in str(err.value) and override.split("=")[1] in str(err.value)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.total_steps=0", "total_steps"),
        ("train.exploration_share=1.0", "exploration_share"),
        ("env.reward_depths=[0.0, 1.0]", "reward_depths"),
        ("env.num_norm_probes=0", "num_norm_probes"),
        ("data.val_fraction=0.49", "val_fraction"),
        ("model.seq_len=0", r"model.seq_len=0: set model.seq_len >= 2"),
        ("model.seq_len=1", r"model.seq_len >= 2"),
        ("model.num_layers=0", r"model.num_layers=0: model sizes must be >= 1"),
        ("model.hidden_size=0", r"model.hidden_size=0"),
        ("model.num_heads=0", r"model.num_heads=0"),
        ("model.intermediate_size=0", r"model.intermediate_size=0"),
        ("model.num_heads=3", r"divisible by model.num_heads=3"),
        ("model.num_kv_heads=3", r"num_kv_heads=3 must be >= 1 and divide"),
        ("train.lr=0", r"train.lr=0.0: set a positive learning rate"),
        ("train.lr=-1e-3", r"positive learning rate"),
        ("train.warmup_steps=600", r"warmup_steps=600 must be >= 0 and less than train.total_steps=600"),
        ("train.warmup_steps=-1", r"warmup_steps=-1"),
        ("train.grad_clip=-1", r"train.grad_clip=-1.0 must be >= 0 \(0: no clipping\)"),
        ("train.threads=0", r"train.threads=0 must be >= 1"),
        ("train.betas=[0.9]", r"give AdamW's two betas"),
        ("train.betas=[0.9, 0.95, 0.99]", r"two betas"),
        ("train.betas=[0.9, 1.0]", r"each in \[0, 1\)"),
        ("train.device=gpu", r"train.device='gpu' is not a device: use cpu, cuda, cuda:N"),
        ("train.device=cuda0", r"not a device"),
        ("train.min_lr_ratio=1.5", r"min_lr_ratio=1.5 must be in \[0, 1\]"),
        ("train.weight_decay=-0.1", r"weight_decay=-0.1 must be >= 0"),
        ("env.eval_batches=0", r"env.eval_batches=0 must be >= 1"),
        ("env.eval_interval=-1", r"env.eval_interval=-1 >= 0"),
    ],
)
def test_out_of_range_values_are_rejected(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override",
    [
        "train.device=cuda",
        "train.device=cuda:1",
        "train.device=mps",
        "train.grad_clip=0",
        "train.threads=null",
        "train.warmup_steps=0",
        "train.min_lr_ratio=1",
        "env.eval_interval=0",
        "model.seq_len=2",
    ],
)
def test_edge_values_in_range_are_accepted(override):
    load_config(None, [override])


def test_config_module_does_not_import_torch():
    """The CLI validates configs before torch is touched, so a config error is reported in well under 2 s."""
    import subprocess
    import sys

    code = (
        "import sys, acodm_gym.config as c; c.load_config(None, ['train.device=cuda:0']); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_yaml_file_with_base_and_model_preset(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text(
        "train:\n  total_steps: 50\n  warmup_steps: 5\n  lr: 1e-3\nenv:\n  eval_interval: 7\n"
    )
    sub = tmp_path / "exp"
    sub.mkdir()
    (sub / "run.yaml").write_text(
        "base: ../base.yaml\ntrain:\n  batch_size: 4\nmodel:\n  preset: tiny-proxy\n  seq_len: 64\n"
    )
    monkeypatch.chdir(tmp_path.parent)  # a relative base is found next to the file, not the working directory
    cfg = load_config(sub / "run.yaml")
    assert cfg.train.total_steps == 50 and cfg.train.batch_size == 4  # base merged key by key
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.env.eval_interval == 7
    assert (cfg.model.hidden_size, cfg.model.num_layers) == (64, 2)  # from configs/models/tiny-proxy.yaml
    assert cfg.model.seq_len == 64  # the file's own keys win over the preset


def test_missing_config_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("content", ["", "\n", "# only a comment\n"])
def test_empty_config_file_warns_naming_it(tmp_path, content):
    empty = tmp_path / "empty.yaml"
    empty.write_text(content)
    with pytest.warns(UserWarning, match=f"Config file {empty} is empty: every key keeps its default"):
        cfg = load_config(empty)
    assert cfg.to_dict() == load_config().to_dict()


def test_config_round_trips_and_fingerprint_tracks_sections():
    cfg = load_config(None, ["train.lr=0.01"])
    again = load_config(cfg)
    assert again.to_dict() == cfg.to_dict()
    other = load_config(None, ["train.lr=0.02"])
    assert cfg.fingerprint("data", "model") == other.fingerprint("data", "model")
    assert cfg.fingerprint("train") != other.fingerprint("train")


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["data.vocab_size=10"], r"data.vocab_size=10 is below 257, the smallest byte-level BPE"),
        (["data.recipe.shares={a: .inf, b: 1}"], r"data.recipe.shares.a=inf: a share must be a finite number >= 0"),
        (["env.num_norm_probes=100"], r"env.num_norm_probes=100 is more than the model's 4 layers"),
        (["env.num_norm_probes=6", "model.num_layers=2"], r"Set env.num_norm_probes to at most 4"),
    ],
)
def test_settings_that_would_build_something_else_silently_are_errors(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, overrides)


def test_a_proxy_model_may_repeat_layers_to_match_its_targets_observation():
    cfg = load_config(None, ["env.num_norm_probes=9", "model.preset=pythia-1b"])
    proxy = load_config(cfg, {"model": {"preset": cfg.run.proxy_model}})  # what the proxy stage trains
    assert proxy.model.num_layers == 2 and proxy.env.num_norm_probes == 9
    assert load_config(None, ["data.vocab_size=10", "data.tokenizer=my.json"]).data.vocab_size == 10  # unused


def test_a_single_override_string_is_one_override():
    """``gym.make(id, overrides="train.total_steps=3")``: a string is one override, not a list of characters."""
    cfg = load_config(None, "train.total_steps=300")
    assert cfg.train.total_steps == 300
    with pytest.raises(ConfigError, match="Override 'train.total_steps' must look like"):
        load_config(None, "train.total_steps")


def test_warmup_fits_short_runs_unless_set_and_shipped_configs_keep_50():
    from acodm_gym.config import CONFIG_DIR, task_names

    assert load_config(None, ["train.total_steps=20"]).train.warmup_steps == 2  # nothing else to override
    assert load_config(None, ["train.total_steps=7"]).train.warmup_steps == 0
    assert load_config(None, ["train.total_steps=200"]).train.warmup_steps == 25
    # set explicitly: the old behaviour, also when it does not fit the run
    assert load_config(None, ["train.total_steps=20", "train.warmup_steps=5"]).train.warmup_steps == 5
    with pytest.raises(ConfigError, match=r"warmup_steps=50 must be .* less than train.total_steps=20.*=2, or null"):
        load_config(None, ["train.total_steps=20", "train.warmup_steps=50"])
    # the embedded default, the shipped configs and every task warm up for 50 steps, as before
    assert load_config().train.warmup_steps == 50
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        assert load_config(path).train.warmup_steps == 50, path.name
    for task in task_names():
        assert load_config(task=task).train.warmup_steps == 50, task
    # resolved once: a loaded config (config.yaml, a resume) keeps its steps when the run is shortened
    assert load_config(load_config(), ["train.total_steps=300"]).train.warmup_steps == 50
