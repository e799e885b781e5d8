"""The experiment driver: one pretraining episode driven by one agent, top to bottom.

The runner owns the loop (act → env.step → observe → update), so every agent — static, bandit
or actor–critic — is driven the same way, and writes a run directory:

    runs/<name>/config.yaml     the full config used
    runs/<name>/metrics.csv     one row per step: losses, weights, rewards, validation perplexity and task metric, agent diagnostics
    runs/<name>/tensorboard/    the same as TensorBoard events, plus the agent's own statistics
    runs/<name>/summary.json    final per-domain validation and test perplexity, time per step (a training
                                episode, env.episode=training, has no final evaluation: no test entries)
    runs/<name>/mixture.json    the weight schedule α(t) and its mean (reusable as a static mixture)
    runs/<name>/model/          the trained model and tokenizer in Hugging Face format
    runs/<name>/transitions.npz with run.log_transitions: obs, action, reward, vector_reward, next_obs per step, and
                                val_metric (the task metric of that step's validation, NaN where it has none)
    runs/<name>/agent.pt        the agent (for acodm: the actor a target run can load)
    runs/<name>/*.png           domain weights and validation perplexity over steps, test perplexity, diagnostics
    runs/<name>/checkpoints/    every run.checkpoint_interval steps and at the last, what resuming needs (runs/checkpoint.py)
    runs/<name>/.lock           held by the run writing the directory (runs/rundir.py)

``train(cfg, resume=RUN_DIR)`` / ``resume(RUN_DIR)`` (``acodm-gym train --resume RUN_DIR``) continue a
run from its latest complete checkpoint: the metrics and the numbers are those of a run that never
stopped (metrics.csv is cut back to the checkpoint's step, so no row is lost or repeated).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from ..agents import AGENTS, Agent, EnvSpec, agent_class, make_agent
from ..agents.static import write_mixture
from ..config import AgentConfig, Config, load_config
from ..data.tokenizer import to_hf_tokenizer
from ..envs.pretrain_env import PretrainEnv
from ..envs.state import StepInfo
from ..envs.task import read_references, search_budget
from ..errors import ConfigError, NonFiniteLossError, OutputError, ResumeError
from ..lm import distributed
from ..lm.models import save_for_generation
from . import checkpoint, plots, provenance, rundir
from .logger import MetricsLogger, read_metrics


@dataclass
class _Progress:
    """What the runner has gathered so far (checkpointed, so a resumed run's summary covers every step)."""

    steps: list[int] = field(default_factory=list)
    weights: list[list[float]] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_ppl: list[list[float]] = field(default_factory=list)
    skipped: int = 0
    seconds_before: float = 0.0  # wall-clock seconds of earlier sessions of this run
    seconds_now: float = 0.0  # of this session, at the last checkpoint
    resumed_at: list[int] = field(default_factory=list)
    obs: np.ndarray | None = None  # the observation the next action is taken on
    transitions: dict[str, list] | None = None  # run.log_transitions: (s, a, r, vector r, s', val metric) per step

    def record(self, info: StepInfo) -> None:
        self.weights.append(np.asarray(info["domain_weights"], dtype=np.float64).tolist())
        self.skipped += int(info["skipped"])
        self.steps.append(int(info["step"]))
        if "val_ppl" in info:
            self.val_steps.append(int(info["step"]))
            self.val_ppl.append(np.asarray(info["val_ppl"], dtype=np.float64).tolist())

    def state(self, csv_bytes: int) -> dict:
        return {
            "steps": self.steps,
            "weights": self.weights,
            "val_steps": self.val_steps,
            "val_ppl": self.val_ppl,
            "skipped": self.skipped,
            "seconds": self.seconds_before + self.seconds_now,
            "resumed_at": self.resumed_at,
            "obs": torch.from_numpy(np.array(self.obs, dtype=np.float32)),
            "csv_bytes": int(csv_bytes),
            "transitions": self.transitions,
        }

    @classmethod
    def from_state(cls, state: dict) -> "_Progress":
        return cls(
            steps=list(state["steps"]),
            weights=[list(w) for w in state["weights"]],
            val_steps=list(state["val_steps"]),
            val_ppl=[list(v) for v in state["val_ppl"]],
            skipped=int(state["skipped"]),
            seconds_before=float(state["seconds"]),
            resumed_at=list(state["resumed_at"]),
            obs=state["obs"].numpy().copy(),
            transitions=state.get("transitions"),
        )

    def record_transition(self, obs, action, reward: float, info: StepInfo, next_obs) -> None:
        row = {
            "obs": obs,
            "action": info["domain_weights"],
            "reward": reward,
            "vector_reward": info["vector_reward"],
            "next_obs": next_obs,
            "val_metric": info.get("val_metric", np.nan),  # what an offline agent may learn from (reward: metric)
        }
        for key, value in row.items():
            self.transitions.setdefault(key, []).append(np.asarray(value, dtype=np.float32).tolist())


@dataclass
class RunResult:
    run_dir: Path
    summary: dict


def prepare_config(cfg: Config, agent: Agent | None = None) -> Config:
    """Adapt the env to what the agent declares (``Agent``'s docstring): no probes for an agent without a
    reward or a frozen one (unless ``run.log_transitions``: offline data needs the reward of every behaviour),
    no floor for ODM, the run's seed (``run.seed``) as the agent's ``seed`` option unless one is given, the
    task's best static mixture in the option that takes it. An agent section
    the agent would not use as given is refused here (``Agent.check_config``), before any work.

    :param agent: an agent object given to ``train``: its own declarations and name count, not those of
        ``cfg.agent.name`` (options configured for another agent are dropped from the recorded config)
    """
    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env), train=dataclasses.replace(cfg.train))
    declared = agent if agent is not None else agent_class(cfg.agent.name)
    if agent is None:
        declared.check_config(cfg.agent)  # before any work: options it does not take, values out of range
    elif agent.name not in AGENTS:
        raise ConfigError(
            f"train(agent=...): agent '{agent.name}' ({type(agent).__name__}) is not registered, so its run could not "
            "be recorded or resumed by name: decorate its class with @acodm_gym.agents.register('NAME')."
        )
    elif agent.name != cfg.agent.name:
        cfg.agent = dataclasses.replace(cfg.agent, name=agent.name, options={}, weights=None)
    if (not declared.needs_reward or cfg.agent.frozen) and not cfg.run.log_transitions:
        cfg.env.compute_reward = False
    if not declared.exploration_floor:
        cfg.train.exploration_floor = False
    if agent is None:
        cfg.agent = seed_agent(cfg.agent, cfg.run.seed)
    option = declared.target_weights_option
    target = _best_static(cfg) if option and agent is None else None
    if target is not None:  # e.g. the diagnostics' target_cosine: does the actor move towards the task's best mixture?
        cfg.agent = dataclasses.replace(cfg.agent, options={option: target, **cfg.agent.options})
    return cfg


