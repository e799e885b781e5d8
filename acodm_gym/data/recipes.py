"""Corpus recipes: a base corpus resampled to chosen training shares, plus planted low-quality domains.

The benchmark tasks (configs/tasks/) are built this way so that the mixture matters: real pretraining
corpora are skewed and hold junk, the default corpus is neither. A recipe is data
(``data.recipe``): per-domain shares of the training text, held-out sizes, and planted domains with
their generator and seed. Everything is drawn from seeded generators over the base text, so the same
recipe gives the same documents, byte for byte.

How a domain is cut: its documents are split into pieces of about ``chunk_bytes`` (at line breaks),
the pieces are shuffled with the recipe's seed, the first ``heldout_bytes`` go to validation, the next
to test, and the training share is taken from the rest. Held-out sets therefore have the same size for
a rare domain as for a common one: skew is in what the model trains on, not in how well it is measured.
With ``heldout_max_bytes``, each held-out split is then topped up to that size from the pieces the
training share left unused (half of them each, at most): evaluation gains the text the recipe would
discard, and the training text, drawn before, stays the same piece for piece. A rare training domain
has the most such text, so a target domain is measured on far more tokens than it trains on.
Planted domains keep ``heldout_bytes`` (the metric excludes them).

Planted domains are built from the clean domains' training pieces only (never from held-out text), by a
generator registered in ``registry.PLANTED_GENERATORS`` (``generate(clean_texts, n_bytes, seed, **options)``):

- ``word_salad``: the clean training text's words, shuffled: the unigram distribution of the clean
  domains, no bigram structure. Unlearnable beyond unigram statistics.
- ``boilerplate``: a few clean pieces (``templates``) repeated with small edits (a share ``edit_rate`` of
  their words swapped for random words, and a varying header), the way crawled page templates are.
  Learnable, and useless once learned.
"""

from __future__ import annotations

import random
import re
from typing import Mapping

from ..config import RecipeConfig, check_recipe
from ..errors import RecipeError
from ..registry import PLANTED_GENERATORS


def chunk(doc: str, size: int) -> list[str]:
    """Cut a document into pieces of about ``size`` bytes at line breaks (a longer line is cut at spaces)."""
    pieces, current, used = [], [], 0
    for line in doc.splitlines(keepends=True):
        while len(line) > size:  # a very long line: cut at the last space before the limit
            cut = line.rfind(" ", 0, size)
            cut = cut if cut > 0 else size
            if current:
                pieces.append("".join(current))
                current, used = [], 0
            pieces.append(line[:cut])
            line = line[cut:].lstrip(" ")
        if used + len(line) > size and current:
            pieces.append("".join(current))
            current, used = [], 0
        current.append(line)
        used += len(line)
    if current:
        pieces.append("".join(current))
    return [p for p in pieces if p.strip()]


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _take(pieces: list[str], budget: int) -> tuple[list[str], list[str]]:
    """The first pieces up to ``budget`` bytes (at least one), and the rest."""
    used = 0
    for i, piece in enumerate(pieces):
        if used >= budget and i > 0:
            return pieces[:i], pieces[i:]
        used += _nbytes(piece)
    return pieces, []


def word_salad(
    source: list[str], n_bytes: int, seed: int, words_per_doc: int = 300, words_per_line: int = 12
) -> list[str]:
    """Documents of the source's words in a seeded random order (the source's unigram distribution)."""
    words = [w for text in source for w in text.split()]
    if not words:
        raise RecipeError(
            "word_salad needs clean text to draw its words from: give the recipe at least one clean domain."
        )
    rng = random.Random(f"word_salad:{seed}")
    docs, used, order, pos = [], 0, [], 0
    while used < n_bytes:
        if pos + words_per_doc > len(order):  # a fresh permutation: every word as often as in the source
            order, pos = order[pos:] + rng.sample(words, len(words)), 0
        doc_words, pos = order[pos : pos + words_per_doc], pos + words_per_doc
        lines = [" ".join(doc_words[i : i + words_per_line]) for i in range(0, len(doc_words), words_per_line)]
        doc = "\n".join(lines) + "\n"
        docs.append(doc)
        used += _nbytes(doc)
    return docs


