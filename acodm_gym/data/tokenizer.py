"""Tokenizers: a byte-level BPE trained locally (no hub), or any local ``tokenizer.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOS_TOKEN = "<|endoftext|>"
TRAIN_BYTES_PER_DOMAIN = 1_500_000  # enough text per domain for a small BPE; keeps training to seconds


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style) with ``<|endoftext|>`` as token 0, separating documents."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Tokenizer file {path} does not exist: give the path of a tokenizer.json.")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise ValueError(f"{path} is not a valid tokenizer.json ({exc}).") from None


def eos_id(tok: Tokenizer) -> int:
    """The document separator: ``<|endoftext|>`` if present, else the tokenizer's first special token."""
    for name in (EOS_TOKEN, "</s>", "<eos>", "[SEP]"):
        idx = tok.token_to_id(name)
        if idx is not None:
            return idx
    raise ValueError("The tokenizer has no end-of-text token (<|endoftext|>, </s>, <eos>): add one.")


def to_hf_tokenizer(tok: Tokenizer, max_length: int):
    """A ``PreTrainedTokenizerFast`` wrapping the same tokenizer, for saving next to HF checkpoints.

    The end-of-text token doubles as the pad token (the model never saw a dedicated one; padded
    positions are masked anyway), and ``model_max_length`` is the model's ``max_length`` positions,
    so HF pipelines and lm-eval can batch and truncate. Padding is on the left, so that a batched
    ``generate`` continues every prompt from its last token (lm-eval pads its batches itself).
    """
    from transformers import PreTrainedTokenizerFast

    eos = tok.id_to_token(eos_id(tok))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos,
        bos_token=eos,
        unk_token=eos,
        pad_token=eos,
        model_max_length=max_length,
        padding_side="left",
    )
