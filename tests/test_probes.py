"""Probes: the one-backward alignment reward against k autograd calls, layer choice, weight norms."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from acodm_gym.config import load_config
from acodm_gym.data.sampler import DomainSampler
from acodm_gym.lm.models import build_model, evenly_spaced_layers, layers_at_depths, probe_layers
from acodm_gym.lm.probes import AlignmentProbe, WeightNormProbe, alignment_reward
from acodm_gym.lm.step import TorchBackend, domain_coefficients, sequence_losses, train_step

from conftest import small_config

K = 4


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
    _close(out.gram, gram)
    w = alignment_reward(out.gram, "paper")
    _close(w, gram.sum(axis=1))
    # the per-domain losses reported are those of the pre-update model
    with torch.no_grad():
        seq = sequence_losses(reference(input_ids=batch.input_ids).logits, batch.input_ids)
    expected = [seq[batch.domain_ids == i].mean().item() for i in range(K)]
    assert np.allclose(out.domain_losses, expected, rtol=1e-5)


def test_alignment_with_an_absent_domain(corpus_text_dir, cache_dir, corpus):
    cfg, backend, probe, norms, reference, ref_weights, sampler = _setup(corpus_text_dir, cache_dir, corpus, floor=False)
    alpha = np.array([0.5, 0.0, 0.5, 0.0])
    batch = sampler.sample(alpha)
    assert batch.counts[1] == 0 and batch.counts[3] == 0
    out = train_step(backend, batch, alpha, "alpha", None, probe, norms)
    gram = _naive_gram(reference, ref_weights, batch)
    _close(out.gram, gram)
    assert np.all(out.gram[[1, 3]] == 0) and np.all(out.gram[:, [1, 3]] == 0)
    assert np.isnan(out.domain_losses[[1, 3]]).all() and np.isfinite(out.domain_losses[[0, 2]]).all()


def test_alignment_on_llama(corpus_text_dir, cache_dir, corpus):
    cfg, backend, probe, norms, reference, ref_weights, sampler = _setup(
        corpus_text_dir, cache_dir, corpus, arch="llama", micro_batch_size=7
    )
    alpha = np.array([0.1, 0.2, 0.3, 0.4])
    batch = sampler.sample(alpha)
    out = train_step(backend, batch, alpha, "alpha", 7, probe, norms)
    _close(out.gram, _naive_gram(reference, ref_weights, batch))


def test_update_is_the_alpha_weighted_objective(corpus_text_dir, cache_dir, corpus):
    """θ ← θ − η Σ α_i ∇ℓ_i: the gradient the update used equals the autograd gradient of Σ α_i ℓ_i."""
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
    for step in range(3):
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
    for step in range(4):
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
