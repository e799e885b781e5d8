"""A built corpus, opened: per-domain, per-split token arrays (numpy memmap), checked against the manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import CorpusError
from . import tokenizer as toklib
from .splits import SPLITS

MANIFEST = "manifest.json"
VERIFY_ON_OPEN_BYTES = 1 << 28  # corpora up to this size are checksummed whenever they open (~1.5 s at 170 MB/s)


def read_manifest(path: Path) -> dict:
    """A corpus' manifest; a damaged one is an error that says to rebuild.

    :param path: the ``manifest.json``
    """
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


def checksum(path: Path) -> str:
    """The checksum of a token file that the manifest records, read in chunks.

    :param path: the token file
    """
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | Path) -> str | None:
    """A short digest of a file (the tokenizer's), or None where it cannot be read.

    :param path: the file
    """
    try:
        return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()[:16]
    except OSError:
        return None  # reported when the tokenizer is loaded


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
        self.manifest = read_manifest(manifest_path)
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
        if want is not None and file_digest(path) != want:
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
            if checksum(path) != want:
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
