"""Which pieces a build keeps and which split each goes to, decided by keyed hashes of their text (never by
file order): the even sample under the byte cap, and train / validation / test by document, with the
fallbacks for a domain whose document split comes out unbalanced.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..config import DataConfig

SPLITS = ("train", "validation", "test")
HASH_BINS = 1 << 16  # resolution of the hash-chosen sample (bytes per bin are counted in the first pass)


def piece_hash(data: bytes, seed: int) -> tuple[int, float]:
    """(sampling bin, split draw in [0, 1)) of a piece: a function of its text and the seed only.

    :param data: the piece's UTF-8 bytes
    :param seed: ``data.seed``, the hash's key
    """
    h = hashlib.blake2b(data, digest_size=16, key=f"acodm-gym:{seed}".encode()).digest()
    return int.from_bytes(h[:2], "big"), int.from_bytes(h[8:], "big") / 2.0**64


def bin_limit(hist: np.ndarray, budget: int | None) -> int:
    """The BPE's sample is the pieces in bins below this: at most ``budget`` bytes (at least one bin).

    :param hist: a domain's bytes per hash bin
    :param budget: the sample's size in bytes; None: every bin
    """
    if budget is None or int(hist.sum()) <= budget:
        return HASH_BINS
    limit = int(np.searchsorted(np.cumsum(hist), budget, side="right"))
    return max(limit, int(np.flatnonzero(hist)[0]) + 1)


def kept_bins(hist: np.ndarray, budget: int | None) -> np.ndarray:
    """The byte cap's sample: in hash order, each bin that still fits in what is left of ``budget`` (a bin
    too large, such as a piece of one oversized document, is passed over, not the end of the sample).

    It keeps the bins below ``bin_limit`` and fills on from there; at least one bin.

    :param hist: a domain's bytes per hash bin
    :param budget: ``data.max_bytes_per_domain``; None: every bin
    """
    keep = np.ones(HASH_BINS, dtype=bool)
    if budget is None or int(hist.sum()) <= budget:
        return keep
    keep[:], left = False, budget
    for b in np.flatnonzero(hist):
        if hist[b] <= left:
            keep[b], left = True, left - int(hist[b])
    if not keep.any():
        keep[np.flatnonzero(hist)[0]] = True
    return keep


def split_of(u: float, cfg: DataConfig) -> str:
    """The split a piece's hash draw falls in: test, validation or train, by their fractions.

    :param u: the piece's split draw in [0, 1) (``piece_hash``)
    :param cfg: the data section (``test_fraction``, ``val_fraction``)
    """
    return "test" if u < cfg.test_fraction else "validation" if u < cfg.test_fraction + cfg.val_fraction else "train"


def balanced_splits(
    folder: Path, tokens: dict[str, int], dtype, cfg: DataConfig, eos: int, kind: str
) -> tuple[dict[str, int], str]:
    """A written domain's (tokens per split, how it was split): by document hash where that left the held-out
    splits near their shares, else rewritten by ``_split_small_domain``.

    :param folder: the domain's directory of split token files
    :param tokens: tokens per split as written
    :param dtype: the token files' numpy dtype
    :param cfg: the data section (split fractions, seed)
    :param eos: the end-of-text id that ends every document
    :param kind: the input's kind ("dir" or "jsonl"), which decides the fallback
    """
    if _split_by_document_ok(tokens, cfg):
        return tokens, "document"
    return _split_small_domain(folder, dtype, cfg, eos, kind)


def _split_by_document_ok(tokens: dict[str, int], cfg: DataConfig) -> bool:
    """Validation and test each hold between a quarter and four times their share of the tokens."""
    n = sum(tokens.values())
    shares = ((tokens["validation"], cfg.val_fraction), (tokens["test"], cfg.test_fraction))
    return all(k > 0 and frac / 4 * n <= k <= 4 * frac * n for k, frac in shares)


def _split_small_domain(folder: Path, dtype, cfg: DataConfig, eos: int, kind: str) -> tuple[dict[str, int], str]:
    """The fallback for a domain that the document hash split leaves unbalanced: (tokens per split, how).

    A directory's files are read in a seeded shuffle, so the end of its stream is a random sample of its
    documents: it is cut by position, as it always was (the default corpus' books and religious). A
    JSONL file comes in its own order, often sorted by source: its held-out splits take whole documents
    in hash order (``_split_by_hash_order``), by position only where too few documents allow no other.
    """
    stream = np.concatenate([np.fromfile(folder / f"{s}.bin", dtype=dtype) for s in SPLITS])
    parts = _split_by_hash_order(stream, cfg, eos) if kind == "jsonl" else None
    how = "position" if parts is None else "hash-order"
    if parts is None:
        n = len(stream)
        n_test, n_val = max(1, int(n * cfg.test_fraction)), max(1, int(n * cfg.val_fraction))
        parts = {
            "train": stream[: n - n_val - n_test],
            "validation": stream[n - n_val - n_test : n - n_test],
            "test": stream[n - n_test :],
        }
    for split, arr in parts.items():
        arr.tofile(folder / f"{split}.bin")
    return {k: int(len(v)) for k, v in parts.items()}, how


def _split_by_hash_order(stream: np.ndarray, cfg: DataConfig, eos: int) -> dict[str, np.ndarray] | None:
    """Held-out splits of whole documents, taken in the order of a hash of their tokens (keyed by ``data.seed``).

    Each split gets documents until it holds its share of the tokens; a document that would take it past
    four times its share is passed over, and identical documents go together. None where a split would
    hold less than a quarter of its share, or training less than half the tokens (too few documents).
    """
    docs = np.split(stream, np.flatnonzero(stream == eos)[:-1] + 1)  # each document with its end-of-text
    key = f"acodm-gym:{cfg.seed}".encode()
    groups: dict[bytes, list[int]] = {}
    for i, doc in enumerate(docs):
        groups.setdefault(hashlib.blake2b(doc.tobytes(), key=key).digest(), []).append(i)
    order = [groups[h] for h in sorted(groups)]
    n, chosen = len(stream), {}
    for split, frac in (("test", cfg.test_fraction), ("validation", cfg.val_fraction)):
        size = 0
        for group in order:
            m = len(docs[group[0]]) * len(group)
            if size >= frac * n:
                break
            if group[0] not in chosen and size + m <= 4 * frac * n:
                chosen.update(dict.fromkeys(group, split))
                size += m
        if size < frac / 4 * n:
            return None
    if sum(len(docs[i]) for i in chosen) > n / 2:
        return None
    held_out = {s: [docs[i] for group in order for i in group if chosen.get(i) == s] for s in ("validation", "test")}
    parts = {"train": [d for i, d in enumerate(docs) if i not in chosen], **held_out}
    return {s: np.concatenate(p) if p else stream[:0] for s, p in parts.items()}
