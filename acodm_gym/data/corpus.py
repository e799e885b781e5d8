"""Corpus building: text per domain → packed per-domain token files (numpy memmap), opened by ``open_corpus``.

Text is tokenized once, in streaming passes over the input (no file or domain is held in
memory): the first counts each domain's bytes per hash bucket of its documents, the last keeps an
even, hash-chosen sample of at most ``data.max_bytes_per_domain`` bytes and assigns every document
to train / validation / test by a hash of its text and ``data.seed`` (so neither the cap nor the
splits depend on file order); in between, a trained BPE reads a sample chosen the same way. A
recipe (``data.recipe``, data/recipes.py) resamples the domains and chooses the held-out documents itself.
Documents longer than ``MAX_PIECE_CHARS`` are first cut into pieces at line (else space)
boundaries; each piece is a document. Each split of a domain is one token stream, documents
separated by end-of-text, written as flat ``uint16`` (vocab ≤ 65535) or ``uint32`` files.
A ``manifest.json`` records, per domain, where the text came from, its license, bytes, tokens,
the files skipped and why (other suffixes, binary), undecodable bytes and a checksum per token file,
plus the tokenizer's digest and a fingerprint of the inputs: a changed input rebuilds the corpus, a
changed token file or tokenizer is an error.

The pieces: readers.py reads source files, inputs.py resolves what ``data.corpus`` names, splits.py
decides by hash what is kept and where it goes, token_corpus.py opens a built corpus; this module
runs the passes and writes the build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import DataConfig
from ..errors import CorpusError
from . import tokenizer as toklib
from .inputs import (
    CorpusInput,
    check_selected,
    fetch_default_input,
    input_fingerprint,
    recipe_input,
    resolve_input,
    what_changed,
)
from .readers import MAX_PIECE_CHARS, DomainReport
from .splits import (
    HASH_BINS,
    SPLITS,
    balanced_splits,
    bin_limit,
    kept_bins,
    piece_hash,
    split_of,
)
from .token_corpus import MANIFEST, TokenCorpus, checksum, file_digest, read_manifest

FORMAT_VERSION = 2


def default_cache_dir(cfg: DataConfig) -> Path:
    """``data.cache_dir``, else ``$ACODM_GYM_CACHE``, else the user's cache directory for acodm-gym.

    :param cfg: the data section
    """
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    if os.environ.get("ACODM_GYM_CACHE"):
        return Path(os.environ["ACODM_GYM_CACHE"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("acodm-gym"))


def corpus_dir(cfg: DataConfig) -> Path:
    """Where the built corpus for this data config lives in the cache (its inputs are checked by fingerprint)."""
    key = json.dumps(
        {
            "corpus": cfg.corpus if cfg.corpus == "default" else str(Path(cfg.corpus).expanduser().resolve()),
            "domains": cfg.domains,
            "tokenizer": cfg.tokenizer
            and [str(Path(cfg.tokenizer).expanduser().resolve()), file_digest(cfg.tokenizer)],
            "vocab": cfg.vocab_size,
            "max_bytes": cfg.max_bytes_per_domain,
            "split": [cfg.val_fraction, cfg.test_fraction],
            "seed": cfg.seed,
            "fields": [cfg.domain_fields, cfg.text_field],
            "encoding": cfg.encoding,
            "format": FORMAT_VERSION,
            **({"recipe": dataclasses.asdict(cfg.recipe)} if cfg.recipe.shares else {}),
        },
        sort_keys=True,
    )
    name = "default" if cfg.corpus == "default" else Path(cfg.corpus).stem.replace(".jsonl", "")
    name += "-recipe" if cfg.recipe.shares else ""
    return default_cache_dir(cfg) / "corpora" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


# ---------------------------------------------------------------------------------------------
# Building


@dataclass
class _DomainStats:
    input_bytes: int = 0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(HASH_BINS, dtype=np.int64))
    keep: np.ndarray = field(default_factory=lambda: np.ones(HASH_BINS, dtype=bool))  # the bins kept (byte cap)
    bytes: int = 0
    documents: int = 0


def _survey(
    source: CorpusInput, cfg: DataConfig, reports: dict[str, DomainReport], log: Callable[[str], None]
) -> dict[str, _DomainStats]:
    """First pass: bytes per domain and per hash bin, and what reading skipped (``reports``, logged)."""
    stats: dict[str, _DomainStats] = {}
    for d, piece, _ in source.pieces(cfg, reports):
        data = piece.encode("utf-8")
        s = stats.setdefault(d, _DomainStats())
        s.input_bytes += len(data)
        s.hist[piece_hash(data, cfg.seed)[0]] += len(data)
    for d, r in sorted(reports.items()):
        for line in r.log_lines(d, cfg.encoding):
            log(line)
    return stats


def _train_tokenizer(source: CorpusInput, cfg: DataConfig, stats: dict[str, _DomainStats], log: Callable[[str], None]):
    """A BPE trained on the same hash-chosen sample of every domain (at most TRAIN_BYTES_PER_DOMAIN each).

    A recipe's held-out documents stay out of it, and its held-out top-up does not count towards the
    budget either: topping up the evaluation text leaves the tokenizer as it was.
    """
    log(f"training a byte-level BPE tokenizer (vocab {cfg.vocab_size}) on {len(stats)} domains")
    hist = {d: s.hist for d, s in stats.items()}
    if source.splits is not None:  # a recipe (in memory): counted again without its held-out top-up
        hist = {d: np.zeros(HASH_BINS, dtype=np.int64) for d in stats}
        for d, piece, _ in source.pieces(cfg, top_up=False):
            data = piece.encode("utf-8")
            hist[d][piece_hash(data, cfg.seed)[0]] += len(data)
    limit = {d: bin_limit(hist[d] * s.keep, toklib.TRAIN_BYTES_PER_DOMAIN) for d, s in stats.items()}
    sample = (
        piece
        for d, piece, split in source.pieces(cfg, top_up=False)
        if split in (None, "train")
        and (b := piece_hash(piece.encode("utf-8"), cfg.seed)[0]) < limit[d]
        and stats[d].keep[b]
    )
    return toklib.train_bpe(sample, cfg.vocab_size)


def _write_splits(
    source: CorpusInput, cfg: DataConfig, stats: dict[str, _DomainStats], tok, eos: int, dtype, tmp: Path
) -> None:
    """Last pass: tokenize the kept pieces, each appended to its domain's split (hash-chosen, or the recipe's)."""
    files = {}
    for d in stats:
        (tmp / d).mkdir()
        files.update({(d, split): open(tmp / d / f"{split}.bin", "wb") for split in SPLITS})
    pending: list[tuple[str, str, str]] = []
    size = 0

    def flush():
        for (d, split, _), enc in zip(pending, tok.encode_batch([p for *_, p in pending], add_special_tokens=False)):
            np.asarray(enc.ids + [eos], dtype=dtype).tofile(files[d, split])
        pending.clear()

    try:
        for d, piece, split in source.pieces(cfg):
            data = piece.encode("utf-8")
            b, u = piece_hash(data, cfg.seed)
            s = stats[d]
            if not s.keep[b]:
                continue
            s.bytes += len(data)
            s.documents += 1
            pending.append((d, split or split_of(u, cfg), piece))
            size += len(piece)
            if len(pending) >= 256 or size >= 4 * MAX_PIECE_CHARS:
                flush()
                size = 0
        flush()
    finally:
        for fh in files.values():
            fh.close()


def _install(tmp: Path, out: Path) -> None:
    """Move a finished build into place, replacing an outdated one (open memmaps of it stay valid)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def _up_to_date(out: Path, source: CorpusInput, requested: list[str], log: Callable[[str], None]) -> bool:
    """Whether the build in ``out`` was made from these very inputs; an outdated one is logged with what changed."""
    if not (out / MANIFEST).exists():
        return False
    built = read_manifest(out / MANIFEST).get("inputs")
    now = input_fingerprint(source, requested)
    if built and built.get("fingerprint") == now["fingerprint"]:
        return True
    log(f"rebuilding {out}: {what_changed(built, now)}")
    return False


