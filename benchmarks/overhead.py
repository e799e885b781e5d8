#!/usr/bin/env python
"""Per-step overhead of the environment and its agents against a plain training loop.

One process, one machine, the same model size, batch and optimiser for every variant:

    plain         a plain training loop written inline below (no environment): batches from the
                  same corpus (DomainSampler at the natural weights), the model's own mean loss,
                  backward, gradient clipping, AdamW + the package's warm-up/cosine schedule
    static_env    PretrainEnv driven by the natural-weights agent (no reward probes)
    odm           PretrainEnv driven by ODM's EXP3 bandit (no probes, no exploration floor)
    acodm         AC-ODM non-proxy: reward probes, critic and actor updates every step
    frozen_actor  proxy mode's target stage: a frozen actor saved by a short acodm run (no probes)
    plain_again   a control: a second, identical plain loop (its ratio shows the noise floor;
                  --no-control drops it)

Each variant keeps its own model, optimiser, env and agent for the whole run. The variants are
interleaved: in each of R rounds (the order rotates from round to round) every variant runs W
untimed warm-up steps then N timed steps. A timed env step is everything a user's run pays per
step (agent.act, env.step, agent.observe, agent.update) except periodic validation
(env.eval_interval=0). The per-variant figure is the median over all its timed steps; the ratio is
that median over the plain loop's.

Then the alignment reward alone, on the main benchmark model: the one-backward probe (hooks in the
normal backward + Gram matrix) against the naive reference (k torch.autograd.grad calls on the
per-domain losses, restricted to the probed weights, retain_graph=True, then the Gram matrix; and
the same w.r.t. every parameter, k full backwards as DoGE computes them), at
k = 8 (the corpus' domains) and k = 22 (each domain's blocks split by range into sub-domains). The
two rewards must agree to 1e-4 of max|W| or the script fails.

    python benchmarks/overhead.py [--sizes small,medium,large] [--rounds R] [--steps N]
                                  [--threads T] [--quick] [--json] [--device cpu|cuda]
    python benchmarks/overhead.py --profile 8 --sizes medium   # cProfile of plain vs acodm steps

Results: printed, and written to benchmarks/results/overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import datetime as _dt
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from acodm_gym.agents import EnvSpec, make_agent  # noqa: E402
from acodm_gym.config import Config, load_config  # noqa: E402
from acodm_gym.data.corpus import open_corpus  # noqa: E402
from acodm_gym.data.sampler import DomainSampler  # noqa: E402
from acodm_gym.data.token_corpus import TokenCorpus  # noqa: E402
from acodm_gym.envs.pretrain_env import PretrainEnv  # noqa: E402
from acodm_gym.lm.models import build_model, layers_at_depths, probe_layers  # noqa: E402
from acodm_gym.lm.probes import AlignmentProbe  # noqa: E402
from acodm_gym.lm.step import build_optimizer, domain_coefficients, sequence_losses  # noqa: E402
from acodm_gym.rewards import alignment_reward  # noqa: E402
from acodm_gym.runs.provenance import code_version  # noqa: E402
from acodm_gym.runs.runner import prepare_config  # noqa: E402

from subdomains import SubDomainCorpus  # noqa: E402

TARGETS = {"static_env": 1.03, "odm": 1.03, "acodm": 1.10, "frozen_actor": 1.03}
REWARD_TARGET_K22 = 5.0
NOISE_WARN = 0.02  # the control's ratio further than this from 1: warn that the machine was busy
AGREE_TOL = 1e-4  # |W_probe − W_naive| ≤ AGREE_TOL · max|W_naive|
SIZES = ("small", "medium", "large")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Setup


def device_name(device: str, threads: int) -> str:
    if device.startswith("cuda"):
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    model = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model}, {threads} threads ({os.cpu_count()} cores visible)"


def bench_config(size: str, args) -> Config:
    """acodm_gym/configs/bench-<size>.yaml with the benchmark's settings: no validation, a long schedule."""
    return load_config(
        f"bench-{size}",
        {
            "train": {"threads": args.threads, "device": args.device, "total_steps": 100_000},
            "env": {"eval_interval": 0},
            "run": {"progress": False, "tensorboard": False, "plots": False},
        },
    )


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------
# The variants: each is a closure that makes one training step; env variants also record where
# the step's time went (agent.act / env.step / agent.observe + agent.update).


