"""Corpus building and reading: text per domain → packed per-domain token files (numpy memmap).

Text is tokenized once. Each domain's documents are concatenated (separated by end-of-text) into
one token stream, split by position into train / validation / test (a recipe, data/recipes.py, chooses
the held-out documents itself), and written as flat
``uint16`` (vocab ≤ 65535) or ``uint32`` files. A ``manifest.json`` records, per domain, where the
text came from, its license, bytes and tokens, so a run can say exactly what it trained on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..config import DataConfig
from . import tokenizer as toklib
from .recipes import RecipeError, apply_recipe

SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class CorpusError(ValueError):
    """A corpus that cannot be built or read, with a message that says what to fix."""


def default_cache_dir(cfg: DataConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    if os.environ.get("ACODM_GYM_CACHE"):
        return Path(os.environ["ACODM_GYM_CACHE"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("acodm-gym"))


# ---------------------------------------------------------------------------------------------
# Readers: each yields (domain, document text)


def _dig(record: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(record, dict) or part not in record:
            return None
        record = record[part]
    return record


def iter_jsonl(path: Path, domain_fields: list[str], text_field: str) -> Iterator[tuple[str, str]]:
    """Records of a JSONL or JSONL.zst file (The Pile, SlimPajama, or any ``{"text", domain}`` lines)."""
    if path.suffix == ".zst":
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"))
        lines: Iterable[str] = io.TextIOWrapper(raw, encoding="utf-8")
    else:
        lines = open(path, encoding="utf-8")
    with lines as fh:  # type: ignore[union-attr]
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{lineno} is not valid JSON ({exc.msg}): fix or drop that line.") from None
            domain = next((d for d in (_dig(record, f) for f in domain_fields) if d is not None), None)
            if domain is None:
                raise CorpusError(
                    f"{path}:{lineno} has none of the domain fields {domain_fields}: set data.domain_fields "
                    "to the dotted path of the domain name in your records."
                )
            text = record.get(text_field)
            if not isinstance(text, str):
                raise CorpusError(f"{path}:{lineno} has no string field '{text_field}': set data.text_field.")
            yield str(domain), text


def text_dir_domains(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def iter_text_dir(root: Path, domain: str, seed: int) -> Iterator[str]:
    """A domain directory's text files (any depth), in a seeded shuffled order so splits mix sources."""
    files = sorted(p for p in (root / domain).rglob("*") if p.is_file() and p.suffix in (".txt", ".md", ".text", ""))
    files = [p for p in files if p.name != "SOURCE.json"]
    random.Random(f"{seed}:{domain}").shuffle(files)
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            yield text


# ---------------------------------------------------------------------------------------------
# Building


@dataclass
class _DomainSource:
    name: str
    documents: Callable[[], Iterator[str]]
    meta: dict
    splits: dict[str, list[str]] | None = None  # a recipe's documents per split (data/recipes.py); None: split by position


def _capped(docs: Iterable[str], max_bytes: int | None) -> Iterator[str]:
    used = 0
    for doc in docs:
        if max_bytes is not None and used >= max_bytes:
            return
        yield doc
        used += len(doc.encode("utf-8"))


def _domain_sources(cfg: DataConfig, cache: Path, log: Callable[[str], None]) -> list[_DomainSource]:
    sources = _base_sources(cfg, cache, log)
    if not cfg.recipe.shares:
        return sources
    base = {s.name: list(s.documents()) for s in sources}
    meta = {s.name: s.meta for s in sources}
    try:
        built = apply_recipe(cfg.recipe, base)
    except RecipeError as exc:
        raise CorpusError(str(exc)) from None
    out = []
    for name, splits in built.items():
        planted = cfg.recipe.planted.get(name)
        info = {**meta[name], "recipe_share": cfg.recipe.shares[name]} if planted is None else {
            "source": f"planted:{planted['generator']}", "license": "derived from the clean domains", "planted": dict(planted)}
        out.append(_DomainSource(name, (lambda d=splits: iter(d["train"])), info, splits))
    return out


