#!/usr/bin/env python
"""The alignment reward at scale: memory, time and all-reduced bytes of the probe, exact and sketched.

For each model preset and k (8 domains, or 22 sub-domains as in overhead.py) and probe variant:

    none     a training step without the alignment probe (train_step with alignment=None)
    exact    the exact per-domain gradients (paper variant: S = Σ_j g_j all-reduced, then k numbers)
    sketch   the Kronecker-sketched probe, env.reward_sketch = the default [p, q] picked below

* Peak memory: the peak RSS (``ru_maxrss``) of a FRESH subprocess per variant that builds the model,
  the optimiser and the probe and makes ``--mem-steps`` training steps (Adam state included).
* Time: one process per model; the variants are interleaved in ``--rounds`` rounds (rotating order,
  one untimed warm-up step then ``--steps`` timed steps each); the figure is the median and the
  ratio is against ``none`` in the same run (the machine may be shared).
* Bytes all-reduced per step over ranks: counted from the probe's buffers (``allreduce_bytes``);
  tests/test_probes.py::test_reward_exchange_at_world_size_2 checks the count at world size 2.
* Sketch error: exact and sketched probes on the same backward passes (several projection seeds,
  several steps); relative error ‖W_s − W‖ / ‖W‖ and Spearman correlation of W over domains. The
  default is the smallest size whose mean Spearman is ≥ 0.95 on every model and k measured.
* The formulas at the paper's scale (Pythia-1B, k = 22, 3 × 2048 × 8192 probed weights, 8 ranks).

    python benchmarks/reward_scale.py [--models pythia-70m,pythia-160m] [--ks 8,22] [--seq 64] [--batch 24]

Results: benchmarks/results/reward_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from acodm_gym.config import load_config  # noqa: E402
from acodm_gym.data.corpus import open_corpus  # noqa: E402
from acodm_gym.data.sampler import DomainSampler  # noqa: E402
from acodm_gym.lm.models import build_model, evenly_spaced_layers, layers_at_depths, probe_layers  # noqa: E402
from acodm_gym.lm.probes import AlignmentProbe, WeightNormProbe  # noqa: E402
from acodm_gym.lm.step import TorchBackend, domain_coefficients, sequence_losses, train_step  # noqa: E402
from acodm_gym.runs.provenance import code_version  # noqa: E402

from subdomains import SubDomainCorpus  # noqa: E402

SKETCHES = ([64, 64], [128, 128], [512, 64], [256, 256], [512, 128], [256, 1024], [512, 256])
SPEARMAN_MIN = 0.95
PAPER = {
    "model": "pythia-1b",
    "k": 22,
    "layers": 3,
    "out": 2048,
    "in": 8192,
    "ranks": 8,
    "params": 1.01e9,
    "step_s": 2.48,
    "bandwidth_GBps": {"nvlink": 150.0, "100Gb_network": 12.5},
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Setup:
    """A model preset, its optimiser, a stratified sampler over k (sub-)domains and the probed layers."""

    def __init__(self, model: str, k: int, args):
        self.cfg = load_config(
            {
                "model": {"preset": model, "seq_len": args.seq},
                "train": {
                    "batch_size": args.batch,
                    "threads": args.threads,
                    "total_steps": 100_000,
                    "warmup_steps": 10,
                },
            }
        )
        corpus = open_corpus(self.cfg.data, log=lambda _: None)
        self.source = corpus if k == len(corpus.domains) else SubDomainCorpus(corpus, k, args.seq)
        self.k = k
        torch.set_num_threads(args.threads)
        self.backend = TorchBackend(build_model(self.cfg.model, corpus.vocab_size, args.seed), self.cfg.train)
        modules = [m for _, m in probe_layers(self.backend.model, self.cfg.model)]
        self.layers = [modules[i] for i in layers_at_depths(len(modules), self.cfg.env.reward_depths)]
        self.norms = WeightNormProbe(
            [modules[i] for i in evenly_spaced_layers(len(modules), self.cfg.env.num_norm_probes)]
        )
        self.sampler = DomainSampler(self.source, args.seq, args.batch, 0.1, True, seed=args.seed)
        self.alpha = self.source.natural_weights()

    def probe(self, kind: str, sketch, seed: int = 0) -> AlignmentProbe | None:
        if kind == "none":
            return None
        return AlignmentProbe(self.layers, self.k, "paper", sketch if kind == "sketch" else None, seed=seed)

    def step(self, probe: AlignmentProbe | None):
        batch = self.sampler.sample(self.alpha)
        if (batch.counts == 0).any():
            raise SystemExit(f"a batch of {len(batch.counts)} rows misses some of the {self.k} domains: raise --batch")
        return train_step(self.backend, batch, self.alpha, "alpha", None, probe, self.norms)


# ----------------------------------------------------------------------------------------------
# Child processes


def child_memory(args) -> dict:
    """Fresh process: build, step ``--mem-steps`` times, report the peak RSS of this process."""
    setup = Setup(args.model, args.k, args)
    probe = setup.probe(args.probe, args.sketch)
    times = []
    for _ in range(args.mem_steps):
        t0 = time.perf_counter()
        setup.step(probe)
        times.append(time.perf_counter() - t0)
    return {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "probe_mb": probe.allocated_bytes() / 2**20 if probe else 0.0,
        "ms_steps": [t * 1e3 for t in times],
    }


def rank_stats(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(rank_stats(a), rank_stats(b))[0, 1])


def probed_step(setup: Setup, probes: list[AlignmentProbe]) -> np.ndarray:
    """A training step (one process) feeding several probes from its backward; returns the step's rescaling."""
    batch = setup.sampler.sample(setup.alpha)
    coef = domain_coefficients(batch.counts, setup.alpha, "alpha")
    for p in probes:
        p.reset(batch.counts > 0)
        p.set_rows(batch.domain_ids)
    seq = sequence_losses(setup.backend.forward(batch.input_ids), batch.input_ids)
    setup.backend.backward((seq * torch.as_tensor(coef, dtype=torch.float32)[batch.domain_ids]).sum())
    setup.backend.grad_norm()
    setup.backend.optimizer_step(apply=True)
    return np.where(batch.counts > 0, 1.0 / (np.maximum(batch.counts, 1) * coef), 0.0)


