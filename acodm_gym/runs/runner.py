"""The experiment driver: one pretraining episode driven by one agent, top to bottom.

The runner owns the loop (act → env.step → observe → update), so every agent — static, bandit
or actor–critic — is driven the same way, and writes a run directory:

    runs/<name>/config.yaml     the full config used
    runs/<name>/metrics.csv     one row per step: losses, weights, rewards, validation perplexity
    runs/<name>/tensorboard/    the same as TensorBoard events, plus the agent's own statistics
    runs/<name>/summary.json    final per-domain validation and test perplexity, time per step
    runs/<name>/mixture.json    the weight schedule α(t) and its mean (reusable as a static mixture)
    runs/<name>/model/          the trained model and tokenizer in Hugging Face format
    runs/<name>/agent.pt        the agent (for acodm: the actor a target run can load)
    runs/<name>/*.png           domain weights and validation perplexity over steps, test perplexity
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from tqdm.auto import tqdm

from ..agents import Agent, EnvSpec, agent_class, make_agent
from ..agents.static import write_mixture
from ..config import Config
from ..data.tokenizer import to_hf_tokenizer
from ..envs.pretrain_env import PretrainEnv
from ..lm import distributed
from . import plots
from .logger import MetricsLogger


@dataclass
class RunResult:
    run_dir: Path
    summary: dict


def prepare_config(cfg: Config) -> Config:
    """Adapt the env to the agent: no probes for agents without a reward, no floor for ODM."""
    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env), train=dataclasses.replace(cfg.train))
    cls = agent_class(cfg.agent.name)
    if not cls.needs_reward:
        cfg.env.compute_reward = False
    if not cls.exploration_floor:
        cfg.train.exploration_floor = False
    return cfg


def run_dir_for(cfg: Config) -> Path:
    return Path(cfg.run.out_dir) / (cfg.run.name or f"{cfg.agent.name}-seed{cfg.run.seed}")


def _short(weights: np.ndarray) -> str:
    return "/".join(f"{w:.2f}" for w in weights)


def train(cfg: Config, log: Callable[[str], None] = print, agent: Agent | None = None) -> RunResult:
    """Run one episode of ``cfg.train.total_steps`` steps and write its run directory."""
    cfg = prepare_config(cfg)
    run_dir = run_dir_for(cfg)
    # Multi-rank (train.backend=deepspeed under torchrun/deepspeed): every rank steps the env in lockstep;
    # rank 0 alone runs the agent (the env broadcasts its action) and writes the run directory.
    main = distributed.is_main_process()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    env = PretrainEnv(cfg, log=log if main else (lambda _: None))
    agent = (agent or make_agent(cfg.agent, EnvSpec.from_env(env))) if main else None
    logger = MetricsLogger(run_dir, env.domains, tensorboard=cfg.run.tensorboard) if main else None
    obs, info = env.reset(seed=cfg.run.seed)
    total = cfg.train.total_steps
    bar = tqdm(total=total, desc=f"{cfg.agent.name}", disable=not (cfg.run.progress and main), dynamic_ncols=True)
    weights, steps, val_steps, val_ppl = [], [], [], []
    skipped = 0
    started = time.perf_counter()
    try:
        for _ in range(total):
            action = agent.act(obs) if main else None
            next_obs, reward, terminated, truncated, info = env.step(action)
            if main:
                agent.observe(obs, action, reward, next_obs, info)
                stats = agent.update()
                logger.log(info, reward, stats)
            weights.append(info["domain_weights"])
            skipped += int(info["skipped"])
            steps.append(info["step"])
            if "val_ppl" in info:
                val_steps.append(info["step"])
                val_ppl.append(info["val_ppl"])
            elapsed = time.perf_counter() - started
            bar.update(1)
            bar.set_postfix_str(
                f"loss={info['objective']:.3f} tok/s={info['tokens'] / elapsed:,.0f} w={_short(info['domain_weights'])}",
                refresh=False,
            )
            obs = next_obs
            if terminated or truncated:
                break
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    seconds = time.perf_counter() - started

    test_ppl = np.exp(env.evaluate("test"))
    if not main:  # the other ranks' model and numbers are rank 0's
        env.close()
        distributed.barrier()  # return once rank 0 has written the run directory
        return RunResult(run_dir, {})
    model_dir = run_dir / "model"
    env.backend.model.save_pretrained(model_dir)
    to_hf_tokenizer(env.corpus.tokenizer()).save_pretrained(model_dir)
    agent.save(run_dir / "agent.pt")

    weights_arr, steps_arr = np.array(weights), np.array(steps)
    mean_weights = weights_arr.mean(axis=0)
    write_mixture(run_dir / "mixture.json", env.domains, steps, weights_arr)
    val_arr = np.array(val_ppl)
    summary = {
        "agent": cfg.agent.name,
        "seed": cfg.run.seed,
        "steps": len(steps),
        "tokens": int(info["tokens"]),
        "seconds": round(seconds, 2),
        "seconds_per_step": seconds / max(1, len(steps)),
        "domains": env.domains,
        "final_val_ppl": dict(zip(env.domains, val_arr[-1].tolist())) if len(val_arr) else {},
        "final_val_ppl_avg": float(val_arr[-1].mean()) if len(val_arr) else None,
        "val_curve": {"steps": val_steps, "avg_ppl": val_arr.mean(axis=1).tolist() if len(val_arr) else []},
        "test_ppl": dict(zip(env.domains, test_ppl.tolist())),
        "test_ppl_avg": float(test_ppl.mean()),
        "mean_weights": dict(zip(env.domains, mean_weights.tolist())),
        "skipped_steps": skipped,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))

    if cfg.run.plots:
        plots.plot_weights(steps_arr, weights_arr, env.domains, run_dir / "weights.png", f"Domain weights ({cfg.agent.name})")
        if len(val_arr):
            curves = {"average": (np.array(val_steps), val_arr.mean(axis=1))}
            curves.update({d: (np.array(val_steps), val_arr[:, i]) for i, d in enumerate(env.domains)})
            plots.plot_val_ppl(curves, run_dir / "val_ppl.png", f"Validation perplexity ({cfg.agent.name})")
        plots.plot_domain_ppl({cfg.agent.name: test_ppl}, env.domains, run_dir / "test_ppl.png")
    env.close()
    distributed.barrier()
    return RunResult(run_dir, summary)