def _base_sources(cfg: DataConfig, cache: Path, log: Callable[[str], None]) -> list[_DomainSource]:
    spec = cfg.corpus
    if spec == "default":
        from .sources import fetch_default_corpus

        raw = cache / "raw"
        results = fetch_default_corpus(raw, domains=cfg.domains, max_bytes_per_domain=cfg.max_bytes_per_domain, log=log)
        failed = [r for r in results if not r.ok]
        for r in failed:
            log(f"domain '{r.domain}' skipped: {r.error}")
        ok = [r for r in results if r.ok]
        if len(ok) < 2:
            raise CorpusError("Fewer than two default domains could be fetched; see the messages above.")
        return [
            _DomainSource(
                r.domain,
                (lambda d=r.domain: iter_text_dir(raw, d, cfg.seed)),
                {"source": r.source, "version": r.version, "license": r.license},
            )
            for r in ok
        ]
    path = Path(spec).expanduser()
    if not path.exists():
        raise CorpusError(
            f"Corpus '{spec}' does not exist: give data.corpus=default, a directory with one sub-directory "
            "of text files per domain, or a .jsonl / .jsonl.zst file."
        )
    if path.is_dir():
        names = text_dir_domains(path)
        _check_selected(cfg, names, path)
        if cfg.domains:
            names = [n for n in names if n in cfg.domains]
        return [
            _DomainSource(n, (lambda d=n: iter_text_dir(path, d, cfg.seed)), {"source": f"dir:{path / n}"})
            for n in names
        ]
    # JSONL: group documents by domain in one pass (kept in memory up to the per-domain cap).
    grouped: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    seen: set[str] = set()
    for domain, text in iter_jsonl(path, cfg.domain_fields, cfg.text_field):
        seen.add(domain)
        if cfg.domains and domain not in cfg.domains:
            continue
        if cfg.max_bytes_per_domain and sizes.get(domain, 0) >= cfg.max_bytes_per_domain:
            continue
        grouped.setdefault(domain, []).append(text)
        sizes[domain] = sizes.get(domain, 0) + len(text.encode("utf-8"))
    _check_selected(cfg, sorted(seen), path)
    return [
        _DomainSource(d, (lambda docs=docs: iter(docs)), {"source": f"jsonl:{path}"})
        for d, docs in sorted(grouped.items())
    ]


def _check_selected(cfg: DataConfig, available: list[str], path: Path) -> None:
    """``data.domains`` naming a domain the corpus lacks is a typo, not a smaller corpus."""
    missing = [d for d in cfg.domains or [] if d not in available]
    if missing:
        raise CorpusError(
            f"data.domains names {missing}, not in the corpus {path}: choose from {', '.join(available) or '(none)'}."
        )