def _given_tokenizer(cfg: DataConfig):
    """(tokenizer, end-of-text id) of ``data.tokenizer``, checked before any pass; (None, None) if none is given."""
    if not cfg.tokenizer:
        return None, None
    try:
        tok = toklib.load_tokenizer(Path(cfg.tokenizer).expanduser())
        return tok, toklib.eos_id(tok)
    except (FileNotFoundError, ValueError) as exc:
        raise CorpusError(f"data.tokenizer={cfg.tokenizer}: {exc}") from None


def _check_domain(d: str, source: CorpusInput, cfg: DataConfig, stats: dict, reports: dict[str, DomainReport]) -> None:
    """A selected domain names a directory and has text; else one line saying what was found instead."""
    if not d or d in (".", "..") or "/" in d or "\\" in d:
        raise CorpusError(f"Domain name {d!r} cannot name a directory: rename that domain in {cfg.corpus}.")
    if d not in stats:
        report = reports.get(d, DomainReport())
        skipped, other = report.binary_files, list(report.skipped_files)
        raise CorpusError(
            f"Domain '{d}' has no text ({source.meta.get(d, {}).get('source', cfg.corpus)}"
            + (f"; {len(skipped)} binary file(s) skipped: {', '.join(skipped[:5])}" if skipped else "")
            + (f"; {len(other)} file(s) not read: {', '.join(other[:5])}" if other else "")
            + "): add text files (.txt, .md, .rst, .text or no suffix) or remove it."
        )


