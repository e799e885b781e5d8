"""Probes: the one-backward alignment reward against k autograd calls, layer choice, weight norms.

The reward's exchange at world size 2 runs in two ranks started with ``python -m torch.distributed.run``
(gloo, this file as the worker); the sketched probe is checked for unbiasedness and k-free memory.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from acodm_gym.config import ConfigError, load_config
from acodm_gym.data.sampler import DomainSampler
from acodm_gym.envs import PretrainEnv
from acodm_gym.lm.distributed import free_port
from acodm_gym.lm.models import build_model, evenly_spaced_layers, layers_at_depths, probe_layers
from acodm_gym.lm.probes import AlignmentProbe, WeightNormProbe
from acodm_gym.lm.step import TorchBackend, domain_coefficients, sequence_losses, train_step
from acodm_gym.rewards import alignment_reward

from conftest import small_config

K = 4
REPO = Path(__file__).resolve().parent.parent
SKETCH = [4, 8]  # of the 32 × 64 probed layers of the small config
# The probes of the world-size-2 test: (variant, sketch)
RANK_PROBES = [("paper", None), ("authors", None), ("paper", SKETCH), ("authors", SKETCH)]


def _setup(corpus_text_dir, cache_dir, corpus, *, arch="gpt_neox", layers=4, floor=True, **train):
    cfg = load_config(
        small_config(
            corpus_text_dir,
            cache_dir,
            model={"arch": arch, "num_layers": layers},
            train={"batch_size": 12, "exploration_floor": floor, **train},
        )
    )
    torch.set_num_threads(1)
    model = build_model(cfg.model, corpus.vocab_size, seed=0)
    reference = copy.deepcopy(model)  # identical weights, never updated
    backend = TorchBackend(model, cfg.train)
    blocks = probe_layers(model, cfg.model)
    picked = layers_at_depths(len(blocks), cfg.env.reward_depths)
    probe = AlignmentProbe([blocks[i][1] for i in picked], K)
    norms = WeightNormProbe([blocks[i][1] for i in evenly_spaced_layers(len(blocks), cfg.env.num_norm_probes)])
    ref_weights = [dict(reference.named_modules())[blocks[i][0]].weight for i in picked]
    sampler = DomainSampler(corpus, cfg.model.seq_len, cfg.train.batch_size, cfg.train.exploration_share, floor, seed=0)
    return cfg, backend, probe, norms, reference, ref_weights, sampler


def _naive_gram(reference, weights, batch) -> np.ndarray:
    """k separate autograd calls: g_i = ∇ ℓ_i with ℓ_i the mean sequence loss of domain i's rows."""
    seq = sequence_losses(reference(input_ids=batch.input_ids).logits, batch.input_ids)
    grads = []
    for i in range(K):
        rows = batch.domain_ids == i
        if not rows.any():
            grads.append(torch.zeros(sum(w.numel() for w in weights), dtype=torch.float64))
            continue
        g = torch.autograd.grad(seq[rows].mean(), weights, retain_graph=True)
        grads.append(torch.cat([x.reshape(-1) for x in g]).double())
    g = torch.stack(grads)
    return (g @ g.t()).numpy()


def _scale(batch, alpha, weighting) -> np.ndarray:
    """The step's rescaling of each domain's sum of δᵀa (lm/step.py): 1 / (n_i · coefficient_i), 0 if absent."""
    coef = domain_coefficients(batch.counts, alpha, weighting)
    return np.where(batch.counts > 0, 1.0 / (np.maximum(batch.counts, 1) * coef), 0.0)


def _close(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-4) -> None:
    scale = np.abs(expected).max()
    assert scale > 0
    assert np.abs(actual - expected).max() <= rel * scale, (actual, expected)


