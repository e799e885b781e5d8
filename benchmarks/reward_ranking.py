#!/usr/bin/env python
"""Does a per-step reward rank the domains as the task's best static mixture weights them?

A learned mixer can only move towards what its reward points at. This plays one fixed mixture (``--play``:
uniform by default) for a whole training episode per model seed and records, at every step, the Gram matrix
of the per-domain gradients on the reward layers (a reward variant registered here that keeps it, through
``REWARD_VARIANTS``, the extension point a user's variant uses). From the same gradients it computes each
candidate reward (S = Σ_{j∈target} g_j, the task's ``env.reward_target``):

    paper    W_i = ⟨g_i, S⟩ (the env's default): the first-order decrease of the summed losses
    self     W_i = ‖g_i‖² (for a target domain): what a step on domain i does for domain i (paper = self + others)
    others   W_i = ⟨g_i, S − g_i⟩: what a step on domain i does for the other domains only
    cosine   W_i = ⟨g_i, S⟩ / ‖g_i‖: the decrease per unit of gradient, free of domain i's gradient norm
    authors  the authors' code (rewards.authors): ``others`` over the mean norm, z-scored over domains

and, every ``--probe-every`` steps, from a probe of the whole model outside the training step (one training batch
per domain for g_i, one held-out batch per target domain for S_val = Σ_j h_j, the metric's own data; the
training itself is untouched):

    sgd      W_i = ⟨g_i, S_val⟩: the first-order decrease of the held-out metric under an SGD step on domain i
    adam     W_i = ⟨g_i / (√v̂ + ε), S_val⟩: the same under the step AdamW takes (its second moments v̂ now), as
             LESS (Xia et al., 2024) ranks data by Adam-preconditioned gradients; the env trains with AdamW
    adam-train  ``adam`` with S from the same training batches (Σ_{j∈target} g_j), as the env's reward has it

The figure, fixed before any was read: per seed, Spearman's rank correlation between a candidate's mean W per
domain over the episode and the references' best static weights (+1: the reward ranks the domains as the
search's winner weights them); the table gives every seed and their mean. Seeds are ``learn.first_seed``, ...
(training seeds, never a test seed). No test metric is read: this is a diagnostic of the reward, on the
validation-chosen best static mixture.

    python benchmarks/reward_ranking.py --tasks skewed train.threads=1
    python benchmarks/reward_ranking.py --tasks target env.reward_target=eval_domains train.threads=1   # its reward
    python benchmarks/reward_ranking.py --tasks skewed --seeds 2 train.total_steps=20   # a smoke run

Writes ``benchmarks/results/reward_ranking.{json,md}`` (``--json PATH``); a run of some tasks replaces theirs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from learned_tuning import best_static  # benchmarks/learned_tuning.py, beside this script
from scipy.stats import spearmanr

from acodm_gym.cli import parse_args
from acodm_gym.config import load_config
from acodm_gym.envs import PretrainEnv
from acodm_gym.envs.task import read_references
from acodm_gym.rewards import REWARD_VARIANTS, Alignments, RewardVariant, authors
from acodm_gym.runs import provenance, rundir

RESULTS = Path(__file__).resolve().parent / "results" / "reward_ranking.json"
RECORD = "record-gram"  # the reward variant that keeps each step's Gram matrix (and returns the paper's W)


def _others(gram: np.ndarray, target: np.ndarray) -> np.ndarray:
    return gram[:, target].sum(axis=1) - np.diag(gram) * target


def _cosine(gram: np.ndarray, target: np.ndarray) -> np.ndarray:
    norm = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    return np.divide(gram[:, target].sum(axis=1), norm, out=np.zeros(len(gram)), where=norm > 0)


MODEL_CANDIDATES = ("sgd", "adam", "adam-train")  # from ModelProbe, every --probe-every steps
CANDIDATES = {
    "paper": lambda g, t: g[:, t].sum(axis=1),
    "self": lambda g, t: np.diag(g) * t,
    "others": _others,
    "cosine": _cosine,
    "authors": lambda g, t: authors(Alignments.from_gram(g, t)),
}


class GramRecorder:
    """A reward variant's function that keeps every step's Gram matrix and returns the paper's W."""

    def __init__(self):
        self.grams: list[np.ndarray] = []
        self.target: np.ndarray | None = None

    def __call__(self, a: Alignments) -> np.ndarray:
        self.grams.append(np.array(a.gram, dtype=np.float64))
        self.target = np.asarray(a.target, dtype=bool)
        return np.asarray(a.target_alignment, dtype=np.float64)


