"""Benchmark tasks: corpus recipes, planted domains, the task metric, references and the normalised score."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import acodm_gym
from acodm_gym.config import ConfigError, RecipeConfig, load_config, task_names
from acodm_gym.data.corpus import CorpusError, open_corpus
from acodm_gym.data.recipes import apply_recipe, boilerplate, chunk, word_salad
from acodm_gym.envs.pretrain_env import PretrainEnv
from acodm_gym.envs.task import (
    TaskMetric,
    corpus_signature,
    final_eval_sequences,
    load_references,
    normalised_score,
    read_references,
)
from acodm_gym.errors import RunDirError

from conftest import small_config

RECIPE = {
    "train_bytes": 200_000,
    "heldout_bytes": 8_000,
    "chunk_bytes": 1_000,
    "shares": {"code": 8.0, "docs": 4.0, "legal": 1.0, "fonts": 0.5, "salad": 4.0, "boiler": 2.0},
    "planted": {
        "salad": {"generator": "word_salad", "seed": 0},
        "boiler": {"generator": "boilerplate", "seed": 0, "templates": 3},
    },
}
CLEAN = ["code", "docs", "legal", "fonts"]
# The budget block every reference file records (``envs.task.BUDGET_KEYS``); a file without it is refused.
BUDGET = dict.fromkeys(("method", "runs", "steps", "machine_seconds", "sampler", "pruner", "code"))


def task_file(tmp_path: Path, corpus_text_dir: Path, cache: Path, **sections) -> Path:
    """A small task of our own: the recipe above over the local test corpus, scored on the clean domains."""
    cfg = small_config(corpus_text_dir, cache, **sections)
    cfg["data"]["recipe"] = RECIPE
    cfg["task"] = {"eval_domains": CLEAN, **sections.get("task", {})}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def small_task(tmp_path_factory, corpus_text_dir):
    root = tmp_path_factory.mktemp("task")
    return task_file(root, corpus_text_dir, root / "cache")


def _words(texts):
    return [w for t in texts for w in t.split()]


def test_recipe_is_deterministic_and_follows_its_shares(small_task, tmp_path):
    cfg = load_config(None, task=str(small_task))
    a = open_corpus(cfg.data, log=lambda _: None)
    again = load_config(None, [f"data.cache_dir={tmp_path / 'other'}"], task=str(small_task))
    b = open_corpus(again.data, log=lambda _: None)
    assert a.root != b.root and a.domains == b.domains and set(a.domains) == {*CLEAN, "salad", "boiler"}
    for d in a.domains:
        for split in ("train", "validation", "test"):
            assert (a.root / d / f"{split}.bin").read_bytes() == (b.root / d / f"{split}.bin").read_bytes()
    shares = np.array([RECIPE["shares"][d] for d in a.domains])
    weights = a.natural_weights()
    # token shares follow the byte shares to within tokenisation differences
    assert np.corrcoef(weights, shares / shares.sum())[0, 1] > 0.95
    assert weights[a.domains.index("code")] / weights[a.domains.index("fonts")] > 5
    # held-out sets have the same size for a rare domain as for a common one
    val = [len(a.tokens(d, "validation")) for d in CLEAN]
    assert max(val) < 3 * min(val)


def test_held_out_text_never_feeds_the_training_split_or_the_planted_domains():
    base = {"a": ["alpha beta gamma\n" * 400], "b": ["delta epsilon zeta\n" * 400]}
    recipe = RecipeConfig(
        shares={"a": 1, "b": 1, "s": 1},
        train_bytes=6_000,
        heldout_bytes=1_000,
        chunk_bytes=200,
        planted={"s": {"generator": "word_salad"}},
    )
    out = apply_recipe(recipe, base)
    assert apply_recipe(recipe, base) == out
    for d in ("a", "b"):
        assert sum(len(p) for p in out[d]["validation"]) >= 1_000
        assert not set(out[d]["validation"]) & set(out[d]["train"]) or len(set(base[d][0].splitlines())) == 1
    assert sum(len(p) for d in ("a", "b") for p in out[d]["train"]) <= 4_000 + 2 * 200


def test_a_held_out_top_up_takes_only_text_the_training_sample_left_unused():
    base = {
        "a": [f"line {i} alpha beta gamma\n" * 8 for i in range(300)],
        "b": [f"row {i} delta\n" * 8 for i in range(300)],
    }
    plain = RecipeConfig(shares={"a": 1, "b": 9}, train_bytes=20_000, heldout_bytes=1_000, chunk_bytes=200)
    topped = RecipeConfig(**{**plain.__dict__, "heldout_max_bytes": 5_000})
    before, after = apply_recipe(plain, base), apply_recipe(topped, base)
    total = {d: sum(map(len, base[d])) for d in base}
    for d in base:
        for split in ("train", "validation", "test"):
            assert after[d][split] == before[d][split]  # the training sample and the first held-out pieces stay
        extra_val, extra_test = after[d].get("validation_top_up", []), after[d].get("test_top_up", [])
        used = set(before[d]["train"]) | set(before[d]["validation"]) | set(before[d]["test"])
        assert not (set(extra_val) | set(extra_test)) & used and not set(extra_val) & set(extra_test)
        assert sum(map(len, extra_val)) <= 4_000 + 200
    # the rare training domain has text left over and is topped up to the limit; the common one has little
    assert sum(map(len, after["a"]["validation_top_up"])) >= 4_000
    rest_b = total["b"] - sum(len(p) for split in ("train", "validation", "test") for p in before["b"][split])
    assert sum(map(len, after["b"].get("validation_top_up", []))) <= rest_b // 2 + 200


def test_a_topped_up_corpus_trains_on_the_same_tokens_and_evaluates_on_more(small_task, tmp_path):
    cfg = load_config(None, task=str(small_task))
    plain = open_corpus(cfg.data, log=lambda _: None)
    topped = open_corpus(
        load_config(None, ["data.recipe.heldout_max_bytes=30000"], task=str(small_task)).data, log=lambda _: None
    )
    assert topped.root != plain.root
    assert (topped.root / "tokenizer.json").read_bytes() == (plain.root / "tokenizer.json").read_bytes()
    for d in plain.domains:
        assert np.array_equal(topped.tokens(d, "train"), plain.tokens(d, "train"))
        for split in ("validation", "test"):
            old, new = plain.tokens(d, split), topped.tokens(d, split)
            assert np.array_equal(new[: len(old)], old)  # the top-up goes after: training-time evaluation unchanged
    assert all(len(topped.tokens(d, "test")) > 2 * len(plain.tokens(d, "test")) for d in ("legal", "fonts"))
    assert all(len(topped.tokens(d, "test")) == len(plain.tokens(d, "test")) for d in ("salad", "boiler"))


def test_the_final_evaluation_reads_task_eval_tokens_and_references_must_match_it(small_task, tmp_path):
    topped = ["data.recipe.heldout_max_bytes=30000", "train.total_steps=4", "env.eval_interval=2"]
    env = PretrainEnv(task=str(small_task), overrides=topped, log=lambda _: None)
    env.reset(seed=0)
    for _ in range(4):
        _, _, _, _, info = env.step(env.natural_weights)
    # without task.eval_tokens the final evaluation is the training-time one
    assert info["final_val_metric"] == pytest.approx(info["val_metric"], rel=1e-6)
    seq = env.cfg.model.seq_len
    bigger = PretrainEnv(task=str(small_task), overrides=[*topped, f"task.eval_tokens={40 * seq}"], corpus=env.corpus)
    assert final_eval_sequences(bigger.cfg, "legal") == 40 > final_eval_sequences(env.cfg, "legal")
    assert final_eval_sequences(bigger.cfg, "salad") == final_eval_sequences(env.cfg, "salad")  # not scored
    bigger.backend = env.backend  # the same trained model, evaluated on more text
    result = bigger.episode_result()
    assert result["final_val_metric"] == pytest.approx(bigger.metric.value(bigger.evaluate("validation", final=True)))
    assert result["final_val_metric"] != pytest.approx(info["final_val_metric"], rel=1e-6)
    # a reference file computed on the smaller test set is refused for the larger one
    path = tmp_path / "refs.json"
    path.write_text(
        json.dumps(
            {
                "corpus": corpus_signature(env.corpus, env.cfg),
                "references": {"natural": {}, "best_static": {}},
                "search": BUDGET,
            }
        )
    )
    cfg = load_config(None, [*topped, f"task.eval_tokens={40 * seq}", f"task.references={path}"], task=str(small_task))
    with pytest.raises(ConfigError, match="another corpus or test set.*test_set.*acodm-gym reference --task"):
        load_references(cfg, env.corpus)
    assert load_references(load_config(None, [*topped, f"task.references={path}"], task=str(small_task)), env.corpus)


def test_word_salad_keeps_the_unigrams_and_loses_the_bigrams(corpus_text_dir):
    clean = [p.read_text() for p in sorted((corpus_text_dir / "docs").glob("*.txt"))]
    words = _words(clean)
    salad = word_salad(clean, 150_000, seed=0)
    salad_words = _words(salad)
    src, got = collections.Counter(words), collections.Counter(salad_words)
    for w, n in src.most_common(30):  # the same unigram distribution
        assert got[w] / len(salad_words) == pytest.approx(n / len(words), rel=0.25)

    def bigram_lift(ws, top):
        uni, bi = collections.Counter(ws), collections.Counter(zip(ws, ws[1:]))
        return {pair: bi[pair] * len(ws) / (uni[pair[0]] * uni[pair[1]]) for pair in top}

    top = [pair for pair, _ in collections.Counter(zip(words, words[1:])).most_common(20)]
    clean_lift, salad_lift = bigram_lift(words, top), bigram_lift(salad_words, top)
    assert np.median(list(clean_lift.values())) > 5  # real text: frequent bigrams far above independence
    assert np.median(list(salad_lift.values())) < 1.5  # salad: independent words
    assert word_salad(clean, 20_000, seed=0) == word_salad(clean, 20_000, seed=0) != word_salad(clean, 20_000, seed=1)


def test_boilerplate_repeats_a_few_templates(corpus_text_dir):
    clean = [p for f in sorted((corpus_text_dir / "legal").glob("*.txt")) for p in chunk(f.read_text(), 2_000)]
    docs = boilerplate(clean, 100_000, seed=0, templates=4)

    def shingles(text):
        ws = text.split()
        return {tuple(ws[i : i + 5]) for i in range(len(ws) - 4)}

    total = sum(len(d.split()) for d in docs)
    unique = set().union(*(shingles(d) for d in docs))
    assert len(docs) > 20 and len(unique) / total < 0.3  # most 5-word shingles repeat
    clean_total = sum(len(p.split()) for p in clean[:40])
    assert len(set().union(*(shingles(p) for p in clean[:40]))) / clean_total > 0.6
    bodies = [d.split("\n", 1)[1].split(" ") for d in docs]  # edits swap words one for one: a template's length stays
    assert len({len(b) for b in bodies}) <= 4
    first = bodies[0]
    same = [b for b in bodies if len(b) == len(first)]
    assert len(same) > 1 and all(np.mean([x == y for x, y in zip(first, b)]) > 0.85 for b in same)


def test_task_metric_is_the_geometric_mean_over_eval_domains_only():
    metric = TaskMetric(["a", "b", "junk"], ["a", "b"])
    losses = np.array([2.0, 4.0, 9.0])
    assert metric.value(losses) == pytest.approx(np.exp(3.0))
    assert metric.arithmetic(losses) == pytest.approx((np.exp(2.0) + np.exp(4.0)) / 2)
    assert TaskMetric(["a", "b"]).value(np.array([1.0, 3.0])) == pytest.approx(np.exp(2.0))
    with pytest.raises(ConfigError, match="not domains of the corpus"):
        TaskMetric(["a", "b"], ["a", "c"])


def test_the_episode_ends_with_the_task_metric_and_a_score(small_task, tmp_path):
    env = PretrainEnv(
        task=str(small_task), overrides=["train.total_steps=4", "env.eval_interval=2"], log=lambda _: None
    )
    env.reset(seed=0)
    info = {}
    for _ in range(4):
        _, _, _, truncated, info = env.step(env.natural_weights)
    assert truncated and info["score"] is None  # no references yet
    clean = [env.domains.index(d) for d in CLEAN]
    assert info["test_metric"] == pytest.approx(float(np.exp(info["test_loss"][clean].mean())))
    assert info["val_metric"] == pytest.approx(float(np.exp(info["val_loss"][clean].mean())))
    # with references: 0 for natural's value, 100 for the best static mixture's, by construction
    refs = {
        "corpus": corpus_signature(env.corpus, env.cfg),
        "references": {"natural": {"test_metric": [110.0, 130.0]}, "best_static": {"test_metric": [90.0, 90.0]}},
        "search": BUDGET,
    }
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(refs))
    scored = PretrainEnv(task=str(small_task), overrides=[f"task.references={path}"], corpus=env.corpus)
    assert normalised_score(120.0, scored.references) == pytest.approx(0.0)
    assert normalised_score(90.0, scored.references) == pytest.approx(100.0)
    assert normalised_score(80.0, scored.references) == pytest.approx(133.33, abs=0.01)  # an online method may beat it


def test_references_of_another_corpus_are_refused(small_task, tmp_path):
    cfg = load_config(None, task=str(small_task))
    corpus = open_corpus(cfg.data, log=lambda _: None)
    other = {**corpus_signature(corpus, cfg), "tokenizer": "0123456789abcdef"}
    path = tmp_path / "refs.json"
    path.write_text(json.dumps({"corpus": other, "references": {"natural": {}, "best_static": {}}, "search": BUDGET}))
    cfg = load_config(None, [f"task.references={path}"], task=str(small_task))
    with pytest.raises(ConfigError, match="another corpus.*acodm-gym reference --task"):
        load_references(cfg, corpus)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a valid reference file"):
        load_references(cfg, corpus)
    cfg = load_config(None, [f"task.references={tmp_path / 'missing.json'}"], task=str(small_task))
    with pytest.raises(ConfigError, match="does not exist"):
        load_references(cfg, corpus)
    # the file shipped with a task, on a corpus that built differently: the task runs, unscored, with a warning
    shipped = load_config(None, ["task.name=noisy"], task=str(small_task))
    with pytest.warns(UserWarning, match="another corpus.*No normalised score.*acodm-gym reference --task noisy"):
        assert load_references(shipped, corpus) is None


def test_bad_task_input_fails_before_any_training(small_task, corpus_text_dir, tmp_path):
    with pytest.raises(
        ConfigError, match="Unknown task 'noisey'. Did you mean 'noisy'.*default, noisy, skewed, target"
    ):
        load_config(None, task="noisey")
    with pytest.raises(ConfigError, match="unknown generator 'shuffle'"):
        load_config(None, ["data.recipe.planted.salad.generator=shuffle"], task=str(small_task))
    with pytest.raises(ConfigError, match="sum to a positive value"):
        load_config({"data": {"recipe": {"shares": {"code": 0, "docs": 0}}}})
    with pytest.raises(ConfigError, match="has no share"):
        load_config({"data": {"recipe": {"shares": {"code": 1}, "planted": {"junk": {"generator": "word_salad"}}}}})
    with pytest.raises(ConfigError, match="heldout_max_bytes=100 is below heldout_bytes=8000"):
        load_config(None, ["data.recipe.heldout_max_bytes=100"], task=str(small_task))
    with pytest.raises(ConfigError, match="task.eval_tokens=10 is less than one sequence"):
        load_config(None, ["task.eval_tokens=10"], task=str(small_task))
    cfg = load_config(
        small_config(corpus_text_dir, tmp_path / "c", data={"recipe": {"shares": {"code": 1, "prose": 1}}})
    )
    with pytest.raises(CorpusError, match="names \\['prose'\\], neither a domain of the base corpus"):
        open_corpus(cfg.data, log=lambda _: None)
    with pytest.raises(ConfigError, match="task.eval_domains names \\['music'\\]"):
        PretrainEnv(task=str(small_task), overrides=["task.eval_domains=[code, music]"], log=lambda _: None)


def test_every_shipped_task_is_registered_and_loads():
    assert task_names() == ["default", "noisy", "skewed", "target"]
    for name, env_id in acodm_gym.TASK_ENV_IDS.items():
        assert gym.spec(env_id).kwargs == {"task": name}
        cfg = load_config(None, task=name)
        assert cfg.task.name == name
    noisy = load_config(None, task="noisy")
    shares = noisy.data.recipe.shares
    planted = sum(shares[d] for d in noisy.data.recipe.planted)
    assert planted / sum(shares.values()) >= 0.3 and set(noisy.task.eval_domains).isdisjoint(noisy.data.recipe.planted)
    skewed = load_config(None, task="skewed").data.recipe.shares
    assert max(skewed.values()) / min(skewed.values()) >= 50
    assert load_config(None, task="default").data.recipe.shares == {}  # Pretrain-v0 unchanged


def test_shipped_references_were_computed_at_their_tasks_evaluation_size():
    """A shipped file read on fewer (or more) test tokens than its task's final evaluation reads is stale: it
    would be refused on every machine. Cheap: the file's record of its test set against the config."""
    for name in task_names():
        cfg = load_config(None, task=name)
        refs = read_references(cfg.task)
        if refs is None:
            continue
        expected = {d: final_eval_sequences(cfg, d) * cfg.model.seq_len for d in refs["corpus"]["domains"]}
        assert refs["corpus"]["test_tokens"] == expected, name


