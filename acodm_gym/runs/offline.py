"""Offline datasets in Minari's format: per task and behaviour policy, the logged transitions of many episodes.

``build(cfg, behaviour, episodes)`` (``acodm-gym dataset``) runs ``episodes`` scoring episodes of one
behaviour policy on fresh models (seeds ``first_seed``, ``first_seed + 1``, ...; by default 2000 on, off
the test seeds 0–4 and learn's training seeds 1000 on), each with ``run.log_transitions`` (the env
computes the reward for every behaviour), and writes the Minari dataset ``acodm/<task>/<behaviour>-v0``
from all of them, plus a manifest (episodes, behaviour, seeds, weights, scores) small enough to commit::

    <run.out_dir>/datasets/<task>/<behaviour>/ep-000/ ...   the episodes, run directories (transitions.npz)
    <run.out_dir>/datasets/<task>/<behaviour>.manifest.json  (or ``manifest=``)

Behaviours: any registered agent (the shipped datasets: ``uniform``, ``natural``, ``odm``, ``doge``), with what
it takes of ``agent.options``; ``dirichlet-uniform`` / ``dirichlet-natural``: a static mixture drawn per
episode from a Dirichlet around the uniform or the natural weights (concentration ``CONCENTRATION`` per
domain, seeded by the episode's seed); and ``drift-uniform`` / ``drift-natural``: a slowly drifting schedule
(agent ``schedule``), ``WAYPOINTS`` mixtures drawn the same way at evenly spaced steps, linear in between.

Each transition's ``info`` holds the vector reward (``vector_reward``, k values) and the task metric of
the validation at that step (``val_metric``, NaN where the step has none); the first row of every info
array belongs to the reset. ``ref_min_score``/``ref_max_score`` are the references' mean test metric of
natural and of the best static mixture, so Minari's normalised score of an episode's test metric
(``minari.get_normalized_score``) is the task's score / 100. The env's spec holds the full config:
``dataset.recover_environment()`` rebuilds it.

Run the same command again (or with more episodes) and it continues: finished episodes are reused, a
stopped one resumes from its checkpoint (``reuse.train_or_reuse``), and the dataset is written again
from every episode, so a kill loses at most the episode in progress.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

from .. import __version__
from ..agents import agent_class
from ..config import AgentConfig, Config, load_config
from ..data.corpus import open_corpus
from ..envs.state import observation_layout
from ..envs.task import read_references
from ..errors import ConfigError
from ..registry import AGENTS
from . import rundir
from .checkpoint import corpus_fingerprint
from .compare import for_agent
from .logger import read_metrics
from .reuse import train_or_reuse

DIRICHLET = ("dirichlet-uniform", "dirichlet-natural")  # random static mixtures around a centre, one per episode
DRIFT = ("drift-uniform", "drift-natural")  # random slowly drifting schedules around a centre, one per episode
WAYPOINTS = 4  # a drifting schedule's mixtures, at steps 1, T/3, 2T/3 and T, linear in between
# The behaviours of the shipped datasets (benchmarks/datasets.py); any registered agent is a behaviour too.
BEHAVIOURS = ("uniform", "natural", "odm", "doge", *DIRICHLET, *DRIFT)
CONCENTRATION = 5.0  # Dirichlet parameter per domain: the mixture's spread around its centre
FIRST_SEED = 2000


def dataset_id(task: str, behaviour: str) -> str:
    return f"acodm/{task}/{behaviour}-v0"


def dataset_dir(cfg: Config, behaviour: str) -> Path:
    return Path(cfg.run.out_dir) / "datasets" / _task(cfg) / behaviour


def _task(cfg: Config) -> str:
    if not cfg.task.name:
        raise ConfigError("A dataset belongs to a benchmark task: give --task NAME (configs/tasks/ or a task file).")
    return cfg.task.name


def signature(cfg: Config, corpus) -> dict:
    """What every episode of a dataset must share: corpus and observation layout."""
    k, probes = len(corpus.domains), cfg.env.num_norm_probes
    layout = {name: [s.start, s.stop] for name, s in observation_layout(k, probes).items()}
    return {"corpus": corpus_fingerprint(corpus)["fingerprint"], "domains": list(corpus.domains), "layout": layout}


def check_request(cfg: Config, behaviour: str, episodes: int) -> None:
    """Refuse, before the corpus is opened, a request no dataset could answer."""
    _task(cfg)
    if behaviour not in (*AGENTS.names(), *DIRICHLET, *DRIFT):
        raise ConfigError(
            f"Unknown behaviour '{behaviour}'; choose a registered agent ({', '.join(AGENTS.names())}) or one of "
            f"{', '.join((*DIRICHLET, *DRIFT))}."
        )
    if behaviour not in (*DIRICHLET, *DRIFT):  # its share of agent.options in range, as the runs will check it
        agent_class(behaviour).check_config(for_agent(cfg, behaviour).agent)
    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: a dataset needs at least 1 episode.")


def check_manifest(cfg: Config, manifest: Path, corpus) -> None:
    """Refuse, before any episode runs, to extend a dataset of another corpus or observation layout."""
    if manifest.is_file():
        held = json.loads(manifest.read_text())
        mine = signature(cfg, corpus)
        for key in ("corpus", "domains", "layout"):
            if held["signature"][key] != mine[key]:
                raise ConfigError(
                    f"{manifest} holds a dataset of another {key} ({held['signature'][key]}; this config has "
                    f"{mine[key]}): its episodes cannot join this one. Give another --out-dir/--manifest, or the "
                    "config it was built with."
                )


def behaviour_config(cfg: Config, behaviour: str, out: Path, e: int, seed: int, natural: np.ndarray) -> Config:
    """Episode ``e`` of ``behaviour`` on a fresh model of ``seed``, logging its transitions."""
    episode: dict = {
        "env": {"episode": "scoring"},
        "run": {"out_dir": str(out), "name": f"ep-{e:03d}", "seed": seed, "log_transitions": True},
    }
    if behaviour not in (*DIRICHLET, *DRIFT):  # with what it takes of agent.options (and agent.weights)
        return load_config(for_agent(cfg, behaviour), episode)
    centre = natural if behaviour.endswith("-natural") else np.full(len(natural), 1.0 / len(natural))
    rng, alpha = np.random.default_rng(seed), CONCENTRATION * len(natural) * centre
    if behaviour in DIRICHLET:
        agent = AgentConfig(name="static", weights=rng.dirichlet(alpha).tolist())
    else:
        draws = rng.dirichlet(alpha, WAYPOINTS)
        steps = np.linspace(1, cfg.train.total_steps, WAYPOINTS).round().astype(int)
        agent = AgentConfig(name="schedule", weights={"steps": steps.tolist(), "weights": draws.tolist()})
    return load_config(dataclasses.replace(cfg, agent=agent), episode)


def _episode_buffer(run: Path, e: int, seed: int):
    """One Minari episode from a run's transitions.npz and metrics.csv."""
    from minari.data_collector import EpisodeBuffer

    with np.load(run / "transitions.npz") as t:
        obs, action, reward, vector, next_obs = (t[k] for k in ("obs", "action", "reward", "vector_reward", "next_obs"))
    steps = len(reward)
    val = read_metrics(run / "metrics.csv")["val_metric"].astype(np.float64)
    return EpisodeBuffer(
        id=e,
        seed=seed,
        observations=np.concatenate([obs[:1], next_obs]),
        actions=action,
        rewards=reward.astype(np.float64),
        terminations=np.zeros(steps, dtype=bool),
        truncations=np.arange(1, steps + 1) == steps,
        infos={
            "vector_reward": np.concatenate([np.zeros((1, vector.shape[1]), np.float32), vector]),
            "val_metric": np.concatenate([[np.nan], val]),
        },
    )