def child_timing(args) -> dict:
    """One process per model: interleaved timing of none / exact / sketch at every k, then the sketch error."""
    out: dict = {"ms_per_step": {}, "ratio": {}, "bytes": {}}
    for k in args.ks:
        setup = Setup(args.model, k, args)
        kinds = ["none", "exact", "sketch"]
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for r in range(args.rounds):
            for kind in kinds[r % 3 :] + kinds[: r % 3]:
                probe = setup.probe(kind, args.sketch)
                setup.step(probe)  # untimed: first-touch of the probe's buffers
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    setup.step(probe)
                    times[kind].append(time.perf_counter() - t0)
                if probe:
                    probe.close()
        med = {kind: statistics.median(t) for kind, t in times.items()}
        out["ms_per_step"][str(k)] = {kind: round(v * 1e3, 1) for kind, v in med.items()}
        out["ratio"][str(k)] = {kind: round(v / med["none"], 4) for kind, v in med.items()}
        # the ratio within each round (the variants ran back to back there): its spread is the noise
        per_round = {
            kind: [statistics.median(t[r * args.steps : (r + 1) * args.steps]) for r in range(args.rounds)]
            for kind, t in times.items()
        }
        out.setdefault("round_ratios", {})[str(k)] = {
            kind: [round(a / b, 4) for a, b in zip(per_round[kind], per_round["none"])] for kind in kinds
        }
        log(f"  [{args.model} k={k}] " + "  ".join(f"{kind} {v * 1e3:.0f} ms" for kind, v in med.items()))

        # bytes over ranks per step and bytes held, from the probes' buffers (all domains present)
        probes = {
            "exact_before": AlignmentProbe(setup.layers, k, "authors"),
            "exact_paper": setup.probe("exact", None),
            "sketch": setup.probe("sketch", args.sketch),
            "sketch_authors": AlignmentProbe(setup.layers, k, "authors", args.sketch),
        }
        for p in probes.values():
            p.reset()
        out["bytes"][str(k)] = {name: p.allreduce_bytes() for name, p in probes.items()}
        out["bytes"][str(k)]["probe_mb"] = {
            "exact": round(probes["exact_paper"].allocated_bytes() / 2**20, 2),
            "sketch": round(probes["sketch"].allocated_bytes() / 2**20, 3),
        }
        out["bytes"][str(k)]["probed_params"] = sum(m.weight.numel() for m in setup.layers)
        for p in probes.values():
            p.close()
        del probes, setup
    return out


