"""Offline datasets (runs/offline.py): a Minari dataset per task and behaviour, built from the logged
transitions of real episodes on the small task, extended on a second call, refused for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_tasks import task_file

from acodm_gym.cli import main
from acodm_gym.config import load_config
from acodm_gym.runs.logger import read_metrics
from acodm_gym.runs.offline import build

from conftest import benchmark_script

minari = pytest.importorskip("minari", reason="offline datasets need: pip install -e '.[offline]'")
DATASET = "acodm/small/dirichlet-natural-v0"


@pytest.fixture()
def task(tmp_path, corpus_text_dir, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return task_file(tmp_path, corpus_text_dir, tmp_path / "cache", task={"name": "small"})


def _cfg(task, tmp_path):
    overrides = ["train.total_steps=6", "env.eval_interval=3", f"run.out_dir={tmp_path / 'runs'}"]
    return load_config(None, overrides + ["run.plots=false", "run.tensorboard=false"], task=str(task))


def test_a_dataset_loads_with_minari_and_its_episodes_are_the_logged_transitions(task, tmp_path):
    cfg = _cfg(task, tmp_path)
    manifest = build(cfg, "dirichlet-natural", 2, log=lambda _: None)
    assert manifest["dataset_id"] == "acodm/small/dirichlet-natural-v0" and manifest["total_episodes"] == 2
    dataset = minari.load_dataset("acodm/small/dirichlet-natural-v0")
    assert dataset.total_episodes == 2 and dataset.total_steps == 12
    runs = tmp_path / "runs" / "datasets" / "small" / "dirichlet-natural"
    weights = []
    for episode, row in zip(dataset.iterate_episodes(), manifest["episodes"]):
        run = runs / f"ep-{episode.id:03d}"
        t = np.load(run / "transitions.npz")
        np.testing.assert_array_equal(episode.observations[:-1], t["obs"])
        np.testing.assert_array_equal(episode.observations[1:], t["next_obs"])
        np.testing.assert_array_equal(episode.actions, t["action"])
        np.testing.assert_array_equal(episode.rewards, t["reward"])
        np.testing.assert_array_equal(episode.infos["vector_reward"][1:], t["vector_reward"])
        assert np.abs(t["vector_reward"]).max() > 0  # a static behaviour's reward is computed too
        val = read_metrics(run / "metrics.csv")["val_metric"]
        np.testing.assert_array_equal(episode.infos["val_metric"][1:], val)
        assert np.isfinite(val[[2, 5]]).all() and np.isnan(val[[0, 1, 3, 4]]).all()  # validation at steps 3 and 6
        assert list(episode.truncations) == [False] * 5 + [True] and not episode.terminations.any()
        assert episode.id == row["episode"] and row["seed"] == 2000 + episode.id
        weights.append(list(row["mean_weights"].values()))
    assert not np.allclose(weights[0], weights[1])  # a fresh random mixture each episode
    meta = dataset.storage.metadata
    assert meta["algorithm_name"] == "dirichlet-natural" and meta["author"] == {"acodm-gym"}
    assert meta.get("ref_min_score") is None and meta.get("ref_max_score") is None  # the small task has no references
    env = dataset.recover_environment()  # the env spec holds the config: Minari rebuilds the env
    assert env.unwrapped.cfg.to_dict() == cfg.to_dict() and env.unwrapped.k == 6
    env.close()

    lines = []
    again = build(cfg, "dirichlet-natural", 3, log=lines.append)  # extend: the first two are reused
    assert sum("finished earlier with this config: reused" in line for line in lines) == 2
    assert again["episodes"][:2] == manifest["episodes"] and again["total_episodes"] == 3
    assert minari.load_dataset("acodm/small/dirichlet-natural-v0").total_episodes == 3


def test_a_dataset_carried_to_another_machine_is_written_again_from_its_records_without_rerunning(task, tmp_path):
    """The campaign's carry (benchmarks/carry.py): a dataset's finished episodes kept as records (config, summary,
    transitions, validation metric; no model) and put back on a fresh machine give the same Minari dataset."""
    carry, cfg = benchmark_script("carry"), _cfg(task, tmp_path)
    build(cfg, "dirichlet-natural", 2, log=lambda _: None)
    first = [(e.observations, e.actions, e.rewards, e.infos) for e in minari.load_dataset(DATASET).iterate_episodes()]
    minari.delete_dataset(DATASET)
    runs, records = tmp_path / "runs" / "datasets" / "small", tmp_path / "records" / "small"
    assert carry.save_datasets(runs, records) == ["dirichlet-natural/ep-000", "dirichlet-natural/ep-001"]
    assert carry.save_datasets(runs, records) == []  # nothing new
    kept = records / "dirichlet-natural" / "ep-000"
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml", "metrics.csv", "summary.json", "transitions.npz"]
    assert kept.joinpath("metrics.csv").read_text().splitlines()[0] == "step,val_metric"

    moved = tmp_path / "moved"
    assert carry.restore(records, moved / "datasets" / "small") == ["dirichlet-natural"]
    lines: list[str] = []
    build(load_config(cfg, [f"run.out_dir={moved}"]), "dirichlet-natural", 2, log=lines.append)
    assert sum("finished earlier with this config: reused" in line for line in lines) == 2  # nothing trained
    again = list(minari.load_dataset(DATASET).iterate_episodes())
    assert len(again) == len(first) == 2
    for (obs, actions, rewards, infos), episode in zip(first, again):
        np.testing.assert_array_equal(episode.observations, obs)
        np.testing.assert_array_equal(episode.actions, actions)
        np.testing.assert_array_equal(episode.rewards, rewards)
        for key in ("vector_reward", "val_metric"):
            np.testing.assert_array_equal(episode.infos[key], infos[key])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--behaviour", "greedy", "--episodes", "2"], "Unknown behaviour 'greedy'; choose a registered agent"),
        (["--behaviour", "odm", "--episodes", "1", "agent.options.updater=exp4"], "choose one of exp3, smoothed_mean"),
        (["--behaviour", "uniform", "--episodes", "0"], "--episodes 0: a dataset needs at least 1"),
        (["--behaviour", "uniform", "--episodes", "1", "env.num_norm_probes=2"], "another layout"),
    ],
)
def test_bad_dataset_input_fails_before_any_episode(task, tmp_path, capsys, args, message):
    manifest = tmp_path / "uniform.manifest.json"
    cfg = load_config(None, task=str(task))
    from acodm_gym.data.corpus import open_corpus
    from acodm_gym.runs.offline import signature

    manifest.write_text(json.dumps({"signature": signature(cfg, open_corpus(cfg.data, log=lambda _: None))}))
    code = main(
        ["dataset", "--task", str(task), "--out-dir", str(tmp_path / "runs"), "--manifest", str(manifest), *args]
    )
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_reference_scores_make_minaris_normalised_score_the_tasks_score(tmp_path):
    from acodm_gym.envs.task import normalised_score
    from acodm_gym.runs.offline import _reference_scores

    refs = {"references": {"natural": {"test_metric": [10.0, 12.0]}, "best_static": {"test_metric": [8.0, 8.0]}}}
    refs["search"] = dict.fromkeys(("method", "runs", "steps", "machine_seconds", "sampler", "pruner", "code"))
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(refs))
    low, high = _reference_scores(load_config(None, [f"task.references={path}"]))
    assert (low, high) == (11.0, 8.0)  # natural's and the best static mixture's mean test metric
    for metric in (7.0, 9.5, 11.0, 13.0):  # Minari's (x - min) / (max - min) of a test metric x
        assert (metric - low) / (high - low) == pytest.approx(normalised_score(metric, refs) / 100)


def test_a_killed_dataset_build_resumes_and_writes_the_same_dataset(task, tmp_path):
    """Killed inside its second episode, the build loses nothing: the rerun reuses the first episode, resumes
    the second from its checkpoint, and writes the dataset an uninterrupted build writes."""
    import signal
    import time

    from test_resume import _cli, _finish

    base = ["dataset", "--task", str(task), "--behaviour", "uniform", "--episodes", "2"]
    extra = ["train.total_steps=8", "run.checkpoint_interval=3", "run.plots=false", "run.tensorboard=false"]
    _finish(_cli([*base, "--out-dir", str(tmp_path / "ref"), *extra]))
    reference = minari.load_dataset("acodm/small/uniform-v0")
    ref_episodes = [(e.observations, e.actions, e.rewards) for e in reference.iterate_episodes()]
    minari.delete_dataset("acodm/small/uniform-v0")

    killed = [*base, "--out-dir", str(tmp_path / "killed"), *extra]
    second = tmp_path / "killed" / "datasets" / "small" / "uniform" / "ep-001"
    proc = _cli(killed, delay=0.05)
    deadline = time.monotonic() + 180
    while not (second / "checkpoints" / "latest").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert "acodm/small/uniform-v0" not in minari.list_local_datasets()
    out = _finish(_cli(killed))
    assert "ep-000 finished earlier with this config: reused" in out and f"resuming {second}" in out
    for (obs, actions, rewards), episode in zip(
        ref_episodes, minari.load_dataset("acodm/small/uniform-v0").iterate_episodes()
    ):
        np.testing.assert_array_equal(episode.observations, obs)
        np.testing.assert_array_equal(episode.actions, actions)
        np.testing.assert_array_equal(episode.rewards, rewards)


def test_a_drifting_behaviour_plays_a_schedule_that_moves_between_drawn_mixtures(task, tmp_path):
    cfg = load_config(_cfg(task, tmp_path), ["train.total_steps=9"])
    manifest = build(cfg, "drift-uniform", 1, log=lambda _: None)
    run = tmp_path / "runs" / "datasets" / "small" / "drift-uniform" / "ep-000"
    schedule = load_config(str(run / "config.yaml")).agent.weights
    assert schedule["steps"] == [1, 4, 6, 9] and len(schedule["weights"]) == 4  # waypoints at 1, T/3, 2T/3, T
    played = json.loads((run / "mixture.json").read_text())["schedule"]["weights"]
    np.testing.assert_allclose(played[0], schedule["weights"][0], atol=1e-6)  # the first waypoint at step 1
    np.testing.assert_allclose(played[-1], schedule["weights"][-1], atol=1e-6)  # the last at step T
    middle = (2 * np.array(schedule["weights"][0]) + np.array(schedule["weights"][1])) / 3
    np.testing.assert_allclose(played[1], middle / middle.sum(), atol=1e-6)  # step 2: a third of the way to step 4
    assert manifest["dataset_id"] == "acodm/small/drift-uniform-v0"
    assert minari.load_dataset("acodm/small/drift-uniform-v0").total_episodes == 1