def seed_agent(agent: AgentConfig, seed: int) -> AgentConfig:
    """``agent`` with its ``seed`` option set to ``seed`` unless one is given (for an agent that takes one): one
    seed for a whole run, as SB3 and CleanRL seed theirs, so a method's seeds vary its agent, not only the LM."""
    if "seed" not in agent_class(agent.name).option_names() or "seed" in agent.options:
        return agent
    return dataclasses.replace(agent, options={**agent.options, "seed": seed})


def _best_static(cfg: Config) -> dict[str, float] | None:
    """The task's best static mixture from its reference file, as {domain: weight} (None without one)."""
    refs = read_references(cfg.task)
    if refs is None:
        return None
    return dict(zip(refs["domains"], refs["references"]["best_static"]["weights"]))


def run_dir_for(cfg: Config) -> Path:
    return Path(cfg.run.out_dir) / (cfg.run.name or f"{cfg.agent.name}-seed{cfg.run.seed}")


def _short(weights: np.ndarray) -> str:
    return "/".join(f"{w:.2f}" for w in weights)


def train(
    cfg: Config,
    log: Callable[[str], None] = print,
    agent: Agent | None = None,
    resume: str | Path | bool | None = None,
    allow_changes: Sequence[str] = (),
    overwrite: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
) -> RunResult:
    """Run one episode of ``cfg.train.total_steps`` steps and write its run directory.

    ``on_step``: called with every step's info once it is logged (e.g. a search reporting validation
    metrics to its pruner); an exception it raises stops the run there, as Ctrl-C does (the run directory
    keeps its metrics and checkpoints, and no summary).

    ``resume``: continue the run in this directory (``True``: ``cfg``'s own run directory) from its
    latest complete checkpoint; ``cfg`` must equal the checkpoint's config except for
    ``checkpoint.SAFE_KEYS`` and the keys in ``allow_changes`` (see ``resume()`` to take the
    config from the checkpoint).

    The corpus, the model and the agent are built, and a fresh run's first step taken (a batch that does not
    fit in memory fails there, as a ``ConfigError``), before the run directory is touched. The run holds
    a lock on its directory (``rundir.RunLock``); a fresh run refuses a directory holding an earlier
    run's checkpoints or results unless ``overwrite``. The final state is checkpointed before the
    outputs are written (each atomically), so a failure there is redone by resuming.
    """
    cfg = prepare_config(cfg, agent)
    ckpt = _checkpoint_to_resume(cfg, resume, allow_changes, log)
    run_dir = run_dir_for(cfg)
    # Multi-rank (train.backend=deepspeed under torchrun/deepspeed): every rank steps the env in lockstep;
    # rank 0 alone runs the agent (the env broadcasts its action) and writes the run directory.
    main = distributed.is_main_process()
    alone = distributed.world_size() == 1  # multi-rank: rank 0 checks and locks once every rank has built (from_main)
    lock = None

    def take_run_dir() -> np.ndarray:  # rank 0; if it raises, the other ranks raise too (from_main)
        nonlocal lock
        lock = lock or rundir.RunLock(run_dir)
        _prepare_run_dir(cfg, run_dir, ckpt is None, overwrite, log)
        return np.zeros(1)

    try:
        if alone and run_dir.is_dir():  # fail before the build if another run holds it or it holds work to keep
            lock = rundir.RunLock(run_dir)
            if ckpt is None:
                rundir.check_fresh(run_dir, overwrite)
        env, agent = _build(cfg, agent, ckpt is None, main, log)
        distributed.set_resume_hint(lambda: _resume_hint(run_dir))  # for the one line about a hung or dead rank
        obs, info = env.reset(seed=cfg.run.seed)
        first = _first_step(cfg, env, agent, obs) if ckpt is None else None  # before an earlier run is removed
        distributed.from_main(take_run_dir, (1,))  # only now is the directory touched
        return _run(cfg, env, agent, obs, ckpt, run_dir, log, first, on_step)
    except RuntimeError as exc:  # a failed collective: name the rank that went silent, if one did
        distributed.raise_if_rank_lost(exc)
        raise
    finally:
        if lock is not None:
            lock.release()