def child_error(args) -> dict:
    """Sketch error against the exact probe: every (size, seed) sketch on the same backward passes."""
    out = []
    for k in args.ks:
        setup = Setup(args.model, k, args)
        for _ in range(args.error_warmup):  # away from the initialisation first
            setup.step(None)
        exact = setup.probe("exact", None)
        sketches = {
            (tuple(s), seed): AlignmentProbe(setup.layers, k, "paper", s, seed=seed)
            for s in args.sketches
            for seed in range(args.seeds)
        }
        errors = {tuple(s): [] for s in args.sketches}
        for _ in range(args.error_steps):
            scale = probed_step(setup, [exact, *sketches.values()])
            w = exact.reward(scale)
            for (size, _seed), p in sketches.items():
                ws = p.reward(scale)
                errors[size].append((float(np.linalg.norm(ws - w) / np.linalg.norm(w)), spearman(ws, w)))
        for size, vals in errors.items():
            rel, rho = np.array(vals).T
            out.append(
                {
                    "model": args.model,
                    "k": k,
                    "sketch": list(size),
                    "rel_error_w": round(float(rel.mean()), 4),
                    "rel_error_w_max": round(float(rel.max()), 4),
                    "spearman_w": round(float(rho.mean()), 4),
                    "spearman_w_min": round(float(rho.min()), 4),
                    "samples": len(vals),
                }
            )
        for p in [exact, *sketches.values()]:
            p.close()
        del setup
    return out


CHILDREN = {"memory": child_memory, "timing": child_timing, "error": child_error}