@pytest.mark.parametrize(
    "weighting, micro, alpha",
    [
        ("alpha", None, [0.05, 0.15, 0.3, 0.5]),
        ("alpha", 5, [0.6, 0.1, 0.25, 0.05]),  # micro-batches cut through domain groups
        ("mean", None, [0.4, 0.3, 0.2, 0.1]),
        ("mean", 4, [0.25, 0.25, 0.25, 0.25]),
        ("alpha", None, [0.0, 0.0, 1.0, 0.0]),  # α_i = 0 for domains present through the floor
    ],
)
def test_one_backward_alignment_equals_k_autograd_calls(corpus_text_dir, cache_dir, corpus, weighting, micro, alpha):
    cfg, backend, probe, norms, reference, ref_weights, sampler = _setup(
        corpus_text_dir, cache_dir, corpus, loss_weighting=weighting, micro_batch_size=micro
    )
    alpha = np.array(alpha)
    batch = sampler.sample(alpha)
    assert (batch.counts > 0).all() and len(set(batch.counts.tolist())) > 1
    out = train_step(backend, batch, alpha, weighting, micro, probe, norms)
    assert out.finite
    gram = _naive_gram(reference, ref_weights, batch)
    _close(out.reward, gram.sum(axis=1))  # exact paper variant: S = Σ_j g_j, then ⟨g_i, S⟩ (O(P + k) exchange)
    probe_gram = probe.gram(_scale(batch, alpha, weighting))  # the full Gram matrix (authors' variant)
    _close(probe_gram, gram)
    _close(out.reward, alignment_reward(probe_gram, "paper"), rel=1e-6)  # the same W as from the Gram matrix
    # the per-domain losses reported are those of the pre-update model
    with torch.no_grad():
        seq = sequence_losses(reference(input_ids=batch.input_ids).logits, batch.input_ids)
    expected = [seq[batch.domain_ids == i].mean().item() for i in range(K)]
    assert np.allclose(out.domain_losses, expected, rtol=1e-5)


def test_alignment_with_an_absent_domain(corpus_text_dir, cache_dir, corpus):
    cfg, backend, probe, norms, reference, ref_weights, sampler = _setup(
        corpus_text_dir, cache_dir, corpus, floor=False
    )
    alpha = np.array([0.5, 0.0, 0.5, 0.0])
    batch = sampler.sample(alpha)
    assert batch.counts[1] == 0 and batch.counts[3] == 0
    out = train_step(backend, batch, alpha, "alpha", None, probe, norms)
    gram = _naive_gram(reference, ref_weights, batch)
    _close(out.reward, gram.sum(axis=1))
    assert np.all(out.reward[[1, 3]] == 0)
    assert all(g.shape[0] == 2 for g in probe.grads)  # nothing allocated for the absent domains
    probe_gram = probe.gram(_scale(batch, alpha, "alpha"))
    _close(probe_gram, gram)
    assert np.all(probe_gram[[1, 3]] == 0) and np.all(probe_gram[:, [1, 3]] == 0)
    assert np.isnan(out.domain_losses[[1, 3]]).all() and np.isfinite(out.domain_losses[[0, 2]]).all()