def test_compare_on_a_task_scores_every_method_and_reuses_finished_runs(small_task, tmp_path):
    from acodm_gym.runs.compare import compare

    cfg = load_config(None, ["train.total_steps=6", "env.eval_interval=3"], task=str(small_task))
    finished = []  # what on_run sees: each run as soon as it is finished, seed by seed
    out = compare(
        cfg,
        seeds=[0, 1],
        methods=["natural", "uniform"],
        out=tmp_path / "cmp",
        log=lambda _: None,
        on_run=lambda d: finished.append((d.name, (d / "summary.json").is_file(), (d.parent / "report.md").exists())),
    )
    assert finished == [(f"{m}-seed{s}", True, False) for s in (0, 1) for m in ("natural", "uniform")]
    results = json.loads((out / "results.json").read_text())
    assert results["metric_domains"] == CLEAN and set(results["methods"]) == {"natural", "uniform"}
    for r in results["methods"].values():
        assert r["seeds"] == [0, 1] and len(r["test_metric"]) == 2 and r["score"] == [None, None]
    assert "salad" in (out / "report.md").read_text()  # every domain is shown, also those not scored
    before = (out / "natural-seed0" / "summary.json").stat().st_mtime_ns
    logged = []
    compare(cfg, seeds=[0, 1], methods=["natural", "uniform"], out=tmp_path / "cmp", log=logged.append)
    assert (out / "natural-seed0" / "summary.json").stat().st_mtime_ns == before
    assert sum("reused" in line for line in logged) == 4
    # a run of the references differs only in task.references: still reused (report recomputes every score)
    unscored = load_config(cfg, ["task.references=none"])
    compare(unscored, seeds=[0], methods=["natural"], out=tmp_path / "cmp", log=lambda _: None)
    assert (out / "natural-seed0" / "summary.json").stat().st_mtime_ns == before


