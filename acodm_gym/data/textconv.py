"""Text converters: the formats packages ship text in (HTML, groff, GNU info, dictd, JSON chat logs,
the ``bible`` program's output, metamath) turned into clean plain-text documents.

Pure functions of strings (no I/O), so each is tested on inline samples.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Sequence

__all__ = [
    "Doc",
    "CHUNK_CHARS",
    "clean_text",
    "chunk_texts",
    "strip_yaml_header",
    "strip_metamath_proofs",
    "html_to_text",
    "groff_to_text",
    "dictd_entries",
    "info_nodes",
    "chitchat_turns",
    "split_bible_books",
]

CHUNK_CHARS = 32_000  # target size of documents cut from long continuous sources

Doc = tuple[str, str]  # (name, text)


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
    return text[m.end() :] if m else text


_PROOF = re.compile(r"(?<!\S)([$@])=\s.*?(?<!\S)\1\.(?!\S)", flags=re.S)


def strip_metamath_proofs(text: str) -> str:
    """Replace every metamath proof (``$= ... $.``, or ``@= ... @.`` in commented-out
    theorems) by ``$.``: proofs are long runs of labels and compressed letters,
    the statements and comments are the readable math."""
    return _PROOF.sub(r"\1.", text)


class _HTMLText(HTMLParser):
    LINE = {"br", "tr", "li", "dt", "dd", "title", "caption"}  # end a line
    PARA = {
        "p",
        "div",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "dl",
        "table",
        "pre",
        "blockquote",
        "section",
        "article",
        "header",
        "footer",
        "form",
        "figure",
    }
    SKIP = {"script", "style", "noscript", "head", "svg"}
    # navigation chrome of DocBook (PostgreSQL) and GAPDoc (GAP) pages
    SKIP_CLASSES = {
        "navheader",
        "navfooter",
        "chlinktop",
        "chlinkbot",
        "chlinkprevnexttop",
        "chlinkprevnextbot",
        "foot",
        "mathjaxlink",
    }

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
    "em": "—",
    "en": "–",
    "hy": "-",
    "mi": "-",
    "aq": "'",
    "dq": '"',
    "bu": "•",
    "co": "©",
    "rg": "®",
    "tm": "™",
    "lq": "“",
    "rq": "”",
    "oq": "‘",
    "cq": "’",
    "pl": "+",
    "mu": "×",
    "di": "÷",
    "->": "→",
    "<-": "←",
    "<=": "≤",
    ">=": "≥",
    "!=": "≠",
    "==": "≡",
    "ti": "~",
    "ha": "^",
    "rs": "\\",
    "sl": "/",
    "ba": "|",
    "or": "|",
    "de": "°",
    "+-": "±",
    "Fo": "«",
    "Fc": "»",
    "ga": "`",
    "aa": "´",
    "sc": "§",
    "dg": "†",
    "eq": "=",
    "lB": "[",
    "rB": "]",
    "lC": "{",
    "rC": "}",
    "la": "⟨",
    "ra": "⟩",
    "sq": "□",
    "ua": "↑",
    "da": "↓",
    "12": "½",
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
    )""",
    re.X,
)
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
    return [a[1:].rstrip('"') if a.startswith('"') else a for a in re.findall(r'"[^"]*"?|(?:\\.|[^\s\\])+', s)]


class _GroffText:
    """Rendering state of one man page: the lines out, the paragraph being filled, and the modes
    that requests switch (fill, tables, the tag line after .TP, macro definitions being skipped)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.para: list[str] = []
        self.fill = True  # False inside .nf/.EX blocks and tables
        self.tag_next = self.skipping = self.table = self.table_fmt = False

    def flush(self, blank: bool = False) -> None:
        if self.para:
            self.out.append(" ".join(self.para))
            self.para.clear()
        if blank:
            self.out.append("")

    def text(self, s: str) -> None:
        if not self.fill:
            self.flush()
            self.out.append(s)
        elif s.strip():
            self.para.append(s.strip())
            if self.tag_next:  # the line after .TP is the tag, on a line of its own
                self.flush()
                self.tag_next = False

    def line(self, line: str) -> None:
        """One source line: text, or a request (``.`` or ``'`` first)."""
        if self.skipping:  # inside .de/.ig up to ".."
            self.skipping = not line.startswith("..")
            return
        line = re.sub(r'(?<!\\)\\".*$', "", line)  # \" comment to end of line
        if line[:1] not in (".", "'"):
            self.text_line(line)
            return
        m = re.match(r"[.'][ \t]*(\S*)[ \t]*(.*)", line)
        self.request(m.group(1), _groff_args(m.group(2)))

    def text_line(self, line: str) -> None:
        if self.table_fmt:  # tbl options and format lines, the last ends with "."
            self.table_fmt = not line.rstrip().endswith(".")
        elif not line.strip() and self.fill:
            self.flush(blank=True)
        else:
            if self.table:  # cells: tab separated, T{ ... T} around long ones
                line = re.sub(r"T[{}]", "", line).replace("\t", "  ")
            self.text(_groff_escapes(line))

    def request(self, req: str, args: list[str]) -> None:
        if req in ("de", "de1", "am", "ig"):
            self.skipping = True
        elif req == "TH":
            self.flush()
            self.out.append(f"{args[0]}({args[1]})" if len(args) > 1 else " ".join(args))
        elif req in ("SH", "SS"):
            self.flush(blank=True)
            self.out.append(_groff_escapes(" ".join(args)))
        elif req in _GROFF_ALT:
            self.text(_groff_escapes("".join(args)))
        elif req in _GROFF_JOIN:
            self.text(_groff_escapes(" ".join(args)))
        elif req in ("TP", "TQ"):
            self.flush(blank=req == "TP")
            self.tag_next = True
        elif req == "IP":
            self.flush(blank=True)
            if args and args[0]:
                self.out.append(_groff_escapes(args[0]))
        elif req in ("PP", "LP", "P", "sp", "HP"):
            self.flush(blank=True)
        elif req in ("nf", "EX", "TS"):
            self.flush()
            self.fill, self.table = False, req == "TS"
            self.table_fmt = self.table
        elif req in ("fi", "EE", "TE"):
            self.flush()
            self.fill, self.table = True, False
        elif req in ("br", "RS", "RE", "in", "ti", "bp"):
            self.flush()
        # every other request only affects layout


def groff_to_text(src: str) -> str:
    """Render a man page's groff/man source as plain text: comments, requests and
    font escapes removed, headings and font-macro text kept, filled paragraphs
    joined into lines (no-fill blocks and tables kept line by line), special
    characters mapped to Unicode.  A pragmatic subset, not a typesetter."""
    page = _GroffText()
    src = re.sub(r"(?<!\\)\\\n", "", src.replace("\r\n", "\n"))  # \ at the end continues a line
    for line in src.split("\n"):
        page.line(line)
    page.flush()
    return clean_text("\n".join(page.out))


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
    return [data[o : o + n].decode("utf-8", "replace").rstrip() for o, n in sorted(spans - meta)]


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


# "*note LABEL: NODE." / "*note LABEL: NODE," / "*note LABEL::" -> LABEL
_INFO_XREF = re.compile(r"\*[Nn]ote\s+([^:]{1,200}?)(?:::|:\s+[^\s.,:]+([.,]))")


def info_nodes(info: str) -> list[str]:
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