def _checkpoint_to_resume(
    cfg: Config, resume: str | Path | bool | None, allow_changes: Sequence[str], log: Callable[[str], None]
) -> checkpoint.Checkpoint | None:
    """The checkpoint ``resume`` names, checked against ``cfg`` (None: a fresh run); ``cfg.run`` then names its
    run directory."""
    if resume is None or resume is False:
        return None
    target = run_dir_for(cfg) if resume is True else Path(resume)
    cfg.run = dataclasses.replace(cfg.run, out_dir=str(target.parent), name=target.name)
    rundir.check_free(target)  # a run still going, maybe before its first checkpoint: in use, not stopped
    ckpt = checkpoint.find(target, warn=log if distributed.is_main_process() else (lambda _: None))
    checkpoint.check_resumable(ckpt, cfg, allow_changes, target)
    return ckpt


def _prepare_run_dir(cfg: Config, run_dir: Path, fresh: bool, overwrite: bool, log: Callable[[str], None]) -> None:
    """A fresh run's directory emptied of an earlier run's (only with ``overwrite``), a resumed one's stale temp
    files cleaned; then the config it runs with."""
    if fresh:
        rundir.check_fresh(run_dir, overwrite)
        rundir.clear(run_dir, log)
    else:
        rundir.clean_stale(run_dir, log)
    rundir.write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _build(
    cfg: Config, agent: Agent | None, fresh: bool, main: bool, log: Callable[[str], None]
) -> tuple[PretrainEnv, Agent | None]:
    """The env on every rank; the agent on rank 0 only, a fresh run's loaded from ``agent.init_from`` if set
    (continuing an earlier run's agent, e.g. a learn episode's)."""
    env = PretrainEnv(cfg, log=log if main else (lambda _: None))
    agent = (agent or make_agent(cfg.agent, EnvSpec.from_env(env))) if main else None
    if main and fresh and cfg.agent.init_from:
        agent.load(cfg.agent.init_from)
    return env, agent