def test_a_sweep_continues_from_the_records_of_its_finished_runs(small_task, tmp_path):
    from acodm_gym.runs.compare import compare
    from acodm_gym.runs.records import restore_records, save_records

    cfg = load_config(None, ["train.total_steps=4", "env.eval_interval=2"], task=str(small_task))
    first = compare(cfg, seeds=[0], methods=["natural", "odm"], out=tmp_path / "a", log=lambda _: None)
    assert save_records(first, tmp_path / "records") == ["natural-seed0", "odm-seed0"]
    assert save_records(first, tmp_path / "records") == []  # nothing changed: nothing rewritten
    assert sorted(p.name for p in (tmp_path / "records" / "odm-seed0").iterdir()) == [
        "config.yaml",
        "mixture.json",
        "summary.json",
    ]
    assert not (tmp_path / "records" / "natural-seed0" / "mixture.json").exists()  # a constant: in its config
    # another machine: a fresh sweep directory with one run of its own, the others restored and reused
    (tmp_path / "b" / "odm-seed0").mkdir(parents=True)
    (tmp_path / "b" / "odm-seed0" / "mine.txt").write_text("kept")
    assert restore_records(tmp_path / "records", tmp_path / "b") == ["natural-seed0"]
    assert (tmp_path / "b" / "odm-seed0" / "mine.txt").read_text() == "kept"  # a run directory there is left alone
    logged = []
    compare(cfg, seeds=[0], methods=["natural"], out=tmp_path / "b", log=logged.append)
    assert any("reused" in line for line in logged) and not (tmp_path / "b" / "natural-seed0" / "model").exists()
    restored = json.loads((tmp_path / "b" / "results.json").read_text())["methods"]["natural"]["test_metric"]
    assert restored == json.loads((first / "results.json").read_text())["methods"]["natural"]["test_metric"]