@dataclass
class Variant:
    name: str
    step: Callable[[], None]
    times: list[float] = field(default_factory=list)  # timed steps, wall-clock seconds
    cpu: list[float] = field(default_factory=list)  # the same steps, CPU seconds of this process (all threads)
    rounds: list[list[float]] = field(default_factory=list)  # the same, per round
    parts: dict[str, list[float]] = field(default_factory=dict)  # env variants: act / env / learn
    setup: dict = field(default_factory=dict)  # what the env was set to (compute_reward, exploration_floor)
    close: Callable[[], None] = lambda: None


def plain_loop(cfg: Config, corpus: TokenCorpus, seed: int) -> Variant:
    """The reference: the simplest loop a reader would write for this model, batch and optimiser."""
    device = torch.device(cfg.train.device)
    model = build_model(cfg.model, corpus.vocab_size, seed).to(device)
    model.train()
    optimizer, schedule = build_optimizer(model, cfg.train)
    sampler = DomainSampler(
        corpus, cfg.model.seq_len, cfg.train.batch_size, exploration_share=0.0, exploration_floor=False, seed=seed
    )
    weights = corpus.natural_weights()

    def step() -> None:
        ids = sampler.sample(weights).input_ids.to(device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()

    return Variant("plain", step)


def env_variant(
    name: str, cfg: Config, corpus: TokenCorpus, seed: int, agent: str, options: dict | None = None
) -> tuple[Variant, PretrainEnv, object]:
    """PretrainEnv + agent, adapted as the runner adapts them (prepare_config), driven as the runner drives them."""
    cfg = load_config(cfg, {"agent": {"name": agent, "options": options or {}}})
    cfg = prepare_config(cfg)
    env = PretrainEnv(cfg, corpus=corpus, log=lambda _: None)
    policy = make_agent(cfg.agent, EnvSpec.from_env(env))
    state = {"obs": env.reset(seed=seed)[0]}
    variant = Variant(
        name,
        lambda: None,
        parts={"act": [], "env": [], "learn": []},
        setup={
            "agent": agent,
            "compute_reward": env.cfg.env.compute_reward,
            "exploration_floor": env.cfg.train.exploration_floor,
            "eval_interval": env.cfg.env.eval_interval,
        },
    )
    device = cfg.train.device
    record = {"on": False}

    def step() -> None:
        obs = state["obs"]
        t0 = time.perf_counter()
        action = policy.act(obs)
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, info = env.step(action)
        sync(device)
        t2 = time.perf_counter()
        policy.observe(obs, action, reward, next_obs, info)
        policy.update()
        t3 = time.perf_counter()
        state["obs"] = next_obs
        if record["on"]:
            variant.parts["act"].append(t1 - t0)
            variant.parts["env"].append(t2 - t1)
            variant.parts["learn"].append(t3 - t2)
        if terminated or truncated:  # not with total_steps=100_000, but stay correct
            state["obs"] = env.reset(seed=seed)[0]

    variant.step = step
    variant.record = record  # type: ignore[attr-defined]
    variant.close = env.close
    return variant, env, policy


def build_variants(
    cfg: Config, corpus: TokenCorpus, seed: int, prewarm: int, tmp: Path, control: bool = True
) -> dict[str, Variant]:
    """All five variants (+ the control), each stepped ``prewarm`` times (the acodm run past its
    warm-up, then saved for the frozen actor). The control ``plain_again`` is a second, identical
    plain loop: its ratio to ``plain`` should be 1, and how far it is from 1 is the noise floor."""
    out = {"plain": plain_loop(cfg, corpus, seed)}
    if control:
        out["plain_again"] = plain_loop(cfg, corpus, seed)
        out["plain_again"].name = "plain_again"
    out["static_env"] = env_variant("static_env", cfg, corpus, seed, "natural")[0]
    out["odm"] = env_variant("odm", cfg, corpus, seed, "odm")[0]
    acodm_warmup = 2  # agent warm-up steps (natural + noise, actor cloned): over before any timed step
    acodm, _, acodm_agent = env_variant(
        "acodm", cfg, corpus, seed, "acodm", {"warmup_steps": acodm_warmup, "seed": seed}
    )
    out["acodm"] = acodm
    for _ in range(max(prewarm, acodm_warmup + 2)):  # the short acodm run whose actor the frozen variant loads
        acodm.step()
    path = tmp / "acodm-agent.pt"
    acodm_agent.save(path)
    out["frozen_actor"] = env_variant("frozen_actor", cfg, corpus, seed, "frozen", {"path": str(path)})[0]
    for name, v in out.items():
        if name != "acodm":
            for _ in range(prewarm):
                v.step()
    return out


def time_variants(variants: dict[str, Variant], rounds: int, warmup: int, steps: int, device: str, label: str) -> None:
    names = list(variants)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate: every variant in every position
        for name in order:
            v = variants[name]
            rec = getattr(v, "record", None)
            for _ in range(warmup):
                v.step()
            sync(device)
            if rec is not None:
                rec["on"] = True
            this_round = []
            for _ in range(steps):
                c0, t0 = time.process_time(), time.perf_counter()
                v.step()
                sync(device)
                this_round.append(time.perf_counter() - t0)
                v.cpu.append(time.process_time() - c0)
            if rec is not None:
                rec["on"] = False
            v.times.extend(this_round)
            v.rounds.append(this_round)
        med = {n: statistics.median(variants[n].rounds[-1]) * 1e3 for n in names}
        log(f"  [{label}] round {r + 1}/{rounds}: " + "  ".join(f"{n} {m:.0f}ms" for n, m in med.items()))


def summarise(variants: dict[str, Variant], cfg: Config, n_params: int) -> dict:
    plain = statistics.median(variants["plain"].times)
    out: dict = {
        "model": {
            k: getattr(cfg.model, k)
            for k in ("arch", "hidden_size", "num_layers", "num_heads", "intermediate_size", "seq_len")
        },
        "batch_size": cfg.train.batch_size,
        "params_millions": round(n_params / 1e6, 2),
        "timed_steps_per_variant": len(variants["plain"].times),
        "ms_per_step": {},
        "ratio": {},
        "ratio_paired": {},
        "ratio_per_round": {},
        "cpu_ms_per_step": {},
        "cpu_ratio": {},
        "parts_ms": {},
        "setup": {name: v.setup for name, v in variants.items() if v.setup},
    }
    for name, v in variants.items():
        med = statistics.median(v.times)
        out["ms_per_step"][name] = round(med * 1e3, 2)
        out["ratio"][name] = round(med / plain, 4)
        # paired by round (the same stretch of machine load): a check on the pooled ratio
        per_round = [statistics.median(a) / statistics.median(b) for a, b in zip(v.rounds, variants["plain"].rounds)]
        out["ratio_per_round"][name] = [round(x, 4) for x in per_round]
        out["ratio_paired"][name] = round(statistics.median(per_round), 4)
        cpu = statistics.median(v.cpu)
        out["cpu_ms_per_step"][name] = round(cpu * 1e3, 2)
        out["cpu_ratio"][name] = round(cpu / statistics.median(variants["plain"].cpu), 4)
        if v.parts and v.parts.get("env"):
            out["parts_ms"][name] = {k: round(statistics.median(t) * 1e3, 3) for k, t in v.parts.items()}
    return out


# ----------------------------------------------------------------------------------------------
# The alignment reward alone: one-backward probe vs k autograd.grad calls


def reward_benchmark(cfg: Config, corpus: TokenCorpus, ks: list[int], reps: int, seed: int) -> dict:
    device = torch.device(cfg.train.device)
    model = build_model(cfg.model, corpus.vocab_size, seed).to(device)
    model.train()
    plain_model = copy.deepcopy(model)  # same weights, never hooked: the plain and naive passes
    depths = cfg.env.reward_depths
    probed = [m for _, m in probe_layers(model, cfg.model)]
    probed = [probed[i] for i in layers_at_depths(len(probed), depths)]
    plain_probed = [m for _, m in probe_layers(plain_model, cfg.model)]
    plain_probed = [plain_probed[i] for i in layers_at_depths(len(plain_probed), depths)]
    weights = [m.weight for m in plain_probed]
    all_params = [p for p in plain_model.parameters() if p.requires_grad]
    positions = {id(p): i for i, p in enumerate(all_params)}
    results: dict = {
        "definition": (
            "one_backward = forward + backward with the probe's hooks + Gram matrix + W; "
            "naive = forward + k torch.autograd.grad calls (per-domain mean losses, inputs = the probed weights, "
            "retain_graph=True) + Gram matrix + W; plain = forward + backward of the same loss, no probe. "
            "reward_speedup_k = naive / one_backward (total time to compute W, each with the forward/backward it needs). "
            "marginal_speedup_k = (naive - plain) / (one_backward - plain). "
            "naive_step = naive + the backward the update needs anyway; step_speedup_k = naive_step / one_backward. "
            "naive_all = forward + k torch.autograd.grad calls w.r.t. every parameter (k full backwards, as DoGE "
            "computes its per-domain gradients; W from the probed weights' part); all_params_speedup_k = naive_all / one_backward."
        ),
        "probed_layers": len(probed),
        "probed_weights_millions": round(sum(w.numel() for w in weights) / 1e6, 3),
    }
    for k in ks:
        source = corpus if k == len(corpus.domains) else SubDomainCorpus(corpus, k, cfg.model.seq_len)
        rows = max(cfg.train.batch_size, k)
        sampler = DomainSampler(
            source, cfg.model.seq_len, rows, exploration_share=0.1, exploration_floor=True, seed=seed
        )
        alpha = source.natural_weights()
        batch = sampler.sample(alpha)
        if np.any(batch.counts == 0):
            raise SystemExit(f"reward benchmark: a batch of {rows} rows misses some of the {k} domains")
        ids = batch.input_ids.to(device)
        dom = batch.domain_ids
        coef = domain_coefficients(batch.counts, alpha, "alpha")
        row_coef = torch.as_tensor(coef, dtype=torch.float32)[dom].to(device)
        scale = torch.as_tensor(1.0 / (batch.counts * coef))  # the env's: undo α_i / n_i per row
        groups = [torch.nonzero(dom == i).flatten().to(device) for i in range(k)]
        probe = AlignmentProbe(probed, k)

        def run_plain() -> None:
            plain_model.zero_grad(set_to_none=True)
            seq = sequence_losses(plain_model(input_ids=ids).logits, ids)
            (seq * row_coef).sum().backward()

        def run_probe() -> np.ndarray:
            model.zero_grad(set_to_none=True)
            probe.reset()
            probe.set_rows(dom)
            seq = sequence_losses(model(input_ids=ids).logits, ids)
            (seq * row_coef).sum().backward()
            return alignment_reward(probe.gram(scale), "paper")

        def run_naive(update_backward: bool = False, inputs: list[torch.Tensor] = weights) -> np.ndarray:
            plain_model.zero_grad(set_to_none=True)
            seq = sequence_losses(plain_model(input_ids=ids).logits, ids)
            per_domain = [seq[g].mean() for g in groups]
            index = (
                range(len(weights)) if inputs is weights else [positions[id(w)] for w in weights]
            )  # the probed weights' grads
            flat = []
            for loss_i in per_domain:
                grads = torch.autograd.grad(loss_i, inputs, retain_graph=True)
                flat.append(torch.cat([grads[i].reshape(-1) for i in index]))
            G = torch.stack(flat).double()
            w = (G @ G.t()).sum(dim=1).cpu().numpy()
            if update_backward:
                (seq * row_coef).sum().backward()
            return w

        methods = {
            "plain": run_plain,
            "one_backward": run_probe,
            "naive": run_naive,
            "naive_step": lambda: run_naive(update_backward=True),
            "naive_all": lambda: run_naive(inputs=all_params),
        }
        times: dict[str, list[float]] = {m: [] for m in methods}
        worst = 0.0
        run_plain(), run_probe(), run_naive()  # warm-up (allocations, first-call costs)
        for r in range(reps):
            names = list(methods)
            names = names[r % len(names) :] + names[: r % len(names)]
            out = {}
            for m in names:
                sync(cfg.train.device)
                t0 = time.perf_counter()
                out[m] = methods[m]()
                sync(cfg.train.device)
                times[m].append(time.perf_counter() - t0)
            w_probe, w_naive = out["one_backward"], out["naive"]
            err = max(float(np.max(np.abs(w_probe - w)) / np.max(np.abs(w))) for w in (w_naive, out["naive_all"]))
            worst = max(worst, err)
            if not err <= AGREE_TOL:
                raise SystemExit(
                    f"FAIL: alignment reward at k={k}: one-backward and naive W differ by {err:.2e} of max|W| "
                    f"(tolerance {AGREE_TOL:g}).\n  probe W = {w_probe}\n  naive W = {w_naive}"
                )
        probe.close()
        med = {m: statistics.median(t) for m, t in times.items()}
        margin_probe = med["one_backward"] - med["plain"]
        margin_naive = med["naive"] - med["plain"]
        results[f"k{k}"] = {
            "rows": rows,
            "ms": {m: round(v * 1e3, 2) for m, v in med.items()},
            "marginal_ms": {
                "one_backward": round(margin_probe * 1e3, 2),
                "naive": round(margin_naive * 1e3, 2),
                "naive_step": round((med["naive_step"] - med["plain"]) * 1e3, 2),
            },
            "reward_speedup": round(med["naive"] / med["one_backward"], 3),
            "marginal_speedup": round(margin_naive / margin_probe, 3) if margin_probe > 0 else None,
            "step_speedup": round(med["naive_step"] / med["one_backward"], 3),
            "all_params_speedup": round(med["naive_all"] / med["one_backward"], 3),
            "probe_overhead_vs_plain": round(med["one_backward"] / med["plain"], 4),
            "max_rel_error": worst,
        }
        log(
            f"  [reward k={k}] "
            + "  ".join(f"{m} {v * 1e3:.0f}ms" for m, v in med.items())
            + f"  max rel err {worst:.1e}"
        )
    return results


# ----------------------------------------------------------------------------------------------
# Profile: where an acodm env step spends its time beyond the plain loop


PROFILED = [
    # (label, file suffix, function name)
    ("env.step total", "envs/pretrain_env.py", "step"),
    ("plain: HF loss (ForCausalLMLoss)", "loss/loss_utils.py", "ForCausalLMLoss"),
    ("clip_grad_norm_", "utils/clip_grad.py", "clip_grad_norm_"),
    ("AdamW step", "optim/adam.py", "step"),
    ("train_step", "lm/step.py", "train_step"),
    ("sampler.sample", "data/sampler.py", "sample"),
    ("sequence_losses", "lm/step.py", "sequence_losses"),
    ("backend.forward", "lm/step.py", "forward"),
    ("backend.backward", "lm/step.py", "backward"),
    ("grad_norm (clip)", "lm/step.py", "grad_norm"),
    ("optimizer_step", "lm/step.py", "optimizer_step"),
    ("AlignmentProbe.set_rows", "lm/probes.py", "set_rows"),
    ("AlignmentProbe forward hook", "lm/probes.py", "forward_hook"),
    ("AlignmentProbe grad hook (per-domain δᵀa)", "lm/probes.py", "grad_hook"),
    ("AlignmentProbe.reset (zero k×W)", "lm/probes.py", "reset"),
    ("AlignmentProbe.gram", "lm/probes.py", "gram"),
    ("WeightNormProbe.before_update (clone)", "lm/probes.py", "before_update"),
    ("WeightNormProbe.norms", "lm/probes.py", "norms"),
    ("WeightNormProbe.update_norms", "lm/probes.py", "update_norms"),
    ("env._observation", "envs/pretrain_env.py", "_observation"),
    ("agent.act", "agents/acodm.py", "act"),
    ("agent.observe", "agents/acodm.py", "observe"),
    ("agent.update", "agents/acodm.py", "update"),
]


def profile(cfg: Config, corpus: TokenCorpus, steps: int, seed: int) -> str:
    """cProfile of ``steps`` plain steps and ``steps`` acodm env steps (after warm-up)."""
    with tempfile.TemporaryDirectory() as tmp:
        variants = build_variants(cfg, corpus, seed, prewarm=3, tmp=Path(tmp), control=False)
        lines = []
        for name in ("plain", "static_env", "acodm"):
            v = variants[name]
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            for _ in range(steps):
                v.step()
            prof.disable()
            wall = (time.perf_counter() - t0) / steps
            stats = pstats.Stats(prof)
            lines.append(f"\n=== {name}: {wall * 1e3:.1f} ms/step under cProfile ({steps} steps) ===")
            lines.append(f"{'function':<46}{'cum ms/step':>12}{'% of step':>10}")
            for label, suffix, func in PROFILED:
                cum = sum(st[3] for (f, _, fn), st in stats.stats.items() if fn == func and f.endswith(suffix))
                if cum:
                    lines.append(f"{label:<46}{cum / steps * 1e3:12.2f}{cum / steps / wall * 100:9.1f}%")
            buf = _top(stats, 18)
            lines.append(f"top {18} by own time:\n{buf}")
        for v in variants.values():
            v.close()
    return "\n".join(lines)


def _top(stats: pstats.Stats, n: int) -> str:
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    total = sum(st[2] for st in stats.stats.values())
    out = []
    for (file, line, func), st in rows:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if file != "~" else "built-in"
        out.append(f"  {st[2] * 1e3:9.1f} ms  {st[2] / total * 100:5.1f}%  {func[:60]}  [{where}]")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Report


def markdown(result: dict) -> str:
    lines = [
        "# Per-step overhead (benchmarks/overhead.py)",
        "",
        f"- date: {result['date']}",
        f"- machine: {result['device']}; {result['machine']}",
        f"- command: `{result['command']}`",
        f"- settings: {result['settings']}",
        "",
        "Absolute times vary with machine load (the machine may be shared): read the ratios, which",
        "come from variants interleaved in the same rounds. Ratio = median wall-clock ms/step of the",
        "variant (over all its timed steps) / the plain loop's; it is the figure checked against the",
        f"targets, on the main model (`{result['main_size']}`). Checks on it: paired = median over rounds of",
        "the per-round ratio (range: min–max); CPU = the same ratio on this process's CPU time. When",
        "they disagree, the machine was busy: rerun on a quiet one. `plain_again` is a second, identical",
        "plain loop (a control): its distance from 1.000 is the noise floor of this run.",
        "",
    ]
    for size, s in result["sizes"].items():
        control = s["ratio"].get("plain_again")
        if control is not None and abs(control - 1) > NOISE_WARN:
            lines += [
                f"**Warning ({size}): the control plain_again came out at {control:.3f}, not 1.000: the machine was busy "
                "during this run and its ratios cannot be read to a few percent. Rerun on a quiet machine.**",
                "",
            ]
    lines += [
        "| size | params (M) | variant | ms/step | ratio | paired (range) | CPU | target |",
        "|---|---:|---|---:|---:|---|---:|---|",
    ]
    for size, s in result["sizes"].items():
        for name in s["ms_per_step"]:
            rr = s["ratio_per_round"][name]
            target = TARGETS.get(name)
            mark = "" if target is None else f"≤ {target:.2f} {'met' if s['ratio'][name] <= target else 'NOT met'}"
            lines.append(
                f"| {size} | {s['params_millions']} | {name} | {s['ms_per_step'][name]:.1f} | {s['ratio'][name]:.3f} | "
                f"{s['ratio_paired'][name]:.3f} ({min(rr):.3f}–{max(rr):.3f}) | {s['cpu_ratio'][name]:.3f} | {mark} |"
            )
    lines += [
        "",
        "Where an env variant's step goes (median ms): agent.act, env.step, agent.observe + agent.update.",
        "",
        "| size | variant | act | env.step | observe + update |",
        "|---|---|---:|---:|---:|",
    ]
    for size, s in result["sizes"].items():
        for name, parts in s["parts_ms"].items():
            lines.append(f"| {size} | {name} | {parts['act']:.2f} | {parts['env']:.1f} | {parts['learn']:.2f} |")
    rw = result.get("reward")
    if rw:
        lines += [
            "",
            f"## Alignment reward alone ({result['main_size']} model, {rw['probed_layers']} probed layers, "
            f"{rw['probed_weights_millions']} M probed weights)",
            "",
            rw["definition"],
            "",
            "| k | rows | plain fwd+bwd ms | one-backward ms | naive ms | naive step ms | naive all-params ms | reward speed-up | marginal speed-up | step speed-up | all-params speed-up | max rel err |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, r in rw.items():
            if not key.startswith("k"):
                continue
            ms = r["ms"]
            marg = "n/a" if r["marginal_speedup"] is None else f"{r['marginal_speedup']:.1f}×"
            lines.append(
                f"| {key[1:]} | {r['rows']} | {ms['plain']:.0f} | {ms['one_backward']:.0f} | {ms['naive']:.0f} | {ms['naive_step']:.0f} | "
                f"{ms['naive_all']:.0f} | {r['reward_speedup']:.2f}× | {marg} | {r['step_speedup']:.2f}× | {r['all_params_speedup']:.2f}× | "
                f"{r['max_rel_error']:.1e} |"
            )
        lines.append("")
        lines.append(f"`reward_speedup_k22` = naive / one-backward at k = 22 (target ≥ {REWARD_TARGET_K22:g}×).")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes",
        default=None,
        help="comma-separated bench model sizes (acodm_gym/configs/bench-<size>.yaml); default small,medium,large",
    )
    p.add_argument(
        "--main",
        default="medium",
        help="size whose ratios are the top-level results (default medium; else the largest run)",
    )
    p.add_argument("--rounds", type=int, default=None, help="rounds of interleaved variants (default 8; --quick 4)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per variant per round (default 5; --quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per variant per round (default 1)")
    p.add_argument(
        "--reward-reps", type=int, default=None, help="repetitions of each reward method (default 7; --quick 3)"
    )
    p.add_argument("--reward-ks", default="8,22", help="domain counts for the reward benchmark")
    p.add_argument("--no-reward", action="store_true", help="skip the reward benchmark")
    p.add_argument(
        "--no-control", action="store_true", help="drop plain_again, the second plain loop that shows the noise floor"
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smallest size, fewer rounds: a check that finishes in minutes")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object on the last line")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where overhead.json and overhead.md go")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="instead of the benchmark: cProfile STEPS plain / static / acodm steps per size",
    )
    args = p.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    quick = args.quick
    sizes = (args.sizes or ("small" if quick else ",".join(SIZES))).split(",")
    rounds = args.rounds or (4 if quick else 8)
    steps = args.steps or (3 if quick else 5)
    warmup = args.warmup if args.warmup is not None else 1
    reward_reps = args.reward_reps or (3 if quick else 7)
    ks = [int(k) for k in args.reward_ks.split(",") if k]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    configs = {s: bench_config(s, args) for s in sizes}
    corpus = open_corpus(configs[sizes[0]].data, log=log)
    device = device_name(args.device, args.threads)
    log(f"device: {device}; corpus: {corpus.root} ({len(corpus.domains)} domains)")

    if args.profile:
        for s in sizes:
            print(f"\n##### profile: bench-{s} #####")
            print(profile(configs[s], corpus, args.profile, args.seed))
        return 0

    main_size = args.main if args.main in sizes else sizes[-1]
    command = "python benchmarks/overhead.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result: dict = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device,
        "machine": f"{platform.node()}, {platform.platform()}, python {platform.python_version()}, torch {torch.__version__}",
        "command": command.strip(),
        "code": code_version(),
        "settings": {
            "rounds": rounds,
            "steps": steps,
            "warmup": warmup,
            "threads": args.threads,
            "reward_reps": reward_reps,
            "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "main_size": main_size,
        "sizes": {},
    }
    started = time.perf_counter()
    for s in sizes:
        cfg = configs[s]
        log(f"bench-{s}: building variants")
        with tempfile.TemporaryDirectory() as tmp:
            variants = build_variants(
                cfg, corpus, args.seed, prewarm=max(1, warmup), tmp=Path(tmp), control=not args.no_control
            )
            n_params = sum(p.numel() for p in build_model(cfg.model, corpus.vocab_size, 0).parameters())
            time_variants(variants, rounds, warmup, steps, args.device, s)
            result["sizes"][s] = summarise(variants, cfg, n_params)
            for v in variants.values():
                v.close()
            del variants
    if not args.no_reward:
        log(f"reward benchmark on bench-{main_size}")
        result["reward"] = reward_benchmark(configs[main_size], corpus, ks, reward_reps, args.seed)
    result["settings"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["settings"]["seconds"] = round(time.perf_counter() - started, 1)

    top = result["sizes"][main_size]["ratio"]
    for name in TARGETS:
        result[name] = top[name]
    result["noise_floor"] = top.get("plain_again")  # the control's ratio: how far from 1 noise alone moved it
    for k in ks:
        if "reward" in result and f"k{k}" in result["reward"]:
            result[f"reward_speedup_k{k}"] = result["reward"][f"k{k}"]["reward_speedup"]
    result.setdefault("reward_speedup_k22", None)
    result.setdefault("reward_speedup_k8", None)
    result["targets"] = {
        **{name: {"target": t, "ratio": top[name], "met": top[name] <= t} for name, t in TARGETS.items()},
        "reward_speedup_k22": {
            "target": REWARD_TARGET_K22,
            "value": result["reward_speedup_k22"],
            "met": None if result["reward_speedup_k22"] is None else result["reward_speedup_k22"] >= REWARD_TARGET_K22,
        },
    }

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (out / "overhead.md").write_text(md)

    print(md)
    print(
        f"targets on bench-{main_size}: "
        + ", ".join(
            f"{n} {v.get('ratio', v.get('value'))} ({'not run' if v['met'] is None else 'met' if v['met'] else 'NOT met'})"
            for n, v in result["targets"].items()
        )
    )
    print(f"written: {out / 'overhead.json'}, {out / 'overhead.md'}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
