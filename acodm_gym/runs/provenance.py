"""What a result was made from: the code version and the corpus, recorded in every run's summary.json.

A sweep reuses a finished run only when its config, its code version and its corpus are this run's
(``reuse.train_or_reuse``): a run of other code or other data is stale, and is trained again.

* The **code version** is a digest of the package's own files (``acodm_gym/**/*.py`` and its shipped
  configs, without the task reference scores, which only rescore a run) plus the versions of torch,
  transformers and stable-baselines3. The git commit, and whether the package differs from it, are
  recorded beside it to say where the code came from, but are not compared: a commit that changes only
  the README or the benchmarks does not make a record stale.
* The **corpus fingerprint** is the one a checkpoint checks (``checkpoint.corpus_fingerprint``): the built
  corpus's token files (their checksums and lengths in its manifest) and its tokenizer file.

Runs recorded before code versions were kept carry neither; they are stale (``stale_reasons``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import subprocess
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
LIBRARIES = ("torch", "transformers", "stable-baselines3")
COMPARED = ("source", *LIBRARIES)  # what must match for a run to be reused; the commit only says where it came from
UNKNOWN = "unknown (recorded before runs kept their code version)"


def _package_files() -> list[Path]:
    """The files whose bytes make the code version: the modules and the shipped configs, not reference scores."""
    files = [*PACKAGE.rglob("*.py"), *PACKAGE.glob("configs/**/*.yaml"), *PACKAGE.glob("configs/**/*.json")]
    return sorted(p for p in files if not p.name.endswith(".references.json") and "__pycache__" not in p.parts)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def code_version() -> dict[str, str | bool | None]:
    """This process's code version (computed once: the modules in memory are those imported at the start)."""
    digest = hashlib.sha256()
    for path in _package_files():
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    commit = _git("rev-parse", "HEAD")
    dirty = None if commit is None else bool(_git("status", "--porcelain", "--", str(PACKAGE)))
    version = {"source": digest.hexdigest()[:16], "commit": commit, "package_modified": dirty}
    for lib in LIBRARIES:
        try:
            version[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            version[lib] = None
    return version


def describe(code: dict | None) -> str:
    """One line naming a code version."""
    if not code:
        return UNKNOWN
    commit = code.get("commit")
    where = f"commit {commit[:10]}{' + changes' if code.get('package_modified') else ''}" if commit else "no git commit"
    libs = ", ".join(f"{lib} {code.get(lib)}" for lib in LIBRARIES)
    return f"source {code.get('source')} ({where}; {libs})"


def stale_reasons(summary: dict, corpus: str | None = None, code: dict | None = None) -> list[str]:
    """Why a finished run's summary is not a result of this code (``code``: this process's) and ``corpus``
    (None: not checked); empty when it is."""
    code = code or code_version()
    theirs = summary.get("code")
    if not theirs:
        reasons = [f"its code version is {UNKNOWN}"]
    else:
        reasons = [f"{k} {theirs.get(k)} (now {code.get(k)})" for k in COMPARED if theirs.get(k) != code.get(k)]
    if corpus is not None and summary.get("corpus") != corpus:
        reasons.append(f"corpus {summary.get('corpus') or 'unknown'} (now {corpus})")
    return reasons


def summarise(summaries: list[dict]) -> dict:
    """The code versions and corpora a set of runs came from, with how many runs each, and this code's."""
    code, corpora = Counter(describe(s.get("code")) for s in summaries), Counter(s.get("corpus") for s in summaries)
    return {
        "code_versions": dict(code),
        "corpora": {str(k or "unknown"): n for k, n in corpora.items()},
        "this_code": describe(code_version()),
    }


def lines(made: dict) -> list[str]:
    """Markdown lines saying what ``summarise`` found, and whether it is one code version (this one) and one corpus."""
    code, corpora, now = made["code_versions"], made["corpora"], made["this_code"]
    out = [
        "Code version of the runs: "
        + "; ".join(f"{v} ({n} runs)" for v, n in code.items())
        + ". "
        + ("This code is the same." if list(code) == [now] else f"This code: {now}; runs of another version are stale.")
    ]
    if len(corpora) > 1:
        out.append("Corpora: " + "; ".join(f"{k} ({n} runs)" for k, n in corpora.items()) + ": NOT one corpus.")
    else:
        out.append(f"Corpus: {next(iter(corpora), 'none')} (every run).")
    return [" ".join(out), ""]