def test_learning_agents_get_the_best_static_mixture_as_their_diagnostic_target(small_task, tmp_path):
    from acodm_gym.runs.runner import prepare_config

    path = tmp_path / "refs.json"
    refs = {"natural": {"weights": [0.5, 0.5]}, "best_static": {"weights": [0.7, 0.3]}}  # a reference file has both
    path.write_text(json.dumps({"domains": ["code", "docs"], "references": refs, "search": BUDGET}))
    acodm = prepare_config(load_config(None, [f"task.references={path}", "agent.name=acodm"], task=str(small_task)))
    assert acodm.agent.options["target_weights"] == {"code": 0.7, "docs": 0.3}
    odm = prepare_config(load_config(None, [f"task.references={path}", "agent.name=odm"], task=str(small_task)))
    assert "target_weights" not in odm.agent.options  # EXP3 has no actor to diagnose


def test_a_multi_episode_proxy_stage_carries_the_agent_across_episodes(small_task, tmp_path):
    import torch

    from acodm_gym.runs.compare import proxy_stage

    cfg = load_config(
        None,
        [
            "proxy.episodes=2",
            "train.total_steps=6",
            "env.eval_interval=3",
            f"run.out_dir={tmp_path}",
            "run.seed=3",
            "agent.options={warmup_steps: 2, batch_size: 4, width: 16}",
        ],
        task=str(small_task),
    )
    cfg.run.proxy_model = "tiny-proxy"
    actor = proxy_stage(cfg, "stage", log=lambda _: None)  # learn's training phase (runs/learn.py)
    assert actor == tmp_path / "stage" / "agent.pt"
    episodes = tmp_path / "stage" / "train"
    first = yaml.safe_load((episodes / "ep-000" / "config.yaml").read_text())
    second = yaml.safe_load((episodes / "ep-001" / "config.yaml").read_text())
    assert (first["run"]["seed"], second["run"]["seed"]) == (3, 1003)  # a fresh proxy model each episode
    assert (first["env"]["episode"], first["model"]["hidden_size"]) == ("training", 64)  # the proxy model
    assert second["agent"]["init_from"] == str(episodes / "ep-000" / "agent.pt")
    assert actor.read_bytes() == (episodes / "ep-001" / "agent.pt").read_bytes()
    blob = torch.load(actor, weights_only=True)
    assert blob["state"]["t"] == 12  # the counters (and the replay buffer) run on across both episodes
    with pytest.raises(ConfigError, match="proxy.episodes must be at least 1"):
        load_config(None, ["proxy.episodes=0"])
    with pytest.raises(ConfigError, match="agent.init_from=.* is not a file"):
        load_config(None, [f"agent.init_from={tmp_path / 'none.pt'}"])