@dataclass
class _Step:
    """One step of the loop: the agent's action, the env's answer and the agent's update statistics."""

    action: np.ndarray | None
    next_obs: np.ndarray
    reward: float
    done: bool
    info: StepInfo
    stats: dict | None
    seconds: float = 0.0


def _step(env: PretrainEnv, agent: Agent | None, obs, frozen: bool = False) -> _Step:
    """act → env.step → observe → update (rank 0 runs the agent; every rank steps the env).

    :param frozen: the agent only acts, greedily (``agent.frozen``)
    """
    main = distributed.is_main_process()
    action = (agent.greedy(obs) if frozen else agent.act(obs)) if main else None
    next_obs, reward, terminated, truncated, info = env.step(action)
    stats = None
    if main and frozen:
        stats = {}
    elif main:
        agent.observe(obs, action, reward, next_obs, info)
        stats = agent.update()
    return _Step(action, next_obs, reward, terminated or truncated, info, stats)


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed, as numpy (``MemoryError``), torch on an accelerator (``OutOfMemoryError``)
    or torch's CPU allocator (a ``RuntimeError``: "can't allocate memory") raise it."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def _first_step(cfg: Config, env: PretrainEnv, agent: Agent | None, obs) -> _Step:
    """A fresh run's first step, taken before the run directory is touched: a batch that does not fit in
    memory is refused here, and an earlier run ``--overwrite`` would replace is still whole."""
    started = time.perf_counter()
    try:
        step = _step(env, agent, obs, cfg.agent.frozen)
    except Exception as exc:
        if not _out_of_memory(exc):
            raise
        why = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
    else:
        step.seconds = time.perf_counter() - started
        return step
    # raised here, not in the handler: the failed step's frames (and what they allocated) are released first
    raise ConfigError(
        f"train.batch_size={cfg.train.batch_size} (sequences of model.seq_len={cfg.model.seq_len} tokens) does not "
        f"fit in memory on {cfg.train.device} ({why}): lower train.batch_size, or set train.micro_batch_size to "
        "accumulate the gradient over smaller pieces. The run directory was not touched."
    )


def _run(
    cfg: Config,
    env: PretrainEnv,
    agent: Agent | None,
    obs,
    ckpt,
    run_dir: Path,
    log,
    first: _Step | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
) -> RunResult:
    """The episode and the outputs, in a run directory this process holds (``first``: a fresh run's first
    step, taken before the directory was touched; ``on_step``: as in ``train``)."""
    progress = _Progress(transitions={} if cfg.run.log_transitions else None)
    if ckpt is not None:
        progress = _restore(cfg, env, agent, ckpt, run_dir, log)
        obs = progress.obs
    info, seconds = _loop(cfg, env, agent, obs, progress, ckpt, run_dir, log, first, on_step)
    return _outputs(cfg, env, agent, progress, info, seconds, run_dir)


