"""Reading a corpus' source files: text directories and JSONL(.zst) files, streamed as documents in pieces.

Nothing is held in memory whole: files are read in chunks, documents longer than ``MAX_PIECE_CHARS``
are cut at line (else space) boundaries, and what a reader skips (other suffixes, binary files,
undecodable bytes) goes to a ``DomainReport``, not silently away.
"""

from __future__ import annotations

import codecs
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import CorpusError

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text", "")  # read as text, in any case (.TXT too)
MAX_PIECE_CHARS = 1_000_000  # longer documents are cut: the byte cap stays even, tokenizing stays small
SNIFF_BYTES = 1024  # a file's head that decides whether it is text
_LISTED = 20  # file names listed per domain in the manifest (skipped, binary or undecodable files)


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


def cut_document(text: str) -> Iterator[str]:
    """``text`` in pieces of at most MAX_PIECE_CHARS, cut after a newline (else a space) where there is one.

    :param text: one document
    """
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
class DomainReport:
    """What reading a domain found besides text: files not read and why, binary files, undecodable bytes, cut documents."""

    skipped_files: dict[str, str] = field(default_factory=dict)  # name -> why it is not read
    binary_files: list[str] = field(default_factory=list)
    undecodable_bytes: int = 0
    undecodable_files: dict[str, int] = field(default_factory=dict)  # the first _LISTED of them
    undecodable_count: int = 0  # files (JSONL: lines) with undecodable bytes
    cut_documents: int = 0

    def undecodable(self, name: str, n: int) -> None:
        """Count ``n`` undecodable bytes in file (or JSONL line) ``name``; the first _LISTED are named.

        :param name: the file, or ``file:line``
        :param n: how many bytes did not decode
        """
        self.undecodable_bytes += n
        self.undecodable_count += 1
        if len(self.undecodable_files) < _LISTED:
            self.undecodable_files[name] = n

    def as_manifest(self) -> dict:
        """The report as the manifest keeps it: counts, and the first _LISTED names of each kind."""
        skipped = dict(list(self.skipped_files.items())[:_LISTED])
        return {
            "skipped_files": {"count": len(self.skipped_files), "files": skipped},
            "binary_files": {"count": len(self.binary_files), "files": self.binary_files[:_LISTED]},
            "undecodable_bytes": self.undecodable_bytes,
            "undecodable_files": {"count": self.undecodable_count, "files": self.undecodable_files},
            "cut_documents": self.cut_documents,
        }

    def log_lines(self, domain: str, encoding: str) -> list[str]:
        """What reading ``domain`` skipped or could not decode, for the build's log, each with its fix.

        :param domain: the domain's name, which starts each line
        :param encoding: the ``data.encoding`` the domain was read with (the hint for undecodable bytes names it)
        """
        lines = []
        if self.skipped_files:
            shown = ", ".join(f"{n} ({why})" for n, why in list(self.skipped_files.items())[:_LISTED])
            lines.append(
                f"  {domain}: skipped {len(self.skipped_files)} file(s): {shown}{' ...' if len(self.skipped_files) > _LISTED else ''}"
                f" (read as text: {', '.join(s or 'no suffix' for s in TEXT_SUFFIXES)}, in any case: rename a text file "
                "to .txt to read it)"
            )
        if self.binary_files:
            lines.append(
                f"  {domain}: skipped {len(self.binary_files)} binary file(s): {', '.join(self.binary_files[:5])}"
                + (" ..." if len(self.binary_files) > 5 else "")
                + f" (if they are text in another encoding than {encoding}, set data.encoding)"
            )
        if self.undecodable_bytes:
            hint = (
                "set data.encoding=latin-1 (or data.encoding=auto: UTF-8, else cp1252, per file)"
                if _is_utf8_name(encoding)
                else f"they are not {encoding} either"
            )
            files = ", ".join(f"{f} ({n} bytes)" for f, n in list(self.undecodable_files.items())[:5])
            lines.append(
                f"  warning: {domain}: {self.undecodable_bytes} bytes in {self.undecodable_count} file(s) are not {encoding} "
                f"and became U+FFFD: {files}{' ...' if self.undecodable_count > 5 else ''}. If they are Latin-1, {hint}."
            )
        return lines


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

    :param path: the file (``.zst``: zstd-compressed)
    :param domain_fields: dotted paths to a record's domain name, the first present wins
    :param text_field: the record's text field
    :param encoding: ``data.encoding``
    :param reports: per domain, undecodable lines are counted here; None: not reported
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
            reports.setdefault(str(domain), DomainReport()).undecodable(
                f"{path.name}:{lineno}", _undecodable[0] - before
            )
        yield str(domain), text


def text_dir_domains(root: Path) -> list[str]:
    """A text directory's domains: its sub-directories, less those starting with ``_`` or ``.``.

    :param root: the corpus directory
    """
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def domain_files(root: Path, domain: str) -> tuple[list[Path], dict[str, str]]:
    """A domain directory's text files (by suffix, in any case), and every other file with why it is not read.

    :param root: the corpus directory
    :param domain: the domain's sub-directory
    """
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
    root: Path, domain: str, seed: int = 0, encoding: str = "utf-8", report: DomainReport | None = None
) -> Iterator[str]:
    """A domain directory's text files (any depth), streamed in pieces of at most MAX_PIECE_CHARS.

    Files of other suffixes and files that look binary are skipped, and bytes that do not decode
    are counted (``report``). The order is a seeded shuffle, so that the end of a domain's token
    stream is a random sample of its files (a domain split by position, too few documents).

    :param root: the corpus directory
    :param domain: the domain's sub-directory
    :param seed: ``data.seed``, which orders the files
    :param encoding: ``data.encoding`` (``auto``: UTF-8 for a file that decodes as such, else cp1252)
    :param report: what is skipped and what does not decode is added here; None: not reported
    """
    files, skipped = domain_files(root, domain)
    if report is not None:
        report.skipped_files = skipped
    random.Random(f"{seed}:{domain}").shuffle(files)
    for path in files:
        try:
            yield from _file_pieces(path, str(path.relative_to(root / domain)), encoding, report)
        except OSError as exc:  # not one from the consumer: a generator only sees its own
            raise _unreadable(path, exc) from None


def _file_pieces(path: Path, name: str, encoding: str, report: DomainReport | None) -> Iterator[str]:
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
            *done, buf = cut_document(buf)
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
