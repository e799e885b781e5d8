"""Corpus building and reading: text per domain → packed per-domain token files (numpy memmap).

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
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..config import DataConfig
from ..errors import CorpusError, RecipeError
from . import tokenizer as toklib
from .recipes import TOP_UP, apply_recipe

SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"
FORMAT_VERSION = 2
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text", "")  # read as text, in any case (.TXT too)
MAX_PIECE_CHARS = 1_000_000  # longer documents are cut: the byte cap stays even, tokenizing stays small
HASH_BINS = 1 << 16  # resolution of the hash-chosen sample (bytes per bin are counted in the first pass)
SNIFF_BYTES = 1024  # a file's head that decides whether it is text
VERIFY_ON_OPEN_BYTES = 1 << 28  # corpora up to this size are checksummed whenever they open (~1.5 s at 170 MB/s)
_LISTED = 20  # file names listed per domain in the manifest (skipped, binary or undecodable files)


def default_cache_dir(cfg: DataConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    if os.environ.get("ACODM_GYM_CACHE"):
        return Path(os.environ["ACODM_GYM_CACHE"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("acodm-gym"))


# ---------------------------------------------------------------------------------------------
# Decoding: undecodable bytes are counted, not silently replaced


_undecodable = [0]


def _count_undecodable(exc: UnicodeDecodeError) -> tuple[str, int]:
    _undecodable[0] += exc.end - exc.start
    return "\ufffd", exc.end


codecs.register_error("acodm-gym-count", _count_undecodable)


def _is_utf8_name(encoding: str) -> bool:
    return encoding != "auto" and codecs.lookup(encoding).name == "utf-8"


def _is_utf8(path: Path) -> bool:
    dec = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                dec.decode(chunk)
        dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _looks_binary(head: bytes, encoding: str) -> bool:
    """NUL bytes, many control characters or mostly undecodable bytes in a file's first KB."""
    if not head:
        return False
    if b"\0" in head:
        return True
    control = sum(1 for b in head if (b < 32 and b not in b"\t\n\r\f\b\x1b") or b == 127)
    before = _undecodable[0]
    head.decode("cp1252" if encoding == "auto" else encoding, errors="acodm-gym-count")
    bad, _undecodable[0] = _undecodable[0] - before, before
    return control > 0.1 * len(head) or bad > 0.3 * len(head)


def _cut(text: str) -> Iterator[str]:
    """``text`` in pieces of at most MAX_PIECE_CHARS, cut after a newline (else a space) where there is one."""
    while len(text) > MAX_PIECE_CHARS:
        at = text.rfind("\n", 0, MAX_PIECE_CHARS) + 1
        if at < MAX_PIECE_CHARS // 2:
            at = text.rfind(" ", 0, MAX_PIECE_CHARS) + 1
        if at < MAX_PIECE_CHARS // 2:
            at = MAX_PIECE_CHARS
        yield text[:at]
        text = text[at:]
    yield text


# ---------------------------------------------------------------------------------------------
# Readers: each yields (domain, piece of a document), streaming; what they skip goes to a report


@dataclass
class _DomainReport:
    """What reading a domain found besides text: files not read and why, binary files, undecodable bytes, cut documents."""

    skipped_files: dict[str, str] = field(default_factory=dict)  # name -> why it is not read
    binary_files: list[str] = field(default_factory=list)
    undecodable_bytes: int = 0
    undecodable_files: dict[str, int] = field(default_factory=dict)  # the first _LISTED of them
    undecodable_count: int = 0  # files (JSONL: lines) with undecodable bytes
    cut_documents: int = 0

    def undecodable(self, name: str, n: int) -> None:
        self.undecodable_bytes += n
        self.undecodable_count += 1
        if len(self.undecodable_files) < _LISTED:
            self.undecodable_files[name] = n

    def as_manifest(self) -> dict:
        skipped = dict(list(self.skipped_files.items())[:_LISTED])
        return {
            "skipped_files": {"count": len(self.skipped_files), "files": skipped},
            "binary_files": {"count": len(self.binary_files), "files": self.binary_files[:_LISTED]},
            "undecodable_bytes": self.undecodable_bytes,
            "undecodable_files": {"count": self.undecodable_count, "files": self.undecodable_files},
            "cut_documents": self.cut_documents,
        }