def _restore(cfg: Config, env: PretrainEnv, agent: Agent | None, ckpt, run_dir: Path, log) -> _Progress:
    """Env, agent and progress as the checkpoint ``ckpt`` left them (the metrics file is checked against it)."""
    main = distributed.is_main_process()
    if distributed.broadcast_int(ckpt.step) != ckpt.step:
        raise ResumeError(
            f"The ranks chose different checkpoints of {run_dir}: is checkpoints/ on a shared file system?"
        )
    if main:
        checkpoint.check_metrics(run_dir, int(ckpt.meta["csv_bytes"]), ckpt.step)
    progress = _Progress.from_state(checkpoint.restore(ckpt, env, agent))
    progress.resumed_at.append(ckpt.step)
    if main:
        log(f"resuming {run_dir} from {ckpt.path.name} (step {ckpt.step} of {cfg.train.total_steps})")
    return progress


def _loop(
    cfg: Config,
    env: PretrainEnv,
    agent: Agent | None,
    obs,
    progress: _Progress,
    ckpt,
    run_dir: Path,
    log,
    first: _Step | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
):
    """Steps from ``env.t`` to the end (``first``: one already taken, logged first): act, step, observe,
    update, log, ``on_step``, checkpoint every ``run.checkpoint_interval`` steps and once at the end. Returns
    the last step's info (empty if no step was left) and the run's seconds so far."""
    main = distributed.is_main_process()
    logger = _metrics_logger(cfg, env, ckpt, run_dir) if main else None
    last_checkpoint = ckpt.step if ckpt is not None else None
    total, interval = cfg.train.total_steps, cfg.run.checkpoint_interval
    quiet = not (cfg.run.progress and main)
    bar = tqdm(total=total, initial=env.t - (first is not None), desc=cfg.agent.name, disable=quiet, dynamic_ncols=True)
    started = time.perf_counter() - (first.seconds if first is not None else 0.0)
    tokens_before = 0 if first is not None else env.tokens

    def save_checkpoint() -> None:
        nonlocal last_checkpoint
        progress.obs, progress.seconds_now = obs, time.perf_counter() - started
        csv_bytes = logger.flush() if main else 0
        checkpoint.save(run_dir, cfg, env, agent, progress.state(csv_bytes), last_checkpoint, log)
        last_checkpoint = env.t

    # stays empty when a resume starts at the last step (the outputs are then all that is left)
    info: StepInfo | dict = {}
    try:
        pending = first
        while pending is not None or env.t < total:
            step, pending = pending or _step(env, agent, obs, cfg.agent.frozen), None
            info = step.info
            _record(step, obs, progress, logger, on_step)
            bar.update(1)
            speed = (info["tokens"] - tokens_before) / (time.perf_counter() - started)
            bar.set_postfix_str(
                f"loss={info['objective']:.3f} tok/s={speed:,.0f} w={_short(info['domain_weights'])}", refresh=False
            )
            obs = step.next_obs
            if interval and env.t % interval == 0:
                save_checkpoint()
            if step.done:
                break
        if last_checkpoint != env.t:  # the final state, so that a failure writing the outputs is redone by --resume
            save_checkpoint()
    except NonFiniteLossError as exc:
        raise NonFiniteLossError(f"{exc} {_non_finite_hint(run_dir, last_checkpoint)}") from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"stopped at step {env.t} of {total}; {_resume_hint(run_dir)}") from None
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    return info, progress.seconds_before + (time.perf_counter() - started)


def _metrics_logger(cfg: Config, env: PretrainEnv, ckpt, run_dir: Path) -> MetricsLogger:
    """The run's metrics.csv (and TensorBoard) logger; a resumed run's continues where its checkpoint stopped."""
    resume_from = (int(ckpt.meta["csv_bytes"]), ckpt.step) if ckpt is not None else None
    return MetricsLogger(run_dir, env.domains, cfg.run.tensorboard, resume_from, cfg.env.compute_reward, cfg.to_dict())