def run_child(kind: str, args, **extra) -> dict:
    """This script in a fresh process (``--child KIND``); its result is the JSON on its last stdout line."""
    opts = {
        "model": args.model,
        "seq": args.seq,
        "batch": args.batch,
        "threads": args.threads,
        "seed": args.seed,
        "mem-steps": args.mem_steps,
        "rounds": args.rounds,
        "steps": args.steps,
        "seeds": args.seeds,
        "error-steps": args.error_steps,
        "error-warmup": args.error_warmup,
        "ks": ",".join(map(str, args.ks)),
        "sketch": fmt(args.sketch),
        "sketches": ";".join(fmt(x) for x in args.sketches),
        **extra,
    }
    cmd = [sys.executable, __file__, "--child", kind] + [a for key, v in opts.items() for a in (f"--{key}", str(v))]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"child {kind} {extra} failed:\n{proc.stderr[-4000:]}")
    sys.stderr.write(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(sketch) -> str:
    return f"{sketch[0]},{sketch[1]}"


def parse_sketch(text: str) -> list[int]:
    p, q = (int(v) for v in text.split(","))
    return [p, q]


# ----------------------------------------------------------------------------------------------
# The paper's scale, from the same formulas as the probe's buffers


def paper_scale(sketch: list[int]) -> dict:
    """Per rank memory and per step all-reduce of the probe at Pythia-1B, k = 22, 3 × 2048 × 8192 weights, 8 ranks.

    A ring all-reduce sends and receives 2 (N − 1) / N times the buffer per rank; time = that / bandwidth.
    """
    k, n, (p, q) = PAPER["k"], PAPER["ranks"], sketch
    weights = PAPER["layers"] * PAPER["out"] * PAPER["in"]
    bytes_ = {
        "exact_before": 4 * k * weights,
        "exact_paper": 4 * weights + 8 * k,
        "sketch": 4 * p * q * PAPER["layers"] + 8 * k,
        "sketch_authors": 4 * k * p * q * PAPER["layers"],
    }
    memory = {
        "exact_before": 4 * k * weights,
        "exact_paper": 4 * k * weights,
        "sketch": 4 * PAPER["layers"] * (k * p * q + p * PAPER["out"] + q * PAPER["in"]),
    }
    memory["sketch_authors"] = memory["sketch"]
    ring = 2 * (n - 1) / n
    return {
        "setting": {**PAPER, "probed_params": weights, "sketch": sketch},
        "allreduce_bytes_per_step": bytes_,
        "probe_memory_bytes_per_rank": memory,
        "model_state_bytes_per_rank_16B_per_param": int(16 * PAPER["params"]),
        "allreduce_seconds": {
            link: {name: round(ring * b / (bw * 1e9), 5) for name, b in bytes_.items()}
            for link, bw in PAPER["bandwidth_GBps"].items()
        },
    }


def pick_default(errors: list[dict]) -> tuple[list[int], str]:
    """The smallest sketch whose mean Spearman over domains is ≥ SPEARMAN_MIN on every model and k measured."""
    sizes = sorted({tuple(e["sketch"]) for e in errors}, key=lambda s: (s[0] * s[1], s[1]))  # then the smaller P_in
    for size in sizes:
        if all(e["spearman_w"] >= SPEARMAN_MIN for e in errors if tuple(e["sketch"]) == size):
            return list(size), f"the smallest p·q whose mean Spearman is >= {SPEARMAN_MIN} on every model and k"
    return list(sizes[-1]), f"WARNING: no size reached Spearman {SPEARMAN_MIN}; the largest measured"


def mb(x: float) -> str:
    return f"{x / 2**20:,.1f} MiB" if x < 2**30 else f"{x / 2**30:,.2f} GiB"


def markdown(res: dict) -> str:
    lines = [
        "# The alignment reward at scale (benchmarks/reward_scale.py)",
        "",
        f"{res['date']} · {res['device']} · `{res['command']}`",
        "",
        f"Settings: {res['settings']}. {res['note']}",
        "",
        "## Peak memory and time per step",
        "",
        "Peak RSS of a fresh process per variant; ms/step from one interleaved process per model (median); ratios "
        "against `none` (no probe) at the same model and k.",
        "",
        "| model | k | probe | sketch | peak RSS MB | × none | ms/step | × none | probe MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['model']} | {r['k']} | {r['probe']} | {r['sketch']} | {r['peak_rss_mb']:.0f} | {r['rss_ratio']:.3f} "
            f"| {r['ms_per_step']:.0f} | {r['time_ratio']:.3f} | {r['probe_mb']:.2f} |"
        )
    b = res["allreduce_bytes_per_step"]
    lines += [
        "",
        f"## Bytes all-reduced per step over ranks ({b['model']}, k = {b['k']})",
        "",
        "| exact, before (k per-domain gradients) | exact, paper variant (S, then k numbers) | sketch, paper "
        "(S's sketch, then k numbers) | sketch, authors (k sketches) |",
        "|---|---|---|---|",
        f"| {b['exact_before']:,} ({mb(b['exact_before'])}) | {b['exact_paper']:,} ({mb(b['exact_paper'])}) "
        f"| {b['sketch']:,} ({mb(b['sketch'])}) | {b['sketch_authors']:,} ({mb(b['sketch_authors'])}) |",
        "",
        b["note"],
        "",
        "## Sketch error (W of the paper variant against the exact probe)",
        "",
        "| model | k | sketch | rel. error of W (mean / max) | Spearman over domains (mean / min) |",
        "|---|---|---|---|---|",
    ]
    for e in res["sketch_error"]:
        lines.append(
            f"| {e['model']} | {e['k']} | {e['sketch']} | {e['rel_error_w']:.3f} / {e['rel_error_w_max']:.3f} "
            f"| {e['spearman_w']:.3f} / {e['spearman_w_min']:.3f} |"
        )
    lines += ["", f"Default sketch: {res['default_sketch']} ({res['default_reason']}).", ""]
    ps = res["paper_scale"]
    st = ps["setting"]
    lines += [
        f"## At the paper's scale ({st['model']}, k = {st['k']}, {st['layers']} × {st['out']} × {st['in']} = "
        f"{st['probed_params']:,} probed weights, {st['ranks']} ranks, sketch {st['sketch']})",
        "",
        "| probe | memory per rank | all-reduced per step | time at NVLink 150 GB/s | time at 100 Gb/s (12.5 GB/s) |",
        "|---|---|---|---|---|",
    ]
    for name in ("exact_before", "exact_paper", "sketch", "sketch_authors"):
        lines.append(
            f"| {name} | {mb(ps['probe_memory_bytes_per_rank'][name])} | {mb(ps['allreduce_bytes_per_step'][name])} "
            f"| {ps['allreduce_seconds']['nvlink'][name] * 1e3:.2f} ms "
            f"| {ps['allreduce_seconds']['100Gb_network'][name] * 1e3:.2f} ms |"
        )
    lines += [
        "",
        f"Formulas: exact_before = 4·k·P bytes (memory and exchange); exact_paper exchanges 4·P + 8·k (S in "
        f"float32, k float64 numbers) but still holds 4·k·P; sketch holds 4·L·(k·p·q + p·out + q·in) and exchanges "
        f"4·L·p·q + 8·k (paper variant: the sketch of S, then k numbers) or 4·k·p·q·L (authors' variant: the k "
        f"sketches, for the Gram matrix). A ring all-reduce moves 2(N−1)/N × the buffer per rank. Model state for reference: 16 B/param "
        f"(fp32 weights, grads, Adam m and v) = {mb(ps['model_state_bytes_per_rank_16B_per_param'])} without ZeRO; "
        f"the paper's step is {st['step_s']} s.",
        "",
    ]
    return "\n".join(lines)


def mixture_runs(args) -> dict:
    """AC-ODM runs on the embedded default (tiny model) with the exact and the sketched probe, ``--mixture-seeds``
    each: is the learned mixture the same within seed noise? L1 distances between the runs' weights over the
    last half of the run, same seed exact vs sketch against exact vs exact across seeds."""
    import tempfile

    from acodm_gym.runs.runner import train

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.mixture_seeds:
            for probe, sketch in (("exact", None), ("sketch", args.mixture_sketch)):
                overrides = [
                    f"train.total_steps={args.mixture_steps}",
                    f"run.seed={seed}",
                    "agent.name=acodm",
                    f"train.threads={args.threads}",
                    f"run.out_dir={tmp}",
                    f"run.name={probe}-{seed}",
                    "run.progress=false",
                    "run.plots=false",
                    "run.tensorboard=false",
                    "run.checkpoint_interval=0",
                ]
                if sketch:
                    overrides.append(f"env.reward_sketch=[{sketch[0]},{sketch[1]}]")
                log(f"mixture: {probe} seed {seed}")
                result = train(load_config(None, overrides), log=lambda _: None)
                schedule = json.loads((result.run_dir / "mixture.json").read_text())["schedule"]["weights"]
                late = np.array(schedule[len(schedule) // 2 :]).mean(axis=0)
                runs[f"{probe}-{seed}"] = {
                    "late_weights": late.round(4).tolist(),
                    "domains": result.summary["domains"],
                    "final_val_ppl_avg": round(result.summary["final_val_ppl_avg"], 2),
                    "seconds_per_step": round(result.summary["seconds_per_step"], 3),
                }

    def l1(a, b):
        return round(float(np.abs(np.array(runs[a]["late_weights"]) - np.array(runs[b]["late_weights"])).sum()), 4)

    seeds = args.mixture_seeds
    return {
        "steps": args.mixture_steps,
        "sketch": args.mixture_sketch,
        "runs": runs,
        "l1_exact_vs_sketch_same_seed": {str(s): l1(f"exact-{s}", f"sketch-{s}") for s in seeds},
        "l1_across_seeds": {
            "exact": l1(f"exact-{seeds[0]}", f"exact-{seeds[1]}"),
            "sketch": l1(f"sketch-{seeds[0]}", f"sketch-{seeds[1]}"),
        },
    }


def mixture_markdown(res: dict) -> str:
    lines = [
        "# AC-ODM with the sketched vs the exact probe (benchmarks/reward_scale.py --mixture)",
        "",
        f"{res['date']} · `{res['command']}` · embedded default (tiny model, default corpus), {res['steps']} steps, "
        f"sketch {res['sketch']}. Weights: mean over the second half of each run. {res['note']}",
        "",
        "| run | late weights | final val ppl (avg) | s/step |",
        "|---|---|---|---|",
    ]
    for name, r in res["runs"].items():
        lines.append(
            f"| {name} | {', '.join(f'{w:.3f}' for w in r['late_weights'])} | {r['final_val_ppl_avg']} | {r['seconds_per_step']} |"
        )
    lines += [
        "",
        f"L1 distance of the weights, exact vs sketch at the same seed: {res['l1_exact_vs_sketch_same_seed']}; "
        f"across seeds: {res['l1_across_seeds']}.",
        "",
    ]
    return "\n".join(lines)


def run_info(args, command: str, load_start, started: float, settings: dict) -> dict:
    """Date, device, command and settings of a measurement (``settings``: the mode's own, between the shared
    shape and the load averages)."""
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": f"cpu: {platform.processor() or platform.machine()}, {args.threads} thread(s), {os.cpu_count()} cores visible",
        "command": command,
        "code": code_version(),
        "settings": {
            "seq": args.seq,
            "batch": args.batch,
            "threads": args.threads,
            **settings,
            "load_average_start": list(load_start),
            "load_average_end": list(os.getloadavg()),
            "seconds": round(time.perf_counter() - started, 1),
        },
    }


def timing_only(args, command: str) -> dict:
    """Only the interleaved timing of none / exact / sketch, per model and k, with the per-round ratios."""
    load_start, started = os.getloadavg(), time.perf_counter()
    rows = []
    for model in args.models.split(","):
        log(f"{model}: interleaved timing, {args.rounds} rounds of {args.steps} steps")
        args.model = model
        timing = run_child("timing", args)
        for k in args.ks:
            for probe in ("none", "exact", "sketch"):
                rounds = timing["round_ratios"][str(k)][probe]
                rows.append(
                    {
                        "model": model,
                        "k": k,
                        "probe": probe,
                        "sketch": args.sketch if probe == "sketch" else None,
                        "ms_per_step": timing["ms_per_step"][str(k)][probe],
                        "time_ratio": timing["ratio"][str(k)][probe],
                        "round_ratios": rounds,
                        "round_ratio_median": round(statistics.median(rounds), 4),
                    }
                )
    return {
        "rows": rows,
        **run_info(args, command, load_start, started, {"rounds": args.rounds, "steps": args.steps}),
    }


def timing_markdown(res: dict) -> str:
    lines = [
        "# Time per step of the alignment probe (benchmarks/reward_scale.py --timing-only)",
        "",
        f"{res['date']} · {res['device']} · `{res['command']}`",
        "",
        f"Settings: {res['settings']}. The variants run back to back in each round (rotating order); "
        "× none is the ratio of medians over all rounds, the round ratios are within each round.",
        "",
        "| model | k | probe | sketch | ms/step | × none | round ratios: median (min–max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        rr = r["round_ratios"]
        lines.append(
            f"| {r['model']} | {r['k']} | {r['probe']} | {r['sketch']} | {r['ms_per_step']:.0f} | {r['time_ratio']:.3f} "
            f"| {r['round_ratio_median']:.3f} ({min(rr):.3f}–{max(rr):.3f}) |"
        )
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="pythia-70m,pythia-160m", help="model presets, smallest first")
    ap.add_argument("--ks", default="8,22", help="domain counts (8: the corpus' domains; more: sub-domains)")
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--batch", type=int, default=24, help="rows per batch (>= the largest k)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mem-steps", type=int, default=2, help="steps of each memory process")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    ap.add_argument("--steps", type=int, default=1, help="timed steps per variant per round (after one untimed)")
    ap.add_argument("--seeds", type=int, default=3, help="projection seeds per sketch size")
    ap.add_argument("--error-steps", type=int, default=2, help="steps on which the sketch error is measured")
    ap.add_argument("--error-warmup", type=int, default=3, help="training steps before the sketch error is measured")
    ap.add_argument("--sketches", default=";".join(fmt(s) for s in SKETCHES))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("--sketch", default="512,64", help="p,q of --timing-only (a full run picks its default itself)")
    ap.add_argument(
        "--timing-only",
        action="store_true",
        help="instead: only the interleaved time per step (with --sketch; for a quiet machine and many --rounds), "
        "into reward_scale_timing.{json,md}",
    )
    ap.add_argument("--mixture", action="store_true", help="instead: AC-ODM runs with the exact vs the sketched probe")
    ap.add_argument("--mixture-steps", type=int, default=200)
    ap.add_argument("--mixture-seeds", default="0,1")
    ap.add_argument("--mixture-sketch", default="64,256", help="p,q for the tiny model's 128 × 512 probed layers")
    args = ap.parse_args(argv)
    args.ks = [int(k) for k in args.ks.split(",")]
    args.sketches = [parse_sketch(x) for x in args.sketches.split(";")]
    args.sketch = parse_sketch(args.sketch)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/reward_scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.mixture:
        args.mixture_seeds = [int(x) for x in args.mixture_seeds.split(",")]
        args.mixture_sketch = parse_sketch(args.mixture_sketch)
        res = {
            **mixture_runs(args),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command,
            "code": code_version(),
            "note": "One shared machine, runs one after another.",
        }
        write_atomic(out / "reward_scale_mixture.json", json.dumps(res, indent=2) + "\n")
        write_atomic(out / "reward_scale_mixture.md", mixture_markdown(res) + "\n")
        print(mixture_markdown(res))
        return 0
    if args.batch < max(args.ks):
        ap.error(f"--batch {args.batch} is smaller than k = {max(args.ks)}: every domain must be in every batch")
    if args.timing_only:
        res = timing_only(args, command)
        write_atomic(out / "reward_scale_timing.json", json.dumps(res, indent=2) + "\n")
        write_atomic(out / "reward_scale_timing.md", timing_markdown(res) + "\n")
        print(timing_markdown(res))
        return 0

    started = time.perf_counter()
    load_start = os.getloadavg()
    models = args.models.split(",")
    errors = []
    for model in models:
        log(f"{model}: sketch error")
        args.model = model
        errors += run_child("error", args)
    args.sketch, reason = pick_default(errors)
    log(f"default sketch {args.sketch}: {reason}")
    timing = {}
    for model in models:
        log(f"{model}: interleaved timing")
        args.model = model
        timing[model] = run_child("timing", args)
    rows = []
    for model in models:
        args.model = model
        for k in args.ks:
            for probe in ("none", "exact", "sketch"):
                mem = run_child("memory", args, k=k, probe=probe)
                rows.append(
                    {
                        "model": model,
                        "k": k,
                        "probe": probe,
                        "sketch": args.sketch if probe == "sketch" else None,
                        "peak_rss_mb": round(mem["peak_rss_mb"], 1),
                        "ms_per_step": timing[model]["ms_per_step"][str(k)][probe],
                        "probe_mb": round(mem["probe_mb"], 3),
                        "time_ratio": timing[model]["ratio"][str(k)][probe],
                    }
                )
                log(f"  [{model} k={k} {probe}] peak RSS {mem['peak_rss_mb']:.0f} MB")
    for r in rows:
        base = next(x for x in rows if x["model"] == r["model"] and x["k"] == r["k"] and x["probe"] == "none")
        r["rss_ratio"] = round(r["peak_rss_mb"] / base["peak_rss_mb"], 4)
    head_model, head_k = models[-1], max(args.ks)
    head = timing[head_model]["bytes"][str(head_k)]
    result = {
        "rows": rows,
        "allreduce_bytes_per_step": {
            "exact_before": head["exact_before"],
            "exact_paper": head["exact_paper"],
            "sketch": head["sketch"],
            "sketch_authors": head["sketch_authors"],
            "model": head_model,
            "k": head_k,
            "probed_params": head["probed_params"],
            "note": "Counted from the probe's buffers (AlignmentProbe.allreduce_bytes): exact_before = 4·k·P (the k "
            "per-domain gradients, as before; the authors' variant still does this), exact_paper = 4·P + 8·k, "
            "sketch = 4·p·q per layer + 8·k (paper variant: S's sketch, then k numbers), sketch_authors = "
            "4·k·p·q per layer (the k sketches, for the Gram matrix). tests/test_probes.py::test_reward_exchange_at_world_size_2 checks "
            "that the bytes all-reduced at world size 2 (gloo) equal this count.",
        },
        "allreduce_bytes_by_model": {m: timing[m]["bytes"] for m in models},
        "sketch_error": errors,
        "default_sketch": args.sketch,
        "default_reason": reason,
        "paper_scale": paper_scale(args.sketch),
        **run_info(
            args,
            command,
            load_start,
            started,
            {
                "mem_steps": args.mem_steps,
                "rounds": args.rounds,
                "steps": args.steps,
                "seeds": args.seeds,
                "error_steps": args.error_steps,
            },
        ),
        "note": "The machine was shared with other jobs: peak memory is robust to that, times are not (few steps, "
        "interleaved; read the ratios, not the milliseconds).",
    }
    write_atomic(out / "reward_scale.json", json.dumps(result, indent=2) + "\n")
    write_atomic(out / "reward_scale.md", markdown(result) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