def _file_digest(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()[:16]
    except OSError:
        return None  # reported when the tokenizer is loaded


def corpus_dir(cfg: DataConfig) -> Path:
    """Where the built corpus for this data config lives in the cache."""
    key = json.dumps(
        {
            "corpus": cfg.corpus if cfg.corpus == "default" else str(Path(cfg.corpus).expanduser().resolve()),
            "domains": cfg.domains,
            "tokenizer": cfg.tokenizer and [str(Path(cfg.tokenizer).expanduser().resolve()), _file_digest(cfg.tokenizer)],
            "vocab": cfg.vocab_size,
            "max_bytes": cfg.max_bytes_per_domain,
            "split": [cfg.val_fraction, cfg.test_fraction],
            "seed": cfg.seed,
            "fields": [cfg.domain_fields, cfg.text_field],
            "format": FORMAT_VERSION,
            **({"recipe": dataclasses.asdict(cfg.recipe)} if cfg.recipe.shares else {}),
        },
        sort_keys=True,
    )
    name = "default" if cfg.corpus == "default" else Path(cfg.corpus).stem.replace(".jsonl", "")
    name += "-recipe" if cfg.recipe.shares else ""
    return default_cache_dir(cfg) / "corpora" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def build_corpus(cfg: DataConfig, log: Callable[[str], None] = print) -> Path:
    """Build (once) the token corpus for ``cfg`` and return its directory; reuse it if already built."""
    out = corpus_dir(cfg)
    if (out / MANIFEST).exists():
        return out
    cache = default_cache_dir(cfg)
    started = time.time()
    sources = _domain_sources(cfg, cache, log)
    if not sources:
        raise CorpusError(f"Corpus '{cfg.corpus}' has no domains: add one sub-directory (or domain value) per domain.")
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    if cfg.tokenizer:
        try:
            tok = toklib.load_tokenizer(Path(cfg.tokenizer).expanduser())
        except (FileNotFoundError, ValueError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CorpusError(f"data.tokenizer: {exc}") from None
    else:
        log(f"training a byte-level BPE tokenizer (vocab {cfg.vocab_size}) on {len(sources)} domains")
        sample = (
            piece
            for s in sources
            for piece in toklib.sample_for_training(_capped(s.documents(), cfg.max_bytes_per_domain))
        )
        tok = toklib.train_bpe(sample, cfg.vocab_size)
    tok.save(str(tmp / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    try:
        eos = toklib.eos_id(tok)
    except ValueError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorpusError(f"data.tokenizer={cfg.tokenizer}: {exc}") from None
    dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max + 1 else np.uint32

    domains = []
    for s in sources:
        if not s.name or s.name in (".", "..") or "/" in s.name or "\\" in s.name:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CorpusError(f"Domain name {s.name!r} cannot name a directory: rename that domain in {cfg.corpus}.")
        def tokenize(docs: list[str]) -> np.ndarray:
            chunks = [np.zeros(0, dtype=dtype)]
            for start in range(0, len(docs), 256):
                for enc in tok.encode_batch(docs[start : start + 256], add_special_tokens=False):
                    chunks.append(np.asarray(enc.ids + [eos], dtype=dtype))
            return np.concatenate(chunks)

        docs = list(_capped(s.documents(), cfg.max_bytes_per_domain)) if s.splits is None else s.splits["train"]
        n_bytes, n_docs = sum(len(d.encode("utf-8")) for d in docs), len(docs)
        if n_docs == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CorpusError(
                f"Domain '{s.name}' has no text ({s.meta.get('source', cfg.corpus)}): add text files "
                "(.txt, .md, .text or no suffix) or remove it."
            )
        if s.splits is not None:  # a recipe chose the held-out documents
            parts = {split: tokenize(s.splits[split]) for split in SPLITS}
            n = sum(len(v) for v in parts.values())
        else:
            stream = tokenize(docs)
            n = len(stream)
            n_test, n_val = max(1, int(n * cfg.test_fraction)), max(1, int(n * cfg.val_fraction))
            parts = {"train": stream[: n - n_val - n_test], "validation": stream[n - n_val - n_test : n - n_test], "test": stream[n - n_test :]}
        (tmp / s.name).mkdir()
        for split, arr in parts.items():
            arr.tofile(tmp / s.name / f"{split}.bin")
        domains.append({"name": s.name, **s.meta, "bytes": n_bytes, "documents": n_docs, "tokens": {k: int(len(v)) for k, v in parts.items()}})
        log(f"  {s.name:<12} {n_bytes / 1e6:6.2f} MB  {n_docs:6d} docs  {n / 1e6:6.2f} M tokens")

    manifest = {
        "format": FORMAT_VERSION,
        "corpus": cfg.corpus,
        "vocab_size": vocab,
        "eos_id": eos,
        "dtype": np.dtype(dtype).name,
        "tokenizer": "tokenizer.json",
        "domains": domains,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.time() - started, 1),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"corpus ready in {out} ({manifest['build_seconds']} s)")
    return out


# ---------------------------------------------------------------------------------------------
# Reading


class TokenCorpus:
    """A built corpus: per-domain, per-split token arrays (memory-mapped), checked on open."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.exists():
            raise CorpusError(f"No {MANIFEST} in {self.root}: build the corpus first (acodm-gym data build).")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{manifest_path} is corrupt ({exc.msg}): delete {self.root} to rebuild it.") from None
        try:
            self.domains: list[str] = [d["name"] for d in self.manifest["domains"]]
            self.vocab_size: int = int(self.manifest["vocab_size"])
            self.eos_id: int = int(self.manifest["eos_id"])
            self.dtype = np.dtype(self.manifest["dtype"])
            expected = {(d["name"], split): int(d["tokens"][split]) for d in self.manifest["domains"] for split in SPLITS}
        except (KeyError, TypeError, ValueError) as exc:
            raise CorpusError(
                f"{manifest_path} is corrupt (bad or missing field: {exc}): delete {self.root} to rebuild it."
            ) from None
        self._arrays: dict[tuple[str, str], np.ndarray] = {}
        for (name, split), n in expected.items():
            self._arrays[name, split] = self._open(name, split, n)

    def _open(self, domain: str, split: str, expected: int) -> np.ndarray:
        path = self.root / domain / f"{split}.bin"
        fix = f"delete {self.root} to rebuild the corpus"
        if not path.exists():
            raise CorpusError(f"Token file {path} is missing: {fix}.")
        size = path.stat().st_size
        if size != expected * self.dtype.itemsize:
            raise CorpusError(
                f"Token file {path} is truncated or corrupt: expected {expected * self.dtype.itemsize} bytes "
                f"({expected} tokens), found {size}: {fix}."
            )
        if expected == 0:  # a tiny domain's empty split (np.memmap cannot map an empty file)
            return np.zeros(0, dtype=self.dtype)
        arr = np.memmap(path, dtype=self.dtype, mode="r")
        if len(arr) and int(arr.max()) >= self.vocab_size:
            raise CorpusError(f"Token file {path} holds ids ≥ the vocabulary size {self.vocab_size}: {fix}.")
        return arr

    def tokens(self, domain: str, split: str = "train") -> np.ndarray:
        return self._arrays[domain, split]

    def natural_weights(self) -> np.ndarray:
        """Token-proportional domain weights of the training split (the corpus' own mixture)."""
        n = np.array([len(self.tokens(d)) for d in self.domains], dtype=np.float64)
        return n / n.sum()

    def tokenizer(self):
        return toklib.load_tokenizer(self.root / self.manifest["tokenizer"])

    def blocks(self, domain: str, split: str, seq_len: int, limit: int | None = None) -> np.ndarray:
        """The first ``limit`` non-overlapping ``seq_len`` blocks of a split, as an (n, seq_len) array."""
        arr = self.tokens(domain, split)
        n = len(arr) // seq_len if limit is None else min(limit, len(arr) // seq_len)
        return np.asarray(arr[: n * seq_len], dtype=np.int64).reshape(n, seq_len)


def open_corpus(cfg: DataConfig, log: Callable[[str], None] = print) -> TokenCorpus:
    """The token corpus for a data config, built on first use."""
    return TokenCorpus(build_corpus(cfg, log))