_WORD = re.compile(r"[A-Za-z]{3,}")


def boilerplate(source: list[str], n_bytes: int, seed: int, templates: int = 6, edit_rate: float = 0.03) -> list[str]:
    """``templates`` source pieces, repeated with small seeded edits until ``n_bytes``."""
    candidates = [p for p in source if len(p.split()) >= 50]
    if not candidates:
        raise RecipeError(
            "boilerplate needs clean pieces of at least 50 words: give the recipe a clean domain with text."
        )
    rng = random.Random(f"boilerplate:{seed}")
    chosen = rng.sample(candidates, min(templates, len(candidates)))
    vocab = sorted({w for p in chosen for w in _WORD.findall(p)}) or ["page"]
    docs, used = [], 0
    while used < n_bytes:
        template = rng.choice(chosen)
        words = template.split(" ")
        for i in range(len(words)):
            if rng.random() < edit_rate:
                words[i] = rng.choice(vocab)
        header = f"Posted {2000 + rng.randrange(25)}-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d} | item {rng.randrange(100000)}\n"
        doc = header + " ".join(words)
        docs.append(doc)
        used += _nbytes(doc)
    return docs


TOP_UP = "_top_up"  # "validation_top_up", "test_top_up": the pieces a split is topped up with (heldout_max_bytes)


def apply_recipe(recipe: RecipeConfig, base: Mapping[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    """Resample ``base`` (domain → documents) by ``recipe``; returns domain → split → documents, where a
    held-out split's top-up, if any, is under ``<split>_top_up`` (it goes after the split's own pieces).

    Domains of ``base`` without a share are left out; a share naming neither a base domain nor a
    planted one is an error (a typo would otherwise drop a domain silently).
    """
    check_recipe(recipe)
    unknown = [d for d in recipe.shares if d not in base and d not in recipe.planted]
    if unknown:
        raise RecipeError(
            f"data.recipe.shares names {unknown}, neither a domain of the base corpus ({', '.join(base)}) "
            "nor a planted domain (data.recipe.planted)."
        )
    clash = [d for d in recipe.planted if d in base]
    if clash:
        raise RecipeError(f"Planted domains {clash} have the names of base corpus domains: rename them.")
    total = sum(recipe.shares.values())
    budget = {d: int(recipe.train_bytes * v / total) for d, v in recipe.shares.items()}
    out: dict[str, dict[str, list[str]]] = {}
    for domain in (d for d in base if d in recipe.shares):  # the base corpus' order, then the planted domains
        pieces = [p for doc in base[domain] for p in chunk(doc, recipe.chunk_bytes)]
        random.Random(f"{recipe.seed}:{domain}").shuffle(pieces)
        validation, rest = _take(pieces, recipe.heldout_bytes)
        test, rest = _take(rest, recipe.heldout_bytes)
        if not rest:
            raise RecipeError(
                f"Domain '{domain}' has too little text for two held-out sets of {recipe.heldout_bytes} bytes and a "
                "training share: lower data.recipe.heldout_bytes or drop the domain."
            )
        train, unused = _take(rest, budget[domain])
        out[domain] = {"train": train, "validation": validation, "test": test}
        top_up = min(recipe.heldout_max_bytes - recipe.heldout_bytes, sum(map(_nbytes, unused)) // 2)
        if recipe.heldout_max_bytes and top_up > 0:
            out[domain]["validation" + TOP_UP], unused = _take(unused, top_up)
            out[domain]["test" + TOP_UP], _ = _take(unused, top_up)
    clean_train = [p for d in out for p in out[d]["train"]]
    for name, spec in recipe.planted.items():
        options = {k: v for k, v in spec.items() if k not in ("generator", "seed")}
        seed = int(spec.get("seed", recipe.seed))
        make = PLANTED_GENERATORS.get(spec["generator"])
        try:
            docs = make(clean_train, budget[name] + 2 * recipe.heldout_bytes, seed, **options)
        except TypeError as exc:
            raise RecipeError(f"data.recipe.planted.{name}: {exc}") from None
        validation, rest = _take(docs, recipe.heldout_bytes)
        test, train = _take(rest, recipe.heldout_bytes)
        out[name] = {"train": train, "validation": validation, "test": test}
    return out