def test_a_proxy_comparison_restored_from_records_trains_its_stage_again_only_when_needed(small_task, tmp_path):
    from acodm_gym.runs.compare import run_method
    from acodm_gym.runs.records import restore_records, save_records

    cfg = load_config(
        None,
        [
            "train.total_steps=4",
            "env.eval_interval=2",
            "agent.name=acodm",
            "agent.options.warmup_steps=2",  # AC-ODM's option: the proxy stage takes it, the frozen target must not
        ],
        task=str(small_task),
    )
    cfg.run.proxy_model = "tiny-proxy"
    out, records, trained = tmp_path / "runs", tmp_path / "records", tmp_path / "trained"
    run_method(cfg, "acodm-proxy", 0, out, log=lambda _: None)
    assert (out / "acodm-proxy-stage-seed0" / "agent.pt").is_file()
    stage_cfg = yaml.safe_load((out / "acodm-proxy-stage-seed0" / "train" / "ep-000" / "config.yaml").read_text())
    assert stage_cfg["agent"]["options"]["warmup_steps"] == 2
    save_records(out, records)
    out.rename(trained)  # another machine, or a clean clone: only the records are there
    restore_records(records, out)
    assert not (out / "acodm-proxy-stage-seed0" / "agent.pt").exists()  # a record holds no agent

    lines: list[str] = []
    run_method(cfg, "acodm-proxy", 0, out, log=lines.append)
    assert lines == [f"{out / 'acodm-proxy-seed0'} finished earlier with this config: reused"]  # stage untouched

    shutil.rmtree(out / "acodm-proxy-seed0")  # the target stage must run, so it needs the actor
    lines.clear()
    run_method(cfg, "acodm-proxy", 0, out, log=lines.append)
    assert "== training episode 1 of 1 (model seed 0)" in lines  # the stage's training episode ran again
    again, first = (json.loads((d / "acodm-proxy-seed0" / "summary.json").read_text()) for d in (out, trained))
    assert again["test_metric"] == first["test_metric"]  # the same seed trains the same stage
    stage = "acodm-proxy-stage-seed0/agent.pt"
    assert (out / stage).read_bytes() == (trained / stage).read_bytes()

    other = load_config(cfg, ["agent.options.warmup_steps=3"])  # a stage of other AC-ODM options: not this target
    with pytest.raises(RunDirError, match="acodm-proxy-stage-seed0.*which a fresh run would replace"):
        run_method(other, "acodm-proxy", 0, out, log=lambda _: None)


