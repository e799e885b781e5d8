"""Learning across episodes: one agent trained over many training episodes, then frozen and scored on test seeds.

As RL benchmarks separate training and test levels, a level here is a model seed: the agent trains on
fresh models of the training seeds (``train_seeds``), one training episode each (``env.episode:
training``, no end-of-episode evaluation), and is scored, frozen, on models of the test seeds
(scoring episodes, the evaluation every result uses); the two seed sets never overlap. The env resets
to a fresh model each episode; the agent persists: episode e starts from episode e − 1's ``agent.pt``
(``agent.init_from``: networks, target networks, optimisers, replay buffer, counters, RNG); its step
counters run on, so its schedules (AC-ODM's warm-up and learning-rate decay) span the first episode. It is
seeded once, by the first episode's model seed (``run.seed``) unless ``agent.options.seed`` is given, so
``--train-seed`` picks a training run: its levels and its agent's initialisation and exploration::

    <learn_dir>/
        train/ep-000/ ...          the training episodes, run directories of the runner
        agent.pt                   the agent after the last training episode (the policy that is frozen)
        test/after-<N>/seed-<s>/   scoring episodes of that policy, frozen (``frozen_config``), after N episodes
        curve.json, curve.png      the learning curve

Run it again with the same arguments and it continues: a finished episode is reused and a stopped one
resumes from its last checkpoint, bit for bit (``reuse.train_or_reuse``), so a kill loses at most
the steps since that checkpoint (``run.checkpoint_interval``). Asked for more episodes, it trains on
from the last one. Proxy mode is a user: its proxy stage is ``train_agent`` on the proxy model, and its
target stage a scoring episode of the frozen actor (runs/compare.py).

The learning curve (curve.json): per training episode its seed, the task metric of its last periodic
validation (``env.eval_batches`` batches per domain; ``learn(eval_interval=None)`` validates once, at
the episode's last step) and its mean scalar reward, a cheap proxy read off the training episodes
themselves; and, for each N whose policy was scored, the test seeds' task metric and score.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..agents import FrozenActorAgent
from ..config import TEST_SEEDS, AgentConfig, Config, LearnConfig, check_seed, load_config
from ..errors import ConfigError
from . import plots, rundir
from .logger import read_metrics
from .reuse import finished, train_or_reuse
from .runner import seed_agent

FIRST_TRAIN_SEED = LearnConfig.first_seed


def train_seeds(episodes: int, first: int = FIRST_TRAIN_SEED, stride: int = 1) -> list[int]:
    """The model seed of each training episode: ``first + stride · e``."""
    return [first + stride * e for e in range(episodes)]


def check_protocol(cfg: Config, episodes: int, seeds: Sequence[int], test_seeds: Sequence[int]) -> None:
    """Refuse, before any work, a protocol that would not train and test one agent on disjoint levels."""
    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: learning needs at least 1 training episode.")
    if cfg.agent.frozen:
        raise ConfigError("agent.frozen=true: learn trains the agent, then freezes it itself; drop agent.frozen.")
    overlap = sorted(set(seeds) & set(test_seeds))
    if overlap:
        raise ConfigError(
            f"Training seeds {list(seeds)} and test seeds {list(test_seeds)} share {overlap}: a policy must be "
            "scored on models it never trained on. Choose other --test-seeds or another --train-seed."
        )
    if len(set(test_seeds)) != len(test_seeds):
        raise ConfigError(f"Test seeds {list(test_seeds)} repeat a seed: give each once.")
    for seed in (*seeds, *test_seeds):
        check_seed(seed, "a training seed " if seed in seeds else "--test-seeds ")


def episode_dir(learn_dir: Path, e: int) -> Path:
    return Path(learn_dir) / "train" / f"ep-{e:03d}"


def episode_config(cfg: Config, learn_dir: Path, e: int, seed: int) -> Config:
    """Training episode ``e``: a fresh model of ``seed``, the agent of episode ``e - 1``."""
    where = episode_dir(learn_dir, e)
    episode: dict = {"env": {"episode": "training"}, "run": {"out_dir": str(where.parent), "name": where.name}}
    episode["run"]["seed"] = seed
    if e > 0:
        episode["agent"] = {"init_from": str(episode_dir(learn_dir, e - 1) / "agent.pt")}
    return load_config(cfg, episode)


def train_agent(
    cfg: Config,
    learn_dir: str | Path,
    seeds: Sequence[int],
    log: Callable[[str], None] = print,
    overwrite: bool = False,
    keep_stale: bool = False,
) -> Path:
    """Train ``cfg``'s agent over one training episode per seed of ``seeds``; returns ``learn_dir/agent.pt``,
    the agent after the last one. Finished episodes are reused, a stopped one resumes (module docstring).

    :param keep_stale: reuse finished episodes of other code or corpora (``reuse.train_or_reuse``)
    """
    learn_dir = Path(learn_dir)
    if seeds:  # seeded once, by the first level; later episodes restore its random state
        cfg = dataclasses.replace(cfg, agent=seed_agent(cfg.agent, seeds[0]))
    for e, seed in enumerate(seeds):
        log(f"== training episode {e + 1} of {len(seeds)} (model seed {seed})")
        # a restored record has no agent.pt: such an episode is trained again (same seed, same result)
        episode = episode_config(cfg, learn_dir, e, seed)
        last = train_or_reuse(episode, log, overwrite, needs=("agent.pt",), keep_stale=keep_stale)
    final = learn_dir / "agent.pt"
    rundir.write_file(final, lambda p: shutil.copyfile(last / "agent.pt", p))
    return final


def frozen_config(cfg: Config, actor: Path, out: Path, seed: int, protocol: dict | None = None) -> Config:
    """A scoring episode of the saved ``actor`` (of ``cfg``'s agent), frozen, on a fresh model of ``seed``: agent
    ``frozen`` runs an actor–critic's greedy actor (``agent.trained`` records the agent, its options and
    ``protocol``); any other agent is rebuilt with its options, loaded from ``actor``, and plays greedily without
    observing or learning (``agent.frozen``; ``agent.trained`` records ``protocol``). So a scoring run of a policy
    trained otherwise is never reused."""
    if cfg.agent.name in FrozenActorAgent.sources:
        trained = {"name": cfg.agent.name, "options": cfg.agent.options, **(protocol or {})}
        agent = AgentConfig(name="frozen", options={"path": str(actor)}, trained=trained)
    else:
        agent = dataclasses.replace(cfg.agent, init_from=str(actor), frozen=True, trained=protocol)
    frozen = dataclasses.replace(cfg, agent=agent)
    scoring = {"env": {"episode": "scoring"}, "run": {"out_dir": str(out), "name": f"seed-{seed}", "seed": seed}}
    return load_config(frozen, scoring)


def score(
    cfg: Config,
    learn_dir: Path,
    episodes: int,
    test_seeds: Sequence[int],
    log: Callable[[str], None] = print,
    overwrite: bool = False,
    keep_stale: bool = False,
    protocol: dict | None = None,
) -> None:
    """Score ``learn_dir/agent.pt`` (the agent after ``episodes`` episodes), frozen, on each test seed.

    :param protocol: how the agent was trained beyond its options, recorded in the scoring runs (``frozen_config``)
    """
    for seed in test_seeds:
        log(f"== test episode of the frozen policy (model seed {seed})")
        train_or_reuse(_scoring_config(cfg, learn_dir, episodes, seed, protocol), log, overwrite, keep_stale=keep_stale)


def _scoring_config(cfg: Config, learn_dir: Path, episodes: int, seed: int, protocol: dict | None) -> Config:
    where = scoring_dir(learn_dir, episodes, seed)
    return frozen_config(cfg, Path(learn_dir) / "agent.pt", where.parent, seed, protocol)


def scored(
    cfg: Config, learn_dir: Path, episodes: int, test_seeds: Sequence[int], protocol: dict | None, keep_stale: bool
) -> bool:
    """Whether the frozen policy's scoring run of every test seed is finished with this config (a sweep restored
    from records needs no agent then: its training episodes are not trained again)."""
    try:
        return all(finished(_scoring_config(cfg, learn_dir, episodes, s, protocol), keep_stale) for s in test_seeds)
    except ConfigError:  # agent.frozen's agent.init_from (the policy) is not there: not scored
        return False


def scoring_dir(learn_dir: str | Path, episodes: int, seed: int) -> Path:
    """The scoring run of the policy frozen after ``episodes`` training episodes on test seed ``seed``."""
    return Path(learn_dir) / "test" / f"after-{episodes}" / f"seed-{seed}"


def learn(
    cfg: Config,
    episodes: int,
    learn_dir: str | Path,
    test_seeds: Sequence[int] = TEST_SEEDS,
    first_seed: int = FIRST_TRAIN_SEED,
    eval_interval: int | None = None,
    log: Callable[[str], None] = print,
    overwrite: bool = False,
    keep_stale: bool = False,
    retrain: bool | None = None,
) -> dict:
    """Train ``cfg``'s agent over ``episodes`` training episodes (seeds ``first_seed``, ``first_seed + 1``, ...),
    freeze it, score it on ``test_seeds`` (``scoring_dir``), and write the learning curve; returns the curve.
    With no ``test_seeds`` it only trains: choose hyper-parameters on the curve's validation proxy, then score
    the chosen policy (its finished episodes are reused).

    :param eval_interval: steps between the training episodes' validations (the curve's proxy); None: once,
        at each episode's last step; 0: none (the curve then has the mean reward only)
    :param overwrite: train every episode and score every seed again
    :param keep_stale: reuse finished runs of other code or corpora (``reuse.train_or_reuse``)
    :param retrain: train every episode again (None: as ``overwrite``; False: the policy a caller has just
        trained, scored again on another seed)
    """
    seeds = train_seeds(episodes, first_seed)
    check_protocol(cfg, episodes, seeds, test_seeds)
    interval = cfg.train.total_steps if eval_interval is None else eval_interval
    learn_dir, protocol = Path(learn_dir), {"episodes": episodes, "first_seed": first_seed}
    retrain = overwrite if retrain is None else retrain
    if retrain or not test_seeds or not scored(cfg, learn_dir, episodes, test_seeds, protocol, keep_stale):
        training = load_config(cfg, {"env": {"eval_interval": interval}})
        train_agent(training, learn_dir, seeds, log, retrain, keep_stale)
    # with the task's validation; a policy trained again is scored again
    score(cfg, learn_dir, episodes, test_seeds, log, overwrite or retrain, keep_stale, protocol)
    return write_curve(learn_dir, cfg.agent.name, seeds)


def _episode_point(run: Path, e: int) -> dict:
    summary = json.loads((run / rundir.SUMMARY).read_text())
    metrics = read_metrics(run / "metrics.csv") if (run / "metrics.csv").is_file() else {}  # a record has none
    reward = metrics.get("reward")
    return {
        "episode": e + 1,
        "seed": summary["seed"],
        "val_metric": summary["val_curve"]["metric"][-1] if summary["val_curve"]["metric"] else None,
        "mean_reward": float(np.mean(reward)) if reward is not None and len(reward) else None,
        "seconds": summary["seconds"],
    }


def _test_points(learn_dir: Path) -> list[dict]:
    """For each N whose policy was scored: the task metric and score of every test seed it was scored on."""
    points = []
    for out in (learn_dir / "test").glob("after-*"):
        runs = sorted(out.glob(f"seed-*/{rundir.SUMMARY}"), key=lambda r: int(r.parent.name.removeprefix("seed-")))
        if not runs:
            continue
        summaries = [json.loads(r.read_text()) for r in runs]
        test_seeds = [s["seed"] for s in summaries]
        scores = [s["score"] for s in summaries]
        points.append(
            {
                "episodes": int(out.name.removeprefix("after-")),
                "seeds": list(test_seeds),
                "test_metric": [s["test_metric"] for s in summaries],
                "score": scores,
                "mean_test_metric": float(np.mean([s["test_metric"] for s in summaries])),
                "mean_score": float(np.mean(scores)) if None not in scores else None,
            }
        )
    return sorted(points, key=lambda p: p["episodes"])


def write_curve(learn_dir: Path, agent: str, seeds: Sequence[int]) -> dict:
    """curve.json and curve.png of the training episodes ``seeds`` and every scored policy (atomically)."""
    train = [_episode_point(episode_dir(learn_dir, e), e) for e in range(len(seeds))]
    test = _test_points(learn_dir)
    curve = {
        "agent": agent,
        "train_seeds": list(seeds),
        "test_seeds": sorted({s for point in test for s in point["seeds"]}),
        "proxy": "task metric of each training episode's last validation (env.eval_batches batches per domain)",
        "train": train,
        "test": test,
    }
    rundir.write_text(learn_dir / "curve.json", json.dumps(curve, indent=2))
    lines = {}
    if all(p["val_metric"] is not None for p in train):
        lines["validation (training episodes)"] = (
            np.array([p["episode"] for p in train]),
            np.array([p["val_metric"] for p in train]),
        )
    if curve["test"]:
        lines["test, frozen (mean over test seeds)"] = (
            np.array([p["episodes"] for p in curve["test"]]),
            np.array([p["mean_test_metric"] for p in curve["test"]]),
        )
    if lines:
        title = f"Learning curve ({agent}): task metric"
        rundir.write_file(learn_dir / "curve.png", lambda p: plots.plot_val_ppl(lines, p, title, xlabel="episodes"))
    return curve
