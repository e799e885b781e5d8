"""What ``data.corpus`` names, as a build's input: a text directory, a JSONL file, the default corpus, or a
recipe over one of them; streamed as (domain, piece, split), with a fingerprint of the files it reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..config import DataConfig
from ..errors import CorpusError, RecipeError
from .readers import DomainReport, cut_document, domain_files, iter_jsonl, iter_text_dir, text_dir_domains
from .recipes import TOP_UP, apply_recipe
from .splits import SPLITS


@dataclass
class CorpusInput:
    """A corpus' input: a text directory (one sub-directory per domain), a JSONL file, or a recipe's documents."""

    kind: str  # "dir" | "jsonl"
    path: Path
    domains: list[str]  # dir: known up front; JSONL: filled by the first pass
    meta: dict[str, dict] = field(default_factory=dict)  # per domain: source, version, license
    seen: set[str] = field(default_factory=set)  # JSONL: every domain value met, selected or not
    splits: dict[str, dict[str, list[str]]] | None = None  # a recipe's documents per domain and split

    def pieces(
        self, cfg: DataConfig, reports: dict[str, DomainReport] | None = None, top_up: bool = True
    ) -> Iterator[tuple[str, str, str | None]]:
        """(domain, piece, split) for every piece of every selected document, in input order.

        The split is a recipe's choice, or None: the piece's hash decides. A recipe's held-out top-up
        comes after its split's own pieces (``top_up=False`` leaves it out).

        :param cfg: the data section (seed, encoding, JSONL fields, selected domains)
        :param reports: per domain, what reading skipped is added here; None: not reported
        :param top_up: whether a recipe's held-out top-up is included
        """
        if self.splits is not None:
            for d in self.domains:
                for split in SPLITS:
                    for piece in self.splits[d][split] + (self.splits[d].get(split + TOP_UP, []) if top_up else []):
                        yield d, piece, split
            return
        if self.kind == "dir":
            for d in self.domains:
                report = None if reports is None else reports.setdefault(d, DomainReport())
                for piece in iter_text_dir(self.path, d, cfg.seed, cfg.encoding, report):
                    yield d, piece, None
            return
        for d, text in iter_jsonl(self.path, cfg.domain_fields, cfg.text_field, cfg.encoding, reports):
            self.seen.add(d)
            if cfg.domains and d not in cfg.domains:
                continue
            pieces = [p for p in cut_document(text) if p.strip()]
            if reports is not None and len(pieces) > 1:
                reports.setdefault(d, DomainReport()).cut_documents += 1
            for piece in pieces:
                yield d, piece, None


def resolve_input(cfg: DataConfig, cache: Path) -> CorpusInput:
    """What ``data.corpus`` names, checked before any work; the default corpus is not fetched here.

    :param cfg: the data section
    :param cache: the cache directory, under which the default corpus' text lives (``raw/``)
    """
    spec = cfg.corpus
    if spec == "default":
        from .sources import DEFAULT_DOMAINS

        return CorpusInput("dir", cache / "raw", list(cfg.domains or DEFAULT_DOMAINS))
    path = Path(spec).expanduser()
    if not path.exists():
        raise CorpusError(
            f"Corpus '{spec}' does not exist: give data.corpus=default, a directory with one sub-directory "
            "of text files per domain, or a .jsonl / .jsonl.zst file."
        )
    if path.is_dir():
        names = text_dir_domains(path)
        check_selected(cfg, names, path)
        names = [n for n in names if not cfg.domains or n in cfg.domains]
        return CorpusInput("dir", path, names, {n: {"source": f"dir:{path / n}"} for n in names})
    return CorpusInput("jsonl", path, [])


def fetch_default_input(cfg: DataConfig, source: CorpusInput, log: Callable[[str], None]) -> CorpusInput:
    """The default corpus fetched into ``source.path`` (finished domains are kept); a domain that fails is
    logged and left out, and fewer than two domains is an error.

    :param cfg: the data section (domains, byte cap)
    :param source: ``resolve_input``'s answer for the default corpus
    :param log: where each skipped domain is reported
    """
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
    return CorpusInput("dir", source.path, [r.domain for r in ok], meta)


def recipe_input(cfg: DataConfig, source: CorpusInput, reports: dict[str, DomainReport]) -> CorpusInput:
    """The base corpus resampled by ``data.recipe`` (in memory: recipes are built from small base corpora).

    :param cfg: the data section, its ``recipe`` set
    :param source: the base corpus
    :param reports: per domain, what reading the base skipped is added here
    """
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
    return CorpusInput("recipe", source.path, list(built), meta, splits=built)


def check_selected(cfg: DataConfig, available: list[str], path: Path) -> None:
    """``data.domains`` naming a domain the corpus lacks is a typo, not a smaller corpus.

    :param cfg: the data section
    :param available: the corpus' domains
    :param path: the corpus, named in the error
    """
    missing = [d for d in cfg.domains or [] if d not in available]
    if missing:
        raise CorpusError(
            f"data.domains names {missing}, not in the corpus {path}: choose from {', '.join(available) or '(none)'}."
        )


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def input_fingerprint(source: CorpusInput, requested: list[str]) -> dict:
    """Sizes and mtimes of every input file (cheap: no file is read), per domain for a directory.

    :param source: the input
    :param requested: the domains asked for (a default domain not yet fetched counts as empty)
    """
    if source.kind == "jsonl":
        st = source.path.stat()
        entry = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        return {"fingerprint": _digest(json.dumps(entry).encode()), "file": entry}
    domains = {}
    for d in requested:
        files = domain_files(source.path, d)[0] if (source.path / d).is_dir() else []
        stats = [(str(p.relative_to(source.path / d)), (st := p.stat()).st_size, st.st_mtime_ns) for p in files]
        domains[d] = {
            "files": len(stats),
            "bytes": sum(s[1] for s in stats),
            "digest": _digest(json.dumps(stats).encode()),
        }
    return {"fingerprint": _digest(json.dumps(domains, sort_keys=True).encode()), "domains": domains}


def what_changed(old: dict | None, new: dict) -> str:
    """Why a build is outdated, for the log: the domains added, removed or changed, or the file changed.

    :param old: the fingerprint the built manifest records (None in a manifest without one)
    :param new: ``input_fingerprint`` now
    """
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