class ModelProbe:
    """Per-domain gradients of the whole model, outside the training step: g_i on a training batch of domain i,
    S_val on held-out batches of the ``target`` domains (the scored ones); W under an SGD step and under AdamW's
    current step, and under AdamW's step with S from the training batches of the ``target`` domains."""

    def __init__(self, env: PretrainEnv, target: np.ndarray, seed: int, rows: int = 4096):
        seq, self.batch = env.cfg.model.seq_len, env.cfg.train.batch_size
        self.env, self.target, self.rng = env, target, np.random.default_rng(seed)
        self.train = [env.corpus.blocks(d, "train", seq, rows) for d in env.domains]
        self.heldout = [env.corpus.blocks(d, "validation", seq, rows) for d in env.domains]

    def _grad(self, params: list[torch.Tensor], blocks: np.ndarray) -> torch.Tensor:
        rows = blocks[self.rng.choice(len(blocks), min(self.batch, len(blocks)), replace=False)]
        x = torch.from_numpy(rows).to(self.env.backend.device)
        model = self.env.backend.model
        model.zero_grad(set_to_none=True)
        model(input_ids=x, labels=x).loss.backward()
        flat = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel()) for p in params])
        model.zero_grad(set_to_none=True)  # the training step starts from no gradient, as it would have
        return flat.double()

    def __call__(self) -> dict[str, np.ndarray] | None:
        """W of ``sgd`` and ``adam`` now (None before AdamW's first step: it has no second moments yet)."""
        opt = self.env.backend.optimizer
        params = [p for group in opt.param_groups for p in group["params"]]
        if not all(p in opt.state and "exp_avg_sq" in opt.state[p] for p in params):
            return None
        beta2, eps = opt.param_groups[0]["betas"][1], opt.param_groups[0]["eps"]
        precond = torch.cat(
            [
                1.0
                / ((opt.state[p]["exp_avg_sq"] / (1 - beta2 ** float(opt.state[p]["step"]))).sqrt() + eps).reshape(-1)
                for p in params
            ]
        ).double()
        s_val = sum(self._grad(params, self.heldout[j]) for j in np.flatnonzero(self.target))
        grads = [self._grad(params, blocks) for blocks in self.train]
        s_train = sum(grads[j] for j in np.flatnonzero(self.target))
        return {
            "sgd": np.array([float(g @ s_val) for g in grads]),
            "adam": np.array([float((g * precond) @ s_val) for g in grads]),
            "adam-train": np.array([float((g * precond) @ s_train) for g in grads]),
        }


def play_weights(play: str, env: PretrainEnv, refs: dict | None) -> np.ndarray:
    """The fixed mixture played: uniform, natural or the references' best static."""
    if play == "uniform":
        return np.full(env.k, 1.0 / env.k)
    if play == "natural":
        return np.asarray(env.natural_weights, dtype=np.float64)
    best = best_static(refs, env.domains)
    if best is None:
        raise SystemExit(f"--play best_static: task {env.cfg.task.name} has no references with a best static mixture")
    return np.asarray(best, dtype=np.float64)


def measure_task(task: str, play: str, seeds: list[int] | None, probe_every: int, overrides: list[str]) -> dict:
    """Per seed, every candidate's mean W per domain over one episode of ``play``, and its Spearman with the best
    static weights."""
    recorder = GramRecorder()
    REWARD_VARIANTS.register(RECORD, RewardVariant(recorder, needs_gram=True), replace=True)
    cfg = load_config(None, [f"env.reward_variant={RECORD}", "env.episode=training", *overrides], task=task)
    refs = read_references(cfg.task)
    env = PretrainEnv(cfg, log=lambda _: None)
    best = best_static(refs, env.domains)
    if best is None or np.ptp(best) == 0:
        raise SystemExit(f"task {task}: its best static mixture is missing or uniform, so it ranks no domain")
    weights = play_weights(play, env, refs)
    seeds = seeds or [cfg.learn.first_seed + i for i in range(2)]
    per_seed = []
    for seed in seeds:
        recorder.grams.clear()
        started = time.perf_counter()
        env.reset(seed=seed)
        probe, probed = None, []
        for t in range(cfg.train.total_steps):
            env.step(weights.astype(np.float32))
            if probe_every and (t + 1) % probe_every == 0:
                probe = probe or ModelProbe(env, env.metric.mask, seed)  # S_val: the scored domains
                if (w := probe()) is not None:
                    probed.append(w)
        grams = np.stack(recorder.grams)
        means = {name: np.mean([f(g, recorder.target) for g in grams], axis=0) for name, f in CANDIDATES.items()}
        if probed:
            means.update({name: np.mean([w[name] for w in probed], axis=0) for name in MODEL_CANDIDATES})
        per_seed.append(
            {
                "seed": seed,
                "steps": len(grams),
                "probes": len(probed),
                "seconds": time.perf_counter() - started,
                "mean_w": {name: m.tolist() for name, m in means.items()},
                "spearman": {name: float(spearmanr(m, best).statistic) for name, m in means.items()},
            }
        )
        print(f"{task} seed {seed}: " + ", ".join(f"{n} {v:+.2f}" for n, v in per_seed[-1]["spearman"].items()))
    return {
        "play": play,
        "played_weights": weights.tolist(),
        "domains": env.domains,
        "best_static": best,
        "reward_target": cfg.env.reward_target,
        "reward_sketch": cfg.env.reward_sketch,
        "seeds": per_seed,
        "probe_every": probe_every,
        "mean_spearman": {n: float(np.mean([s["spearman"][n] for s in per_seed])) for n in per_seed[0]["spearman"]},
    }