def _record(step: _Step, obs, progress: _Progress, logger, on_step: Callable[[StepInfo], None] | None) -> None:
    """One step into the metrics (rank 0), the episode's progress, ``on_step`` and the transitions log."""
    if logger is not None:
        logger.log(step.info, step.reward, step.stats)
    progress.record(step.info)
    if on_step is not None:
        on_step(step.info)
    if progress.transitions is not None:
        progress.record_transition(obs, step.action, step.reward, step.info, step.next_obs)


def _non_finite_hint(run_dir: Path, last_checkpoint: int | None) -> str:
    """What to do after a non-finite loss: resume from the last checkpoint with a lower learning rate."""
    if last_checkpoint is None:
        return "No checkpoint was written before it (run.checkpoint_interval)."
    where = checkpoint.checkpoints_dir(run_dir) / checkpoint.step_name(last_checkpoint)
    return (
        f"The checkpoint of step {last_checkpoint} ({where}) predates it: continue from there with a lower learning "
        f"rate: acodm-gym train --resume {run_dir} --allow-change train.lr train.lr=..."
    )


def _outputs(
    cfg: Config,
    env: PretrainEnv,
    agent: Agent | None,
    progress: _Progress,
    info: StepInfo | dict,
    seconds: float,
    run_dir: Path,
) -> RunResult:
    """The episode's result and the run directory's outputs (rank 0; the other ranks wait for it)."""
    main = distributed.is_main_process()
    try:
        result = _episode_result(cfg, env, info)
        if not main:  # the other ranks' model and numbers are rank 0's
            env.close()
            distributed.barrier()  # return once rank 0 has written the run directory
            return RunResult(run_dir, {})
        summary = _write_outputs(cfg, env, agent, progress, result, seconds, run_dir)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"stopped after the last step, while writing the outputs; {_resume_hint(run_dir)}"
        ) from None
    if not cfg.run.checkpoint_interval:  # 0: the final checkpoint was only a safety net for the outputs
        shutil.rmtree(checkpoint.checkpoints_dir(run_dir), ignore_errors=True)
    env.close()
    distributed.barrier()
    return RunResult(run_dir, summary)


def _episode_result(cfg: Config, env: PretrainEnv, info: StepInfo | dict) -> dict | None:
    """The scoring episode's result (test split, task metric, score): from the last step, or again after a
    resume at the end; None for a training episode (``env.episode: training``), which has no evaluation."""
    if cfg.env.episode == "training":
        return None
    keys = ("final_val_loss", "final_val_metric", "final_val_metric_arith")
    keys += ("test_loss", "test_ppl", "test_metric", "test_metric_arith", "score")
    return {k: info[k] for k in keys} if "test_loss" in info else env.episode_result()


def _resume_hint(run_dir: Path) -> str:
    """The checkpoint ``--resume`` would continue from, read from disk (the stop may have hit a checkpoint write)."""
    try:
        ckpt = checkpoint.find(run_dir, warn=lambda _: None)
    except ResumeError:
        return "no checkpoint was written yet (run.checkpoint_interval), so the run must start again"
    return f"last checkpoint: step {ckpt.step} ({ckpt.path}); continue with: acodm-gym train --resume {run_dir}"