def _reference_scores(cfg: Config) -> tuple[float | None, float | None]:
    """The references' mean test metric of natural and of the best static mixture (None without references)."""
    refs = read_references(cfg.task)
    if refs is None:
        return None, None
    means = [float(np.mean(refs["references"][kind]["test_metric"])) for kind in ("natural", "best_static")]
    return means[0], means[1]


def write_dataset(cfg: Config, behaviour: str, runs: list[tuple[Path, int]], author_email: str | None = None):
    """The Minari dataset of ``runs`` (run directory, seed), replacing an earlier write of it."""
    import minari

    name = dataset_id(_task(cfg), behaviour)
    if name in minari.list_local_datasets():
        minari.delete_dataset(name)
    low, high = _reference_scores(cfg)
    spec = gym.envs.registration.EnvSpec(
        id=f"acodm/{_task(cfg)}-dataset-v0",
        entry_point="acodm_gym.envs.pretrain_env:PretrainEnv",
        kwargs={"config": cfg.to_dict()},
        max_episode_steps=None,
    )
    return minari.create_dataset_from_buffers(
        name,
        [_episode_buffer(run, e, seed) for e, (run, seed) in enumerate(runs)],
        env=spec,
        eval_env=spec,
        algorithm_name=behaviour,
        author="acodm-gym",
        author_email=author_email,
        code_permalink="acodm_gym/runs/offline.py",
        ref_min_score=low,
        ref_max_score=high,
        description=f"acodm-gym {__version__}: {len(runs)} episodes of the {behaviour} behaviour on task {_task(cfg)}.",
        requirements=[f"acodm-gym=={__version__}"],
    )


