"""Model factory: randomly initialised ``transformers`` causal LMs built from configs (no hub)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel
from transformers.utils import logging as hf_logging

from ..config import ModelConfig, check_model
from ..errors import ConfigError

# Per architecture: the FFN output projection observed by the probes (weights only).
DEFAULT_PROBE_MODULE = {"gpt_neox": "mlp.dense_4h_to_h", "llama": "mlp.down_proj"}


def build_model(cfg: ModelConfig, vocab_size: int, seed: int) -> PreTrainedModel:
    """A fresh model; the same seed gives the same weights."""
    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=max(cfg.seq_len, 128),
        bos_token_id=0,
        eos_token_id=0,
        use_cache=False,
    )
    check_model(cfg)  # also for a ModelConfig built in code, which load_config never validated
    if cfg.arch == "gpt_neox":
        config = GPTNeoXConfig(
            **common, rotary_pct=0.25, tie_word_embeddings=False, attention_dropout=0.0, hidden_dropout=0.0
        )
        model: PreTrainedModel = GPTNeoXForCausalLM(config)
    else:
        config = LlamaConfig(**common, num_key_value_heads=cfg.num_kv_heads or cfg.num_heads, tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
    return model.to(getattr(torch, cfg.dtype))


def save_for_generation(model: PreTrainedModel, tokenizer, path: Path, device: str = "cpu", progress: bool = True):
    """``save_pretrained`` of the model and its tokenizer, ready for ``generate``: the KV cache on (training runs
    without it) and the tokenizer padding on the left (``to_hf_tokenizer``), so a batched generation equals the
    unbatched ones. ``progress=False``: no "Writing model shards" bar.

    On CPU, DS_ACCELERATOR=cpu (if unset): ``save_pretrained`` imports DeepSpeed through accelerate where it is
    installed, and DeepSpeed, left to detect an accelerator, logs "Setting accelerator to CPU" on stdout.
    """
    if str(device).startswith("cpu"):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    bars = hf_logging.is_progress_bar_enabled()
    use_cache, model.config.use_cache = model.config.use_cache, True
    try:
        if not progress:
            hf_logging.disable_progress_bar()
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    finally:
        model.config.use_cache = use_cache
        if bars and not progress:
            hf_logging.enable_progress_bar()


def probe_layers(model: nn.Module, cfg: ModelConfig) -> list[tuple[str, nn.Linear]]:
    """The probed Linear module of every transformer block, in depth order."""
    suffix = cfg.probe_module or DEFAULT_PROBE_MODULE[cfg.arch]
    pattern = re.compile(rf"layers\.(\d+)\.{re.escape(suffix)}$")
    found = []
    for name, module in model.named_modules():
        match = pattern.search(name)
        if match and isinstance(module, nn.Linear):
            found.append((int(match.group(1)), name, module))
    if not found:
        raise ConfigError(
            f"No Linear module matching 'layers.N.{suffix}' in the {cfg.arch} model: set model.probe_module to the "
            "FFN output projection of your architecture (e.g. mlp.dense_4h_to_h, mlp.down_proj)."
        )
    return [(name, module) for _, name, module in sorted(found)]


def layers_at_depths(n_layers: int, depths: list[float]) -> list[int]:
    """Block indices at relative depths (1.0 = last block); duplicates merged, order kept.

    Depth d picks block ``round(d·n) − 1``: for 16 blocks, 0.75/0.875/1.0 → blocks 12, 14, 16
    (1-based), the paper's reward layers; the same depths pick comparable blocks in any model size.
    """
    picked = []
    for d in depths:
        i = min(n_layers - 1, max(0, round(d * n_layers) - 1))
        if i not in picked:
            picked.append(i)
    return picked


def evenly_spaced_layers(n_layers: int, count: int) -> list[int]:
    """``count`` block indices from first to last, evenly spaced (repeats allowed in shallow models).

    Repeating rather than shrinking keeps the observation the same size for a 4-layer proxy and a
    16-layer target, so a policy transfers between them.
    """
    if count == 1:
        return [n_layers - 1]
    return [round(j * (n_layers - 1) / (count - 1)) for j in range(count)]