def _late_diagnostics(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """Each agent diagnostic's median over the second half of the run (once the critic has had data):
    what a comparison quotes; the curves are in metrics.csv and diagnostics.png."""
    late = {}
    for key in plots.diagnostic_columns(metrics):
        values = metrics[key][len(metrics[key]) // 2 :]
        values = values[np.isfinite(values)]
        if len(values):
            late[key.removeprefix("diag/")] = float(np.median(values))
    return late


def _scored(env: PretrainEnv, result: dict) -> dict:
    """A scoring episode's summary entries, from its final evaluation."""
    test_ppl, final_val_ppl = result["test_ppl"], np.exp(result["final_val_loss"])
    return {
        "final_val_ppl": dict(zip(env.domains, final_val_ppl.tolist())),
        "final_val_ppl_avg": float(final_val_ppl.mean()),
        "test_ppl": dict(zip(env.domains, test_ppl.tolist())),
        "test_ppl_avg": float(test_ppl.mean()),
        "val_metric": result["final_val_metric"],  # the final evaluation's (task.eval_tokens), like test_metric
        "val_metric_arith": result["final_val_metric_arith"],
        "test_metric": result["test_metric"],
        "test_metric_arith": result["test_metric_arith"],
        "score": result["score"],
        "score_budget": search_budget(env.references and env.references["search"]),  # the search behind the score's 100
    }


def _write_outputs(
    cfg: Config,
    env: PretrainEnv,
    agent: Agent,
    progress: _Progress,
    result: dict | None,
    seconds: float,
    run_dir: Path,
) -> dict:
    """Rank 0: model, agent, mixture, transitions, plots and, last, summary.json, each written atomically.

    A failure (a full disk) raises ``OutputError`` saying what was written and how to write the
    rest: the final checkpoint holds the trained state, and ``--resume`` writes the outputs again.
    """
    summary = _summary(cfg, env, progress, result, seconds)
    metrics = read_metrics(run_dir / "metrics.csv")
    summary["diagnostics"] = _late_diagnostics(metrics)
    outputs = _output_writers(cfg, env, agent, progress, result, summary, metrics)
    outputs.append((rundir.SUMMARY, lambda p: p.write_text(json.dumps(summary, indent=2))))  # last: the run is complete
    done: list[str] = []
    for name, write in outputs:
        try:
            (rundir.write_dir if name == "model" else rundir.write_file)(run_dir / name, write)
        except Exception as exc:  # noqa: BLE001 - a full disk surfaces as OSError, RuntimeError or SafetensorError
            step = checkpoint.step_name(env.t)
            raise OutputError(
                f"Training finished, but writing {run_dir / name} failed ({rundir.reason(exc)}). Written whole before it: "
                f"{', '.join(done) or 'none'}; nothing is half-written. The trained state is in the final checkpoint "
                f"{checkpoint.checkpoints_dir(run_dir) / step}: free disk space, then write the outputs again with: "
                f"acodm-gym train --resume {run_dir}"
            ) from exc
        done.append(name)
    return summary


def _summary(cfg: Config, env: PretrainEnv, progress: _Progress, result: dict | None, seconds: float) -> dict:
    """summary.json (without the diagnostics): what the episode did and, for a scoring episode, its scores."""
    val_arr, weights = np.array(progress.val_ppl), np.array(progress.weights)
    scored = _scored(env, result) if result is not None else {}  # a training episode has no final evaluation

    def pick(*keys: str) -> dict:
        return {k: scored[k] for k in keys if k in scored}

    return {
        "agent": cfg.agent.name,
        "seed": cfg.run.seed,
        "episode": cfg.env.episode,
        "steps": len(progress.steps),
        "tokens": int(env.tokens),
        "seconds": round(seconds, 2),
        "seconds_per_step": seconds / max(1, len(progress.steps)),
        "domains": env.domains,
        **pick("final_val_ppl", "final_val_ppl_avg"),
        "val_curve": {
            "steps": progress.val_steps,
            "avg_ppl": val_arr.mean(axis=1).tolist() if len(val_arr) else [],
            "metric": [env.metric.value(np.log(v)) for v in val_arr],
        },
        **pick("test_ppl", "test_ppl_avg"),
        # The task's metric (geometric mean perplexity over task.eval_domains), the arithmetic mean beside it,
        # and the normalised score on the test split (None while the task has no references).
        "task": cfg.task.name,
        "eval_domains": env.metric.eval_domains,
        **pick("val_metric", "val_metric_arith", "test_metric", "test_metric_arith", "score", "score_budget"),
        "mean_weights": dict(zip(env.domains, weights.mean(axis=0).tolist())),
        "skipped_steps": progress.skipped,
        "resumed_at": progress.resumed_at,
        # what the result was made from: a sweep reuses the run only for the same code and data (runs/provenance.py)
        "code": provenance.code_version(),
        "corpus": checkpoint.corpus_fingerprint(env.corpus)["fingerprint"],
    }


def _output_writers(
    cfg: Config, env: PretrainEnv, agent: Agent, progress: _Progress, result: dict | None, summary: dict, metrics
) -> list[tuple[str, Callable[[Path], None]]]:
    """Every output but the summary as (name, writer): model, agent, mixture, transitions, plots."""
    weights_arr, steps_arr, val_arr = np.array(progress.weights), np.array(progress.steps), np.array(progress.val_ppl)

    def save_model(path: Path) -> None:
        tokenizer = to_hf_tokenizer(env.corpus.tokenizer(), cfg.model.seq_len)
        save_for_generation(env.backend.model, tokenizer, path, cfg.train.device, cfg.run.progress)

    def save_transitions(path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, **{k: np.array(v, dtype=np.float32) for k, v in progress.transitions.items()})

    outputs: list[tuple[str, Callable[[Path], None]]] = [
        ("model", save_model),
        ("agent.pt", agent.save),
        ("mixture.json", lambda p: write_mixture(p, env.domains, progress.steps, weights_arr)),
    ]
    if progress.transitions:
        outputs.append(("transitions.npz", save_transitions))
    if cfg.run.plots:
        test_ppl = result["test_ppl"] if result is not None else None  # a training episode has no final evaluation
        val_steps = np.array(progress.val_steps)
        outputs += _plots(cfg.agent.name, env, steps_arr, weights_arr, val_steps, val_arr, summary, test_ppl)
        if plots.diagnostic_columns(metrics):
            title = f"Diagnostics ({cfg.agent.name})"
            outputs.append(("diagnostics.png", lambda p: plots.plot_diagnostics(metrics, p, title)))
    return outputs


def _plots(title: str, env: PretrainEnv, steps, weights, val_steps, val_ppl, summary: dict, test_ppl) -> list:
    """The run's plots as (file name, writer): each domain in its colour in all of them (``plots.colors``), the
    domains the task does not score marked."""
    domains = env.domains
    unscored = [d for d in domains if d not in env.metric.eval_domains]
    out = [
        ("weights.png", lambda p: plots.plot_weights(steps, weights, domains, p, f"Domain weights ({title})", unscored))
    ]
    if len(val_ppl):
        curves = {"task metric (geometric mean)": (val_steps, np.array(summary["val_curve"]["metric"]))}
        curves.update({d: (val_steps, val_ppl[:, i]) for i, d in enumerate(domains)})
        palette, name = plots.colors(domains), f"Validation perplexity ({title})"
        out.append(("val_ppl.png", lambda p: plots.plot_val_ppl(curves, p, name, palette, unscored=unscored)))
    if test_ppl is not None:
        out.append(("test_ppl.png", lambda p: plots.plot_domain_ppl({title: test_ppl}, domains, p, unscored=unscored)))
    return out


def resume(
    run_dir: str | Path,
    overrides: Sequence[str] | dict | None = None,
    config: str | Path | dict | Config | None = None,
    log: Callable[[str], None] = print,
    allow_changes: Sequence[str] = (),
) -> RunResult:
    """Continue the run in ``run_dir`` from its latest complete checkpoint.

    The config is the checkpoint's own (or ``config``, which must then match it) plus ``overrides``;
    a change to a key outside ``checkpoint.SAFE_KEYS`` is refused unless listed in ``allow_changes``.
    """
    rundir.check_free(run_dir)  # a run still going, maybe before its first checkpoint: in use, not stopped
    ckpt = checkpoint.find(run_dir, warn=lambda _: None)
    cfg = load_config(ckpt.meta["config"] if config is None else config, overrides)
    return train(cfg, log=log, resume=Path(run_dir), allow_changes=allow_changes)