def test_alignment_with_eval_domains_as_target(corpus_text_dir, cache_dir, corpus):
    """env.reward_target: eval_domains: S sums only the target domains, W_i = Σ_{j∈target} ⟨g_i, g_j⟩ (k autograd calls)."""
    cfg, backend, _, norms, reference, ref_weights, sampler = _setup(corpus_text_dir, cache_dir, corpus)
    target = np.array([False, True, False, True])
    probe = AlignmentProbe(backend_probe_layers(backend, cfg), K, target=target)
    alpha = np.array([0.2, 0.3, 0.1, 0.4])
    batch = sampler.sample(alpha)
    out = train_step(backend, batch, alpha, "alpha", None, probe, norms)
    gram = _naive_gram(reference, ref_weights, batch)
    _close(out.reward, gram[:, target].sum(axis=1))
    assert not np.allclose(out.reward, gram.sum(axis=1), rtol=1e-2)  # not the whole-corpus W
    probe_gram = probe.gram(_scale(batch, alpha, "alpha"))
    _close(out.reward, alignment_reward(probe_gram, "paper", target), rel=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        AlignmentProbe(backend_probe_layers(backend, cfg), K, target=np.zeros(K, dtype=bool))


def backend_probe_layers(backend, cfg) -> list:
    blocks = probe_layers(backend.model, cfg.model)
    return [blocks[i][1] for i in layers_at_depths(len(blocks), cfg.env.reward_depths)]


def test_alignment_on_llama(corpus_text_dir, cache_dir, corpus):
    cfg, backend, probe, norms, reference, ref_weights, sampler = _setup(
        corpus_text_dir, cache_dir, corpus, arch="llama", micro_batch_size=7
    )
    alpha = np.array([0.1, 0.2, 0.3, 0.4])
    batch = sampler.sample(alpha)
    out = train_step(backend, batch, alpha, "alpha", 7, probe, norms)
    _close(out.reward, _naive_gram(reference, ref_weights, batch).sum(axis=1))


def test_update_is_the_alpha_weighted_objective(corpus_text_dir, cache_dir, corpus):
    """θ ← θ − η Σ α_i ∇ℓ_i: the objective the update descends is Σ α_i ℓ_i of a reference forward (rows weighted α_i / n_i)."""
    cfg, backend, probe, norms, reference, _, sampler = _setup(corpus_text_dir, cache_dir, corpus, micro_batch_size=5)
    alpha = np.array([0.05, 0.15, 0.3, 0.5])
    batch = sampler.sample(alpha)
    out = train_step(backend, batch, alpha, "alpha", 5, None, norms)
    seq = sequence_losses(reference(input_ids=batch.input_ids).logits, batch.input_ids)
    objective = sum(alpha[i] * seq[batch.domain_ids == i].mean() for i in range(K))
    assert out.objective == pytest.approx(objective.item(), rel=1e-5)
    coef = domain_coefficients(batch.counts, alpha, "alpha")
    assert np.allclose(coef * batch.counts, alpha)


def test_authors_variant_from_the_same_gram():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(5, 40))
    gram = g @ g.T
    diag = np.diag(gram)
    raw = np.array([sum(gram[i, j] for j in range(5) if j != i) for i in range(5)]) / np.sqrt(diag).mean()
    z = (raw - raw.mean()) / raw.std()
    assert np.allclose(alignment_reward(gram, "authors"), np.clip(z, -3, 3))
    assert np.allclose(alignment_reward(gram, "paper"), g @ g.sum(axis=0))
    # the z-score clamps an outlier domain at ±3
    outlier = np.eye(12)
    outlier[0, 1:] = outlier[1:, 0] = 1.0
    w = alignment_reward(outlier, "authors")
    assert w[0] == 3.0 and np.all(np.abs(w) <= 3.0)
    # scale-free: the same reward at any gradient scale
    assert np.allclose(alignment_reward(gram * 1e-6, "authors"), alignment_reward(gram, "authors"))
    with pytest.raises(ValueError, match="paper.*authors"):
        alignment_reward(gram, "doge")


def test_authors_variant_with_a_target():
    """The authors' variant over a target: W_i = Σ_{j∈target, j≠i}⟨g_i, g_j⟩ / mean ‖g‖, then z-scored."""
    rng = np.random.default_rng(2)
    g = rng.normal(size=(5, 40))
    gram = g @ g.T
    target = np.array([True, False, True, False, False])
    raw = np.array([sum(gram[i, j] for j in (0, 2) if j != i) for i in range(5)]) / np.sqrt(np.diag(gram)).mean()
    assert np.allclose(alignment_reward(gram, "authors", target), np.clip((raw - raw.mean()) / raw.std(), -3, 3))
    assert np.allclose(alignment_reward(gram, "paper", target), g @ g[[0, 2]].sum(axis=0))
    assert np.allclose(alignment_reward(gram, "paper", np.ones(5, dtype=bool)), alignment_reward(gram, "paper"))


def test_authors_variant_leaves_absent_domains_out():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(5, 40))
    g[[1, 3]] = 0.0  # domains absent from the batch: zero gradient
    w = alignment_reward(g @ g.T, "authors")
    present = [0, 2, 4]
    expected = alignment_reward((g @ g.T)[np.ix_(present, present)], "authors")
    assert np.all(w[[1, 3]] == 0) and np.allclose(w[present], expected)
    assert np.all(alignment_reward(np.zeros((3, 3)), "authors") == 0)


def test_layers_at_depths_picks_paper_layers_and_dedupes():
    depths = [0.75, 0.875, 1.0]
    assert [i + 1 for i in layers_at_depths(16, depths)] == [12, 14, 16]
    assert layers_at_depths(4, depths) == [2, 3]
    assert layers_at_depths(2, depths) == [1]
    assert layers_at_depths(1, depths) == [0]
    assert evenly_spaced_layers(16, 4) == [0, 5, 10, 15]
    assert evenly_spaced_layers(2, 4) == [0, 0, 1, 1]  # same count for a shallow model
    assert evenly_spaced_layers(8, 1) == [7]