def report(payload: dict) -> str:
    """The markdown of a results payload: per task, each candidate's Spearman per seed, and its mean W."""
    lines = [
        "# Does the reward rank the domains as the best static mixture weights them? (benchmarks/reward_ranking.py)",
        "",
        "Spearman's rank correlation between a reward's mean W per domain over one training episode of a fixed "
        "mixture and the task's best static weights (+1: it points where the search's winner went). Candidates: "
        "`paper` ⟨g_i, S⟩ (the env's), `self` ‖g_i‖², `others` ⟨g_i, S − g_i⟩, `cosine` ⟨g_i, S⟩ / ‖g_i‖, `authors` (z-scored "
        "`others` over the mean norm), all on the reward layers at every step; and from a whole-model probe every few "
        "steps, `sgd` ⟨g_i, S_val⟩ and `adam` ⟨g_i / (√v̂ + ε), S_val⟩ with S_val the held-out gradient of the scored "
        "domains and v̂ AdamW's second moments, and `adam-train` with S from the training batches instead. Training seeds only; no test figure is read.",
    ]
    for task, r in payload["tasks"].items():
        seeds = [s["seed"] for s in r["seeds"]]
        lines += [
            "",
            f"## {task}",
            "",
            f"`{r['command']}` · {r['date']} · {provenance.describe(r['code'])} · play {r['play']} · reward target "
            f"{r['reward_target']}, sketch {r['reward_sketch']} · whole-model probe every {r['probe_every']} steps · {np.mean([s['seconds'] for s in r['seeds']]):.0f} "
            "s per episode",
            "",
            "| reward | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
            "|---|" + "---|" * (len(seeds) + 1),
        ]
        names = list(r["mean_spearman"])
        for name in names:
            cells = [f"{s['spearman'][name]:+.2f}" for s in r["seeds"]]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['mean_spearman'][name]:+.2f} |")
        lines += ["", "Mean W per domain (first seed; 3 significant digits) beside the best static:", ""]
        lines += ["| | " + " | ".join(r["domains"]) + " |", "|---|" + "---|" * len(r["domains"])]
        lines.append("| best static % | " + " | ".join(f"{100 * w:.1f}" for w in r["best_static"]) + " |")
        for name in names:
            lines.append(f"| {name} | " + " | ".join(f"{v:.3g}" for v in r["seeds"][0]["mean_w"][name]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="skewed,target", help="tasks whose best static mixture is not uniform")
    parser.add_argument("--play", default="uniform", choices=["uniform", "natural", "best_static"])
    parser.add_argument("--seeds", type=int, nargs="+", help="model seeds (default: learn.first_seed and the next)")
    parser.add_argument("--probe-every", type=int, default=25, help="steps between whole-model probes (0: none)")
    parser.add_argument("--json", default=str(RESULTS), help="results file (its .md beside it)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.threads=1")
    args = parse_args(parser, argv)
    path = Path(args.json)
    payload = json.loads(path.read_text()) if path.is_file() else {"tasks": {}}
    command = " ".join(["python", "benchmarks/reward_ranking.py", *(argv if argv is not None else sys.argv[1:])])
    for task in args.tasks.split(","):
        result = measure_task(task, args.play, args.seeds, args.probe_every, args.overrides)
        payload["tasks"][task] = {
            "command": command,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": platform.machine(),
            "code": provenance.code_version(),
            **result,
        }
        rundir.write_text(path, json.dumps(payload, indent=1) + "\n")  # after each task: a killed run keeps it
        rundir.write_text(path.with_suffix(".md"), report(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