def build(
    cfg: Config,
    behaviour: str,
    episodes: int,
    first_seed: int = FIRST_SEED,
    manifest: str | Path | None = None,
    log: Callable[[str], None] = print,
    author_email: str | None = None,
) -> dict:
    """Run (or reuse) ``episodes`` episodes of ``behaviour``, write the Minari dataset and the manifest;
    returns the manifest.

    :param author_email: the dataset's contact (Minari's ``author_email``)
    """
    out = dataset_dir(cfg, behaviour)
    manifest = Path(manifest) if manifest else out.with_name(f"{behaviour}.manifest.json")
    check_request(cfg, behaviour, episodes)
    corpus = open_corpus(cfg.data, log=log)
    check_manifest(cfg, manifest, corpus)
    natural = corpus.natural_weights()
    runs, rows = [], []
    for e in range(episodes):
        seed = first_seed + e
        log(f"== {behaviour} episode {e + 1} of {episodes} (model seed {seed})")
        run = train_or_reuse(behaviour_config(cfg, behaviour, out, e, seed, natural), log)
        summary = json.loads((run / rundir.SUMMARY).read_text())
        runs.append((run, seed))
        with np.load(run / "transitions.npz") as t:
            ret = float(t["reward"].sum())
        rows.append({"episode": e, "seed": seed, "mean_weights": summary["mean_weights"], "return": ret})
        rows[-1].update({k: summary[k] for k in ("steps", "test_metric", "score")})
    dataset = write_dataset(cfg, behaviour, runs, author_email)
    payload = {
        "dataset_id": dataset.spec.dataset_id,
        "task": _task(cfg),
        "behaviour": behaviour,
        "total_episodes": len(rows),
        "total_steps": int(dataset.total_steps),
        "ref_min_score": dataset.storage.metadata.get("ref_min_score"),  # absent without references
        "ref_max_score": dataset.storage.metadata.get("ref_max_score"),
        "signature": signature(cfg, corpus),
        "episodes": rows,
    }
    manifest.parent.mkdir(parents=True, exist_ok=True)
    rundir.write_text(manifest, json.dumps(payload, indent=2))
    return payload