@pytest.mark.parametrize("content", ["truncated", "{}", "binary"])
def test_a_broken_reference_file_is_one_line_naming_it(small_task, tmp_path, capsys, content):
    """``task.references=`` a truncated, empty or binary file: read through the checks of the shipped files."""
    from acodm_gym.cli import main

    shipped = (Path(acodm_gym.__file__).parent / "configs" / "tasks" / "noisy.references.json").read_text()
    data = {"truncated": shipped[: len(shipped) // 2].encode(), "{}": b"{}", "binary": bytes(range(256)) * 4}[content]
    path = tmp_path / "refs.json"
    path.write_bytes(data)
    argv = [
        "train",
        "--task",
        str(small_task),
        "--agent",
        "acodm",
        f"task.references={path}",
        f"run.out_dir={tmp_path}",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err  # (an installed package may print its own notice to stderr on import)
    lines = [line for line in err.splitlines() if path.name in line or "Traceback" in line]
    assert len(lines) == 1 and lines[0].startswith(f"error: Reference file {path} is not a valid reference file"), err
    assert not (tmp_path / "acodm-seed0").exists()


def test_gym_make_takes_a_single_override_string(config):
    env = gym.make(acodm_gym.ENV_ID, config=config, overrides="train.total_steps=3", log=lambda _: None)
    assert env.unwrapped.cfg.train.total_steps == 3
    env.close()