def test_probe_layers_find_the_ffn_output_projection(corpus_text_dir, cache_dir, corpus):
    for arch, suffix in [("gpt_neox", "mlp.dense_4h_to_h"), ("llama", "mlp.down_proj")]:
        cfg = load_config(small_config(corpus_text_dir, cache_dir, model={"arch": arch, "num_layers": 3}))
        layers = probe_layers(build_model(cfg.model, corpus.vocab_size, 0), cfg.model)
        assert len(layers) == 3 and all(n.endswith(f"layers.{i}.{suffix}") for i, (n, _) in enumerate(layers))
        assert all(m.weight.shape == (32, 64) for _, m in layers)
    bad = load_config(small_config(corpus_text_dir, cache_dir, model={"probe_module": "mlp.nope"}))
    with pytest.raises(ValueError, match="model.probe_module"):
        probe_layers(build_model(bad.model, corpus.vocab_size, 0), bad.model)


def test_build_model_is_seeded(corpus_text_dir, cache_dir, corpus):
    cfg = load_config(small_config(corpus_text_dir, cache_dir)).model
    a, b, c = (build_model(cfg, corpus.vocab_size, s) for s in (1, 1, 2))
    pa, pb, pc = (torch.cat([p.reshape(-1) for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert a.get_input_embeddings().num_embeddings == corpus.vocab_size


def test_weight_norm_probe_reads_the_actual_update(corpus_text_dir, cache_dir, corpus):
    cfg, backend, probe, norms, *_, sampler = _setup(corpus_text_dir, cache_dir, corpus)
    alpha = np.full(K, 0.25)
    for _ in range(3):
        before = [m.weight.detach().clone() for m in norms.modules]
        out = train_step(backend, sampler.sample(alpha), alpha, "alpha", None, probe, norms)
        after = [m.weight.detach() for m in norms.modules]
        expected = [torch.linalg.norm(a - b).item() for a, b in zip(after, before)]
        assert np.allclose(out.update_norms, expected, rtol=1e-6) and min(expected) > 0
        assert np.allclose(out.weight_norms, [torch.linalg.norm(a).item() for a in after], rtol=1e-6)


def test_reported_lr_is_the_rate_of_this_update(corpus_text_dir, cache_dir, corpus):
    cfg, backend, probe, norms, *_, sampler = _setup(corpus_text_dir, cache_dir, corpus)
    alpha = np.full(K, 0.25)
    lrs = []
    for _ in range(4):
        expected = backend.optimizer.param_groups[0]["lr"]
        lrs.append(train_step(backend, sampler.sample(alpha), alpha, "alpha", None, probe, norms).lr)
        assert lrs[-1] == pytest.approx(expected)
    peak = cfg.train.lr
    # warm-up from 10 % over 2 steps, the peak at step 2, then cosine decay
    assert lrs[:3] == pytest.approx([0.1 * peak, 0.55 * peak, peak]) and lrs[3] < peak


def test_probe_ignores_no_grad_forwards_and_detaches(corpus_text_dir, cache_dir, corpus):
    cfg, backend, probe, norms, *_, sampler = _setup(corpus_text_dir, cache_dir, corpus)
    batch = sampler.sample(np.full(K, 0.25))
    probe.reset()
    probe.set_rows(batch.domain_ids)
    with torch.no_grad():
        backend.forward(batch.input_ids)
    assert all(float(g.abs().sum()) == 0 for g in probe.grads)
    probe.close()
    assert all(len(m._forward_hooks) == 0 for m in probe.modules)


# -- the sketched probe and the reward's exchange over ranks ----------------------------------------
def _probed(corpus_text_dir, cache_dir, corpus, seed=0):
    cfg = load_config(small_config(corpus_text_dir, cache_dir, model={"num_layers": 4}, train={"batch_size": 12}))
    model = build_model(cfg.model, corpus.vocab_size, seed)
    blocks = probe_layers(model, cfg.model)
    return cfg, model, [blocks[i][1] for i in layers_at_depths(len(blocks), cfg.env.reward_depths)]


def _backward(model, probes, batch, alpha, rows=None, world=1):
    """One forward/backward of the α-weighted objective over ``rows`` of the batch (this rank's share × world)."""
    lo, hi = rows or (0, len(batch.domain_ids))
    coef = domain_coefficients(batch.counts, alpha, "alpha")
    for probe in probes:
        probe.reset(batch.counts > 0)
        probe.set_rows(batch.domain_ids[lo:hi])
    ids = batch.input_ids[lo:hi]
    seq = sequence_losses(model(input_ids=ids).logits, ids)
    (seq * torch.as_tensor(coef, dtype=torch.float32)[batch.domain_ids[lo:hi]]).sum().mul(world).backward()
    return np.where(batch.counts > 0, 1.0 / (np.maximum(batch.counts, 1) * coef * world), 0.0)


def test_sketch_is_unbiased(corpus_text_dir, cache_dir, corpus):
    """Over many projection seeds the sketched Gram matrix averages to the exact one (within 4 standard errors)."""
    cfg, model, layers = _probed(corpus_text_dir, cache_dir, corpus)
    seeds = 400
    exact = AlignmentProbe(layers, K)
    sketches = [AlignmentProbe(layers, K, sketch=SKETCH, seed=s) for s in range(seeds)]  # all fed by one backward
    alpha = np.array([0.1, 0.2, 0.3, 0.4])
    batch = DomainSampler(corpus, cfg.model.seq_len, 12, 0.1, True, seed=0).sample(alpha)
    scale = _backward(model, [exact, *sketches], batch, alpha)
    truth = exact.gram(scale)
    samples = np.stack([p.gram(scale) for p in sketches])
    mean, stderr = samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(seeds)
    assert np.all(stderr > 0) and np.abs(samples[0] - truth).max() > 1e-3 * np.abs(truth).max()  # a real estimate
    assert np.all(np.abs(mean - truth) <= 4 * stderr + 1e-6 * np.abs(truth).max()), (mean, truth, stderr)
    full = AlignmentProbe(layers, K, sketch=[32, 64], seed=1)  # full size: orthogonal projections, an isometry
    _backward(model, [full], batch, alpha)
    _close(full.gram(scale), truth, rel=1e-5)
    # W from sketches: the same seed on every call (and every rank) gives the same projections
    again = AlignmentProbe(layers, K, sketch=SKETCH, seed=0)
    _backward(model, [again], batch, alpha)
    assert np.allclose(again.gram(scale), samples[0], rtol=1e-6)


def test_sketch_memory_does_not_scale_with_k_times_the_layer():
    """pythia-160m's FFN output layer (768 × 3072): the sketch probe's bytes grow by k·p·q only; absent domains cost 0."""
    layers = [nn.Linear(3072, 768, bias=False) for _ in range(3)]
    p, q = 64, 64
    held = {}
    for k in (4, 16):
        probe = AlignmentProbe(layers, k, sketch=[p, q])
        probe.reset()
        held[k] = probe.allocated_bytes()
        probe.reset(np.arange(k) < 2)  # two domains present: buffers for two
        assert all(g.shape == (2, p, q) for g in probe.grads)
        assert probe.allocated_bytes() == held[k] - 4 * (k - 2) * p * q * len(layers)
        probe.close()
    projections = 4 * len(layers) * (p * 768 + q * 3072)
    assert held[4] == projections + 4 * 4 * p * q * len(layers)
    assert held[16] - held[4] == 4 * 12 * p * q * len(layers)  # 196 KB, against 12 × 9.4 MB per layer exact
    assert held[16] < 0.5 * 4 * 768 * 3072  # all of it, projections included: half of ONE copy of one layer


def test_bad_sketch_size_is_refused(corpus_text_dir, cache_dir, corpus):
    for bad in ([0, 4], [-2, 4], [4], [4, 4, 4]):
        with pytest.raises(ConfigError, match="env.reward_sketch.*two positive integers"):
            load_config({"env": {"reward_sketch": bad}})
    for bad in ([4.5, 4], "64"):
        with pytest.raises(ConfigError, match="env.reward_sketch"):
            load_config({"env": {"reward_sketch": bad}})
    assert load_config({"env": {"reward_sketch": [8, 8]}}).env.reward_sketch == [8, 8]
    _, _, layers = _probed(corpus_text_dir, cache_dir, corpus)  # 32 outputs × 64 inputs
    for bad in ([33, 8], [4, 65]):
        with pytest.raises(
            ConfigError, match=r"larger than a probed layer of 32 outputs × 64 inputs.*p ≤ 32 and q ≤ 64"
        ):
            AlignmentProbe(layers, K, sketch=bad)
    with pytest.raises(ConfigError, match="two positive integers"):
        AlignmentProbe(layers, K, sketch=[0, 8])
    env = PretrainEnv(small_config(corpus_text_dir, cache_dir, env={"reward_sketch": [64, 8]}), log=lambda _: None)
    with pytest.raises(ConfigError, match="larger than a probed layer"):
        env.reset(seed=0)  # the layer sizes are known once the model is built, before any step


def _rank_worker(argv: list[str]) -> int:
    """One rank of the world-size-2 test: this rank's rows of the batch, then each probe's reward."""
    import torch.distributed as dist

    from acodm_gym.config import ModelConfig
    from acodm_gym.lm.distributed import shard_rows

    spec, out_dir = torch.load(argv[0], weights_only=False), Path(argv[1])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model_cfg = ModelConfig(**spec["model"])
    model = build_model(model_cfg, spec["vocab"], 0)
    blocks = probe_layers(model, model_cfg)
    layers = [blocks[i][1] for i in layers_at_depths(len(blocks), spec["depths"])]
    probes = [AlignmentProbe(layers, K, v, sk, seed=7) for v, sk in RANK_PROBES]
    scale = _backward(
        model, probes, spec["batch"], spec["alpha"], shard_rows(len(spec["batch"].domain_ids), rank, world), world
    )
    result = {"rank": rank, "W": [], "bytes": [], "expected_bytes": [], "W_gram": None}
    for probe in probes:
        result["W"].append(probe.reward(scale).tolist())
        result["bytes"].append(probe.reduced_bytes)
        result["expected_bytes"].append(probe.allreduce_bytes())
    result["W_gram"] = alignment_reward(probes[0].gram(scale), "paper").tolist()  # today's path: all k gradients
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()
    return 0


def test_reward_exchange_at_world_size_2(corpus_text_dir, cache_dir, corpus, tmp_path):
    """Two gloo ranks, each with half the rows: the W of one process (cross-rank terms included), for every probe;
    the bytes each probe all-reduced are its analytical count: P + k values (exact, paper), k·P (exact, authors),
    p·q per layer + k (sketch, paper), k·p·q per layer (sketch, authors)."""
    cfg, model, layers = _probed(corpus_text_dir, cache_dir, corpus)
    alpha = np.array([0.1, 0.2, 0.3, 0.4])
    batch = DomainSampler(corpus, cfg.model.seq_len, 12, 0.1, True, seed=3).sample(alpha)
    assert (batch.counts > 0).all()
    # rank 0 holds rows 0-5, rank 1 rows 6-11: a domain split across ranks makes cross-rank terms
    assert set(batch.domain_ids[:6].tolist()) & set(batch.domain_ids[6:].tolist())
    probes = [AlignmentProbe(layers, K, v, sk, seed=7) for v, sk in RANK_PROBES]
    scale = _backward(model, probes, batch, alpha)
    single = [p.reward(scale) for p in probes]
    assert all(p.reduced_bytes == 0 for p in probes)  # nothing crosses ranks in one process
    spec = {
        "model": dataclasses.asdict(cfg.model),
        "vocab": corpus.vocab_size,
        "depths": cfg.env.reward_depths,
        "batch": batch,
        "alpha": alpha,
    }
    torch.save(spec, tmp_path / "spec.pt")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        __file__,
        "ranks",
        str(tmp_path / "spec.pt"),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["W"] == ranks[1]["W"]  # every rank: the same global W
    for _, w2, w1 in zip(RANK_PROBES, ranks[0]["W"], single):
        _close(np.array(w2), w1, rel=1e-5)
    _close(np.array(ranks[0]["W"][0]), np.array(ranks[0]["W_gram"]), rel=1e-5)  # O(P + k) path = today's W
    n_weights = sum(m.weight.numel() for m in layers)
    n_sketch = SKETCH[0] * SKETCH[1] * len(layers)
    expected = [4 * n_weights + 8 * K, 4 * K * n_weights, 4 * n_sketch + 8 * K, 4 * K * n_sketch]
    for r in ranks:
        assert r["bytes"] == r["expected_bytes"] == expected, (r["bytes"], r["expected_bytes"], expected)


if __name__ == "__main__" and sys.argv[1:2] == ["ranks"]:
    sys.exit(_rank_worker(sys.argv[2:]))