def _dig(record: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(record, dict) or part not in record:
            return None
        record = record[part]
    return record


def _unreadable(path: Path, exc: OSError) -> CorpusError:
    """A file of the corpus that the system cannot read (permissions, a disk or network error): one line naming it."""
    return CorpusError(
        f"{path} cannot be read ({exc.strerror or exc}): fix its permissions or the disk it is on, "
        "or move it out of the corpus."
    )


def _zstd_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed chunks of a (multi-frame) .zst file; a truncated or damaged file is an error naming it."""
    import zstandard

    fix = f"{path} is truncated or corrupt zstd"
    dctx = zstandard.ZstdDecompressor()
    obj, pending = dctx.decompressobj(), False
    for chunk in _file_chunks(path):
        while chunk:
            try:
                out = obj.decompress(chunk)
            except zstandard.ZstdError as exc:
                raise CorpusError(f"{fix} ({exc}): download or compress it again.") from None
            pending = True
            if out:
                yield out
            if not obj.eof:
                break
            chunk, obj, pending = obj.unused_data, dctx.decompressobj(), False
    if pending:
        raise CorpusError(
            f"{fix}: it ends inside a zstd frame (an interrupted download or copy?): download or compress it again."
        )


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    parts: list[bytes] = []
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            yield b"".join([*parts, chunk[start : end + 1]])
            parts, start = [], end + 1
        if start < len(chunk):
            parts.append(chunk[start:])
    if parts:
        yield b"".join(parts)


def _file_chunks(path: Path) -> Iterator[bytes]:
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk
    except OSError as exc:
        raise _unreadable(path, exc) from None


def iter_jsonl(
    path: Path, domain_fields: list[str], text_field: str, encoding: str = "utf-8", reports: dict | None = None
) -> Iterator[tuple[str, str]]:
    """Records of a JSONL or JSONL.zst file (The Pile, SlimPajama, or any ``{"text", domain}`` lines).

    JSON is UTF-8: a line that is not is an error naming it, unless ``encoding`` is another codec
    (that line is decoded with it, undecodable bytes counted) or ``auto`` (UTF-8, else cp1252).
    """
    chunks = _zstd_chunks(path) if path.suffix == ".zst" else _file_chunks(path)
    for lineno, raw in enumerate(_lines(chunks), 1):
        if not raw.strip():
            continue
        before = _undecodable[0]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if _is_utf8_name(encoding):
                raise CorpusError(
                    f"{path}:{lineno} is not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}): if the file is "
                    "Latin-1, set data.encoding=latin-1 (or data.encoding=auto: UTF-8, else cp1252, per line); "
                    "or re-encode the file as UTF-8."
                ) from None
            line = raw.decode("cp1252" if encoding == "auto" else encoding, errors="acodm-gym-count")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{lineno} is not valid JSON ({exc.msg}): fix or drop that line.") from None
        key, domain = next(
            ((f, d) for f, d in ((f, _dig(record, f)) for f in domain_fields) if d is not None), (0, None)
        )
        if domain is None:
            raise CorpusError(
                f"{path}:{lineno} has none of the domain fields {domain_fields}: set data.domain_fields "
                "to the dotted path of the domain name in your records."
            )
        if isinstance(domain, bool) or not isinstance(domain, (str, int)):
            raise CorpusError(
                f"{path}:{lineno}: the domain field '{key}' holds {domain!r}, not a name: give each record a "
                f'string there (e.g. "{key}": "web"), or set data.domain_fields to the field that holds one.'
            )
        text = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise CorpusError(f"{path}:{lineno} has no string field '{text_field}': set data.text_field.")
        if reports is not None and _undecodable[0] > before:
            reports.setdefault(str(domain), _DomainReport()).undecodable(
                f"{path.name}:{lineno}", _undecodable[0] - before
            )
        yield str(domain), text


def text_dir_domains(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def _domain_files(root: Path, domain: str) -> tuple[list[Path], dict[str, str]]:
    """A domain directory's text files (by suffix, in any case), and every other file with why it is not read."""
    files, skipped = [], {}
    for p in (root / domain).rglob("*"):
        name = str(p.relative_to(root / domain))
        if p.is_dir() or p.name == "SOURCE.json":  # SOURCE.json: the default corpus' record of a domain's source
            if p.is_dir() and p.is_symlink():
                skipped[name] = "a link to a directory (not followed)"
            continue
        if not p.is_file():
            skipped[name] = "a dangling link" if p.is_symlink() and not p.exists() else "not a regular file"
        elif p.suffix.lower() not in TEXT_SUFFIXES:
            skipped[name] = f"not a text file by its suffix '{p.suffix}'"
        else:
            files.append(p)
    return sorted(files), dict(sorted(skipped.items()))


def iter_text_dir(
    root: Path, domain: str, seed: int = 0, encoding: str = "utf-8", report: _DomainReport | None = None
) -> Iterator[str]:
    """A domain directory's text files (any depth), streamed in pieces of at most MAX_PIECE_CHARS.

    Files of other suffixes and files that look binary are skipped, and bytes that do not decode
    are counted (``report``). The order is a seeded shuffle, so that the end of a domain's token
    stream is a random sample of its files (a domain split by position, too few documents).
    """
    files, skipped = _domain_files(root, domain)
    if report is not None:
        report.skipped_files = skipped
    random.Random(f"{seed}:{domain}").shuffle(files)
    for path in files:
        try:
            yield from _file_pieces(path, str(path.relative_to(root / domain)), encoding, report)
        except OSError as exc:  # not one from the consumer: a generator only sees its own
            raise _unreadable(path, exc) from None


def _file_pieces(path: Path, name: str, encoding: str, report: _DomainReport | None) -> Iterator[str]:
    """One text file in pieces of at most MAX_PIECE_CHARS; nothing if it looks binary."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if _looks_binary(head, encoding):
        if report is not None:
            report.binary_files.append(name)
        return
    enc = encoding if encoding != "auto" else ("utf-8" if _is_utf8(path) else "cp1252")
    bad, buf, pieces = 0, "", 0
    with open(path, encoding=enc, errors="acodm-gym-count") as fh:  # universal newlines, as Path.read_text
        while True:
            before = _undecodable[0]
            chunk = fh.read(MAX_PIECE_CHARS)
            bad += _undecodable[0] - before
            buf += chunk
            if chunk and len(buf) <= MAX_PIECE_CHARS:
                continue
            *done, buf = _cut(buf)
            if not chunk:
                done, buf = [*done, buf], ""
            for piece in done:
                if piece.strip():
                    pieces += 1
                    yield piece
            if not chunk:
                break
    if report is not None:
        report.cut_documents += pieces > 1
        if bad:
            report.undecodable(name, bad)


# ---------------------------------------------------------------------------------------------
# Sources and their fingerprints


@dataclass
class _Source:
    """A corpus' input: a text directory (one sub-directory per domain) or a JSONL file."""

    kind: str  # "dir" | "jsonl"
    path: Path
    domains: list[str]  # dir: known up front; JSONL: filled by the first pass
    meta: dict[str, dict] = field(default_factory=dict)  # per domain: source, version, license
    seen: set[str] = field(default_factory=set)  # JSONL: every domain value met, selected or not
    splits: dict[str, dict[str, list[str]]] | None = None  # a recipe's documents per domain and split

    def pieces(
        self, cfg: DataConfig, reports: dict[str, _DomainReport] | None = None, top_up: bool = True
    ) -> Iterator[tuple[str, str, str | None]]:
        """(domain, piece, split) for every piece of every selected document, in input order.

        The split is a recipe's choice, or None: the piece's hash decides. A recipe's held-out top-up
        comes after its split's own pieces (``top_up=False`` leaves it out).
        """
        if self.splits is not None:
            for d in self.domains:
                for split in SPLITS:
                    for piece in self.splits[d][split] + (self.splits[d].get(split + TOP_UP, []) if top_up else []):
                        yield d, piece, split
            return
        if self.kind == "dir":
            for d in self.domains:
                report = None if reports is None else reports.setdefault(d, _DomainReport())
                for piece in iter_text_dir(self.path, d, cfg.seed, cfg.encoding, report):
                    yield d, piece, None
            return
        for d, text in iter_jsonl(self.path, cfg.domain_fields, cfg.text_field, cfg.encoding, reports):
            self.seen.add(d)
            if cfg.domains and d not in cfg.domains:
                continue
            pieces = [p for p in _cut(text) if p.strip()]
            if reports is not None and len(pieces) > 1:
                reports.setdefault(d, _DomainReport()).cut_documents += 1
            for piece in pieces:
                yield d, piece, None


def _resolve(cfg: DataConfig, cache: Path) -> _Source:
    """What ``data.corpus`` names, checked before any work; the default corpus is not fetched here."""
    spec = cfg.corpus
    if spec == "default":
        from .sources import DEFAULT_DOMAINS

        return _Source("dir", cache / "raw", list(cfg.domains or DEFAULT_DOMAINS))
    path = Path(spec).expanduser()
    if not path.exists():
        raise CorpusError(
            f"Corpus '{spec}' does not exist: give data.corpus=default, a directory with one sub-directory "
            "of text files per domain, or a .jsonl / .jsonl.zst file."
        )
    if path.is_dir():
        names = text_dir_domains(path)
        _check_selected(cfg, names, path)
        names = [n for n in names if not cfg.domains or n in cfg.domains]
        return _Source("dir", path, names, {n: {"source": f"dir:{path / n}"} for n in names})
    return _Source("jsonl", path, [])


def _fetch_default(cfg: DataConfig, source: _Source, log: Callable[[str], None]) -> _Source:
    from .sources import fetch_default_corpus

    cap = cfg.max_bytes_per_domain if cfg.max_bytes_per_domain is not None else 1 << 62
    results = fetch_default_corpus(source.path, domains=cfg.domains, max_bytes_per_domain=cap, log=log)
    for r in results:
        if not r.ok:
            log(f"domain '{r.domain}' skipped: {r.error}")
    ok = [r for r in results if r.ok]
    if len(ok) < 2:
        raise CorpusError("Fewer than two default domains could be fetched; see the messages above.")
    meta = {r.domain: {"source": r.source, "version": r.version, "license": r.license} for r in ok}
    return _Source("dir", source.path, [r.domain for r in ok], meta)


def _apply_recipe(cfg: DataConfig, source: _Source, reports: dict[str, _DomainReport]) -> _Source:
    """The base corpus resampled by ``data.recipe`` (in memory: recipes are built from small base corpora)."""
    base: dict[str, list[str]] = {d: [] for d in source.domains}
    for d, piece, _ in source.pieces(cfg, reports):
        base.setdefault(d, []).append(piece)
    try:
        built = apply_recipe(cfg.recipe, base)
    except RecipeError as exc:
        raise CorpusError(str(exc)) from None
    meta = {}
    for name in built:
        planted = cfg.recipe.planted.get(name)
        meta[name] = (
            {**source.meta.get(name, {}), "recipe_share": cfg.recipe.shares[name]}
            if planted is None
            else {
                "source": f"planted:{planted['generator']}",
                "license": "derived from the clean domains",
                "planted": dict(planted),
            }
        )
    return _Source("recipe", source.path, list(built), meta, splits=built)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _input_fingerprint(source: _Source, requested: list[str]) -> dict:
    """Sizes and mtimes of every input file (cheap: no file is read), per domain for a directory."""
    if source.kind == "jsonl":
        st = source.path.stat()
        entry = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        return {"fingerprint": _digest(json.dumps(entry).encode()), "file": entry}
    domains = {}
    for d in requested:
        files = _domain_files(source.path, d)[0] if (source.path / d).is_dir() else []
        stats = [(str(p.relative_to(source.path / d)), (st := p.stat()).st_size, st.st_mtime_ns) for p in files]
        domains[d] = {
            "files": len(stats),
            "bytes": sum(s[1] for s in stats),
            "digest": _digest(json.dumps(stats).encode()),
        }
    return {"fingerprint": _digest(json.dumps(domains, sort_keys=True).encode()), "domains": domains}


def _what_changed(old: dict | None, new: dict) -> str:
    if not old or "fingerprint" not in old:
        return "its manifest records no input fingerprint"
    if "file" in new:
        o, n = old.get("file", {}), new["file"]
        return f"the input file changed ({o.get('bytes')} → {n['bytes']} bytes, or its modification time)"
    o, n = old.get("domains", {}), new["domains"]
    parts = [f"domain '{d}' added" for d in n if d not in o] + [f"domain '{d}' removed" for d in o if d not in n]
    parts += [
        f"domain '{d}' changed ({o[d]['files']} → {n[d]['files']} files, {o[d]['bytes']} → {n[d]['bytes']} bytes)"
        for d in n
        if d in o and o[d]["digest"] != n[d]["digest"]
    ]
    return "; ".join(parts) or "its inputs changed"


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
    """Where the built corpus for this data config lives in the cache (its inputs are checked by fingerprint)."""
    key = json.dumps(
        {
            "corpus": cfg.corpus if cfg.corpus == "default" else str(Path(cfg.corpus).expanduser().resolve()),
            "domains": cfg.domains,
            "tokenizer": cfg.tokenizer
            and [str(Path(cfg.tokenizer).expanduser().resolve()), _file_digest(cfg.tokenizer)],
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


def _piece_hash(data: bytes, seed: int) -> tuple[int, float]:
    """(sampling bin, split draw in [0, 1)) of a piece: a function of its text and the seed only."""
    h = hashlib.blake2b(data, digest_size=16, key=f"acodm-gym:{seed}".encode()).digest()
    return int.from_bytes(h[:2], "big"), int.from_bytes(h[8:], "big") / 2.0**64


def _bin_limit(hist: np.ndarray, budget: int | None) -> int:
    """The BPE's sample is the pieces in bins below this: at most ``budget`` bytes (at least one bin)."""
    if budget is None or int(hist.sum()) <= budget:
        return HASH_BINS
    limit = int(np.searchsorted(np.cumsum(hist), budget, side="right"))
    return max(limit, int(np.flatnonzero(hist)[0]) + 1)


def _kept_bins(hist: np.ndarray, budget: int | None) -> np.ndarray:
    """The byte cap's sample: in hash order, each bin that still fits in what is left of ``budget`` (a bin
    too large, such as a piece of one oversized document, is passed over, not the end of the sample).

    It keeps the bins below ``_bin_limit`` and fills on from there; at least one bin.
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


def _split_of(u: float, cfg: DataConfig) -> str:
    return "test" if u < cfg.test_fraction else "validation" if u < cfg.test_fraction + cfg.val_fraction else "train"


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


def _checksum(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _DomainStats:
    input_bytes: int = 0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(HASH_BINS, dtype=np.int64))
    keep: np.ndarray = field(default_factory=lambda: np.ones(HASH_BINS, dtype=bool))  # the bins kept (byte cap)
    bytes: int = 0
    documents: int = 0


def _survey(
    source: _Source, cfg: DataConfig, reports: dict[str, _DomainReport], log: Callable[[str], None]
) -> dict[str, _DomainStats]:
    """First pass: bytes per domain and per hash bin, and what reading skipped (``reports``, logged)."""
    stats: dict[str, _DomainStats] = {}
    for d, piece, _ in source.pieces(cfg, reports):
        data = piece.encode("utf-8")
        s = stats.setdefault(d, _DomainStats())
        s.input_bytes += len(data)
        s.hist[_piece_hash(data, cfg.seed)[0]] += len(data)
    for d, r in sorted(reports.items()):
        if r.skipped_files:
            shown = ", ".join(f"{n} ({why})" for n, why in list(r.skipped_files.items())[:_LISTED])
            log(
                f"  {d}: skipped {len(r.skipped_files)} file(s): {shown}{' ...' if len(r.skipped_files) > _LISTED else ''}"
                f" (read as text: {', '.join(s or 'no suffix' for s in TEXT_SUFFIXES)}, in any case: rename a text file "
                "to .txt to read it)"
            )
        if r.binary_files:
            log(
                f"  {d}: skipped {len(r.binary_files)} binary file(s): {', '.join(r.binary_files[:5])}"
                + (" ..." if len(r.binary_files) > 5 else "")
                + f" (if they are text in another encoding than {cfg.encoding}, set data.encoding)"
            )
        if r.undecodable_bytes:
            hint = (
                "set data.encoding=latin-1 (or data.encoding=auto: UTF-8, else cp1252, per file)"
                if _is_utf8_name(cfg.encoding)
                else f"they are not {cfg.encoding} either"
            )
            files = ", ".join(f"{f} ({n} bytes)" for f, n in list(r.undecodable_files.items())[:5])
            log(
                f"  warning: {d}: {r.undecodable_bytes} bytes in {r.undecodable_count} file(s) are not {cfg.encoding} "
                f"and became U+FFFD: {files}{' ...' if r.undecodable_count > 5 else ''}. If they are Latin-1, {hint}."
            )
    return stats


def _train_tokenizer(source: _Source, cfg: DataConfig, stats: dict[str, _DomainStats], log: Callable[[str], None]):
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
            hist[d][_piece_hash(data, cfg.seed)[0]] += len(data)
    limit = {d: _bin_limit(hist[d] * s.keep, toklib.TRAIN_BYTES_PER_DOMAIN) for d, s in stats.items()}
    sample = (
        piece
        for d, piece, split in source.pieces(cfg, top_up=False)
        if split in (None, "train")
        and (b := _piece_hash(piece.encode("utf-8"), cfg.seed)[0]) < limit[d]
        and stats[d].keep[b]
    )
    return toklib.train_bpe(sample, cfg.vocab_size)


def _write_splits(
    source: _Source, cfg: DataConfig, stats: dict[str, _DomainStats], tok, eos: int, dtype, tmp: Path
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
            b, u = _piece_hash(data, cfg.seed)
            s = stats[d]
            if not s.keep[b]:
                continue
            s.bytes += len(data)
            s.documents += 1
            pending.append((d, split or _split_of(u, cfg), piece))
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


def build_corpus(cfg: DataConfig, log: Callable[[str], None] = print) -> Path:
    """Build (once) the token corpus for ``cfg`` and return its directory.

    A build is reused while the fingerprint of its inputs (file sizes and mtimes) is unchanged;
    otherwise it is rebuilt, and the log says what changed.
    """
    out = corpus_dir(cfg)
    cache = default_cache_dir(cfg)
    source = _resolve(cfg, cache)
    requested = source.domains
    if (out / MANIFEST).exists():
        built = _read_manifest(out / MANIFEST).get("inputs")
        now = _input_fingerprint(source, requested)
        if built and built.get("fingerprint") == now["fingerprint"]:
            return out
        log(f"rebuilding {out}: {_what_changed(built, now)}")
    started = time.time()
    tok = None
    if cfg.tokenizer:
        try:
            tok = toklib.load_tokenizer(Path(cfg.tokenizer).expanduser())
            eos = toklib.eos_id(tok)
        except (FileNotFoundError, ValueError) as exc:
            raise CorpusError(f"data.tokenizer={cfg.tokenizer}: {exc}") from None
    if cfg.corpus == "default":
        source = _fetch_default(cfg, source, log)
    inputs = _input_fingerprint(source, requested)
    reports: dict[str, _DomainReport] = {}
    if cfg.recipe.shares:
        source = _apply_recipe(cfg, source, reports)
    stats = _survey(source, cfg, reports, log)
    if source.kind == "jsonl":
        _check_selected(cfg, sorted(source.seen), source.path)
        source.domains = sorted(set(stats) | set(cfg.domains or ()))
        source.meta = {d: {"source": f"jsonl:{source.path}"} for d in source.domains}
    if not source.domains:
        raise CorpusError(f"Corpus '{cfg.corpus}' has no domains: add one sub-directory (or domain value) per domain.")
    for d in source.domains:
        if not d or d in (".", "..") or "/" in d or "\\" in d:
            raise CorpusError(f"Domain name {d!r} cannot name a directory: rename that domain in {cfg.corpus}.")
        if d not in stats:
            report = reports.get(d, _DomainReport())
            skipped, other = report.binary_files, list(report.skipped_files)
            raise CorpusError(
                f"Domain '{d}' has no text ({source.meta.get(d, {}).get('source', cfg.corpus)}"
                + (f"; {len(skipped)} binary file(s) skipped: {', '.join(skipped[:5])}" if skipped else "")
                + (f"; {len(other)} file(s) not read: {', '.join(other[:5])}" if other else "")
                + "): add text files (.txt, .md, .rst, .text or no suffix) or remove it."
            )
    stats = {d: stats[d] for d in source.domains}
    for s in stats.values():
        s.keep = _kept_bins(s.hist, None if source.splits is not None else cfg.max_bytes_per_domain)
    if tok is None:
        tok = _train_tokenizer(source, cfg, stats, log)
        eos = toklib.eos_id(tok)
    vocab = tok.get_vocab_size()
    dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max + 1 else np.uint32

    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tok.save(str(tmp / "tokenizer.json"))
        _write_splits(source, cfg, stats, tok, eos, dtype, tmp)
        domains = []
        for d, s in stats.items():
            tokens = {split: (tmp / d / f"{split}.bin").stat().st_size // np.dtype(dtype).itemsize for split in SPLITS}
            split = "recipe" if source.splits is not None else "document"
            if split == "document" and not _split_by_document_ok(tokens, cfg):
                tokens, split = _split_small_domain(tmp / d, dtype, cfg, eos, source.kind)
            n = sum(tokens.values())
            sampled = f", an even sample of {s.input_bytes / 1e6:.2f} MB" if s.bytes < s.input_bytes else ""
            by = {
                "position": ", split by position (too few documents to split by document)",
                "hash-order": ", held-out documents taken in hash order (the hash split left a split unbalanced)",
            }.get(split, "")
            log(f"  {d:<12} {s.bytes / 1e6:6.2f} MB  {s.documents:6d} docs  {n / 1e6:6.2f} M tokens{sampled}{by}")
            domains.append(
                {
                    "name": d,
                    **source.meta.get(d, {}),
                    "bytes": s.bytes,
                    "input_bytes": s.input_bytes,
                    "documents": s.documents,
                    "tokens": tokens,
                    "split": split,
                    "checksums": {k: _checksum(tmp / d / f"{k}.bin") for k in SPLITS},
                    **reports.get(d, _DomainReport()).as_manifest(),
                }
            )
        manifest = {
            "format": FORMAT_VERSION,
            "corpus": cfg.corpus,
            "vocab_size": vocab,
            "eos_id": eos,
            "dtype": np.dtype(dtype).name,
            "tokenizer": "tokenizer.json",
            "tokenizer_sha256": _file_digest(tmp / "tokenizer.json"),
            "encoding": cfg.encoding,
            "inputs": inputs,
            "domains": domains,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.time() - started, 1),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _install(tmp, out)
    log(f"corpus ready in {out} ({manifest['build_seconds']} s)")
    return out


# ---------------------------------------------------------------------------------------------
# Reading


def _read_manifest(path: Path) -> dict:
    fix = f"delete {path.parent} to rebuild it (acodm-gym data)"
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise CorpusError(f"{path} is corrupt (not text: binary or damaged): {fix}.") from None
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{path} is corrupt ({exc.msg}): {fix}.") from None
    if not isinstance(manifest, dict):
        raise CorpusError(f"{path} is corrupt (not a JSON object): {fix}.")
    return manifest


class TokenCorpus:
    """A built corpus: per-domain, per-split token arrays (memory-mapped), checked on open.

    :param root: the corpus directory (``build_corpus``'s result)
    :param verify: check every token file's checksum now (reads the whole corpus); ``None``: only
        if the token files total at most ``VERIFY_ON_OPEN_BYTES`` (a resumed run and
        ``acodm-gym data --verify`` call ``verify()`` whatever the size)
    """

    def __init__(self, root: str | Path, verify: bool | None = None):
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.exists():
            raise CorpusError(f"No {MANIFEST} in {self.root}: build the corpus first (acodm-gym data).")
        self.manifest = _read_manifest(manifest_path)
        try:
            self.domains: list[str] = [d["name"] for d in self.manifest["domains"]]
            self.vocab_size: int = int(self.manifest["vocab_size"])
            self.eos_id: int = int(self.manifest["eos_id"])
            self.dtype = np.dtype(self.manifest["dtype"])
            tokenizer_path = self.root / self.manifest["tokenizer"]
            expected = {
                (d["name"], split): int(d["tokens"][split]) for d in self.manifest["domains"] for split in SPLITS
            }
            self._checksums = {
                (d["name"], split): str(d["checksums"][split]) for d in self.manifest["domains"] for split in SPLITS
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise CorpusError(
                f"{manifest_path} is corrupt (bad or missing field: {exc}): delete {self.root} to rebuild it."
            ) from None
        self._arrays: dict[tuple[str, str], np.ndarray] = {}
        for (name, split), n in expected.items():
            self._arrays[name, split] = self._open(name, split, n)
        if verify or (
            verify is None and sum(n for n in expected.values()) * self.dtype.itemsize <= VERIFY_ON_OPEN_BYTES
        ):
            self.verify()
        self._check_tokenizer(tokenizer_path)

    def _check_tokenizer(self, path: Path) -> None:
        """A damaged or replaced tokenizer.json fails here, not at export time after training."""
        fix = f"delete {self.root} to rebuild the corpus (acodm-gym data)"
        try:
            n = toklib.load_tokenizer(path).get_vocab_size()
        except (FileNotFoundError, ValueError) as exc:
            raise CorpusError(f"The corpus tokenizer is unusable: {exc} Restore it, or {fix}.") from None
        want = self.manifest.get("tokenizer_sha256")  # absent in corpora built before it was recorded
        if want is not None and _file_digest(path) != want:
            raise CorpusError(
                f"{path} is not the tokenizer the corpus was built with: its digest differs from the one "
                f"{self.root / MANIFEST} records (replaced after the build, e.g. by another corpus' tokenizer.json?). "
                f"Restore it, or {fix}."
            )
        if n != self.vocab_size:
            raise CorpusError(
                f"{path} has {n} tokens but {self.root / MANIFEST} records {self.vocab_size}: the tokenizer was "
                f"replaced or damaged after the build. Restore it, or {fix}."
            )

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

    def verify(self) -> None:
        """Check every token file against its checksum in the manifest (reads the whole corpus)."""
        for (name, split), want in self._checksums.items():
            path = self.root / name / f"{split}.bin"
            if _checksum(path) != want:
                raise CorpusError(
                    f"Token file {path} does not match its checksum in {self.root / MANIFEST}: it changed after the "
                    f"build (overwritten, zeroed or shuffled?). Delete {self.root} to rebuild the corpus."
                )

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
    """The token corpus for a data config, built on first use (rebuilt when its inputs changed)."""
    return TokenCorpus(build_corpus(cfg, log))