def _surveyed_domains(
    source: CorpusInput, cfg: DataConfig, reports: dict[str, DomainReport], log: Callable[[str], None]
) -> dict[str, _DomainStats]:
    """The first pass (``_survey``), its domains checked, each with the hash bins its byte cap keeps.

    A JSONL file's domains are known only now: they are set on ``source`` here.
    """
    stats = _survey(source, cfg, reports, log)
    if source.kind == "jsonl":
        check_selected(cfg, sorted(source.seen), source.path)
        source.domains = sorted(set(stats) | set(cfg.domains or ()))
        source.meta = {d: {"source": f"jsonl:{source.path}"} for d in source.domains}
    if not source.domains:
        raise CorpusError(f"Corpus '{cfg.corpus}' has no domains: add one sub-directory (or domain value) per domain.")
    for d in source.domains:
        _check_domain(d, source, cfg, stats, reports)
    stats = {d: stats[d] for d in source.domains}
    for s in stats.values():
        s.keep = kept_bins(s.hist, None if source.splits is not None else cfg.max_bytes_per_domain)
    return stats


def _domain_entry(
    folder: Path,
    s: _DomainStats,
    source: CorpusInput,
    cfg: DataConfig,
    eos: int,
    dtype,
    report: DomainReport,
    log: Callable[[str], None],
) -> dict:
    """A written domain's manifest entry (its splits rebalanced first if the hash split left them uneven), logged."""
    d = folder.name
    tokens = {split: (folder / f"{split}.bin").stat().st_size // np.dtype(dtype).itemsize for split in SPLITS}
    split = "recipe"
    if source.splits is None:
        tokens, split = balanced_splits(folder, tokens, dtype, cfg, eos, source.kind)
    n = sum(tokens.values())
    sampled = f", an even sample of {s.input_bytes / 1e6:.2f} MB" if s.bytes < s.input_bytes else ""
    by = {
        "position": ", split by position (too few documents to split by document)",
        "hash-order": ", held-out documents taken in hash order (the hash split left a split unbalanced)",
    }.get(split, "")
    log(f"  {d:<12} {s.bytes / 1e6:6.2f} MB  {s.documents:6d} docs  {n / 1e6:6.2f} M tokens{sampled}{by}")
    return {
        "name": d,
        **source.meta.get(d, {}),
        "bytes": s.bytes,
        "input_bytes": s.input_bytes,
        "documents": s.documents,
        "tokens": tokens,
        "split": split,
        "checksums": {k: checksum(folder / f"{k}.bin") for k in SPLITS},
        **report.as_manifest(),
    }


def _manifest(
    cfg: DataConfig, tmp: Path, tok, eos: int, dtype, inputs: dict, domains: list[dict], started: float
) -> dict:
    """The build's ``manifest.json``: format, tokenizer and its digest, input fingerprint, domains, timing."""
    return {
        "format": FORMAT_VERSION,
        "corpus": cfg.corpus,
        "vocab_size": tok.get_vocab_size(),
        "eos_id": eos,
        "dtype": np.dtype(dtype).name,
        "tokenizer": "tokenizer.json",
        "tokenizer_sha256": file_digest(tmp / "tokenizer.json"),
        "encoding": cfg.encoding,
        "inputs": inputs,
        "domains": domains,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.time() - started, 1),
    }


def build_corpus(cfg: DataConfig, log: Callable[[str], None] = print) -> Path:
    """Build (once) the token corpus for ``cfg`` and return its directory.

    A build is reused while the fingerprint of its inputs (file sizes and mtimes) is unchanged;
    otherwise it is rebuilt, and the log says what changed.

    :param cfg: the data section: which corpus, domains, tokenizer, byte cap, splits and seed
    :param log: where progress and what reading skipped are reported, one line per call
    """
    out = corpus_dir(cfg)
    source = resolve_input(cfg, default_cache_dir(cfg))
    requested = source.domains
    if _up_to_date(out, source, requested, log):
        return out
    started = time.time()
    tok, eos = _given_tokenizer(cfg)
    if cfg.corpus == "default":
        source = fetch_default_input(cfg, source, log)
    inputs = input_fingerprint(source, requested)
    reports: dict[str, DomainReport] = {}
    if cfg.recipe.shares:
        source = recipe_input(cfg, source, reports)
    stats = _surveyed_domains(source, cfg, reports, log)
    if tok is None:
        tok = _train_tokenizer(source, cfg, stats, log)
        eos = toklib.eos_id(tok)
    dtype = np.uint16 if tok.get_vocab_size() <= np.iinfo(np.uint16).max + 1 else np.uint32

    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tok.save(str(tmp / "tokenizer.json"))
        _write_splits(source, cfg, stats, tok, eos, dtype, tmp)
        domains = [
            _domain_entry(tmp / d, s, source, cfg, eos, dtype, reports.get(d, DomainReport()), log)
            for d, s in stats.items()
        ]
        manifest = _manifest(cfg, tmp, tok, eos, dtype, inputs, domains, started)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _install(tmp, out)
    log(f"corpus ready in {out} ({manifest['build_seconds']} s)")
    return out


def open_corpus(cfg: DataConfig, log: Callable[[str], None] = print) -> TokenCorpus:
    """The token corpus for a data config, built on first use (rebuilt when its inputs changed)."""
    return TokenCorpus(build_corpus(cfg, log))
