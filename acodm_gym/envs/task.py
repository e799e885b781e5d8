"""What a run is scored on: the task metric, its reference scores, and the normalised score.

The metric is the geometric mean of the per-domain perplexities over the task's ``eval_domains``,
i.e. exp of their mean loss. The arithmetic mean (the paper's) is reported beside it, but it is
dominated by the worst domain and moves far more between seeds.

The normalised score follows D4RL: 100 × (natural − method) / (natural − best static) on the test
split, where natural and best static are the task's reference scores (``acodm-gym reference``). 0 is
the natural mixture a practitioner starts from, 100 the best static mixture a budgeted search found;
an online method may score above 100.

A reference file records the budget of the search behind its best static mixture (``search``: runs, steps,
machine seconds, sampler, pruner, code version), and every score is shown with it (``search_budget``), as
leaderboards give the compute behind a number: a file without it is refused, with the command that
recomputes it. A new reference file rescores every run from its stored test metric; nothing is rerun.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import Config, TaskConfig, task_references_file
from ..errors import ConfigError

REFERENCE_KINDS = ("natural", "uniform", "best_static")
# What a reference file's ``search`` block must hold (None where a legacy search did not record it).
BUDGET_KEYS = ("method", "runs", "steps", "machine_seconds", "sampler", "pruner", "code")


class TaskMetric:
    """The task metric over ``eval_domains`` (every domain when None), from per-domain mean losses.

    :param domains: the corpus' domains, in the order of the loss vectors
    :param eval_domains: the domains the metric averages (planted junk is trained on, not scored)
    """

    def __init__(self, domains: Sequence[str], eval_domains: Sequence[str] | None = None):
        self.domains = list(domains)
        self.eval_domains = list(eval_domains) if eval_domains else list(domains)
        unknown = [d for d in self.eval_domains if d not in self.domains]
        if unknown:
            raise ConfigError(
                f"task.eval_domains names {unknown}, not domains of the corpus ({', '.join(self.domains)}): "
                "fix the task's eval_domains or the corpus."
            )
        self.index = np.array([self.domains.index(d) for d in self.eval_domains])
        self.mask = np.isin(np.arange(len(self.domains)), self.index)  # k booleans: the eval domains

    def value(self, losses: np.ndarray) -> float:
        """Geometric mean of the eval domains' perplexities: exp(mean loss)."""
        return float(np.exp(np.mean(np.asarray(losses, dtype=np.float64)[self.index])))

    def arithmetic(self, losses: np.ndarray) -> float:
        """The paper's arithmetic mean of the eval domains' perplexities."""
        return float(np.mean(np.exp(np.asarray(losses, dtype=np.float64)[self.index])))


def references_path(task: TaskConfig) -> Path | None:
    """The task's reference file: ``task.references``, else the one shipped with the task (None if neither,
    or for ``task.references: none``)."""
    if task.references == "none":
        return None
    if task.references:
        return Path(task.references).expanduser()
    return task_references_file(task.name) if task.name else None


def read_references(task: TaskConfig) -> dict[str, Any] | None:
    """The task's reference file as it is, unchecked (None where there is none): for what only reads it
    back, such as a report. A run checks it against its corpus with ``load_references``."""
    path = references_path(task)
    return _parse_references(path, task) if path is not None and path.exists() else None


def recompute_command(path: Path, task: TaskConfig, overrides: Any = ()) -> str:
    """The command that writes ``path`` again: a task's shipped file with ``--ship``, another one into its
    folder (``--out``, as ``references.json``), with the config overrides the file records."""
    where = "--ship" if path == task_references_file(task.name or "") else f"--out {path.parent}"
    extra = [o for o in overrides if isinstance(o, str)] if isinstance(overrides, list) else []
    return " ".join(["acodm-gym reference --task", task.name or "NAME", where, *extra])


def _parse_references(path: Path, task: TaskConfig) -> dict[str, Any]:
    """A reference file's JSON with what every reader takes from it, else one line naming the file: a
    truncated, empty or binary ``task.references`` fails here as a shipped file would, and so does one
    without the budget of its search (``BUDGET_KEYS``)."""
    fix = f"recompute them: acodm-gym reference --task {task.name or 'NAME'}"
    try:
        refs = json.loads(path.read_text(encoding="utf-8"))
        kinds = refs["references"]
        if not all(isinstance(kinds[k], dict) for k in ("natural", "best_static")):
            raise TypeError("references.natural and references.best_static must be objects")
        weights = kinds["best_static"].get("weights")
        if weights is not None and len(weights) != len(refs["domains"]):
            raise ValueError(f"{len(weights)} best-static weights for {len(refs['domains'])} domains")
    except FileNotFoundError:
        raise ConfigError(
            f"task.references={path} does not exist: give the path of a reference file, or {fix}."
        ) from None
    except OSError as exc:
        raise ConfigError(f"Reference file {path} cannot be read ({exc.strerror}): {fix}.") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON and UTF-8 errors are ValueErrors
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        raise ConfigError(f"Reference file {path} is not a valid reference file ({why}): {fix}.") from None
    budget = refs.get("search")
    if not isinstance(budget, dict) or not all(k in budget for k in BUDGET_KEYS):
        raise ConfigError(
            f"Reference file {path} does not record the budget of its search (a 'search' block with "
            f"{', '.join(BUDGET_KEYS)}), and a score is shown with the budget behind it: recompute it with "
            f"{recompute_command(path, task, refs.get('overrides'))}"
        )
    return refs


def final_eval_sequences(cfg: Config, domain: str) -> int:
    """Sequences of ``domain`` the end-of-episode evaluation reads: ``task.eval_tokens`` for a domain of the
    metric (``task.eval_domains``), else ``env.eval_batches`` batches, the size of the evaluations during
    training (the other domains are shown, not scored)."""
    scored = not cfg.task.eval_domains or domain in cfg.task.eval_domains
    if cfg.task.eval_tokens and scored:
        return cfg.task.eval_tokens // cfg.model.seq_len
    return cfg.env.eval_batches * cfg.train.batch_size


def corpus_signature(corpus, cfg: Config) -> dict[str, Any]:
    """What reference scores depend on: the domains, the tokenizer (its file's digest) and the test set the
    final evaluation reads (the digest of its tokens, and how many there are per domain)."""
    digest = hashlib.sha256((Path(corpus.root) / corpus.manifest["tokenizer"]).read_bytes()).hexdigest()[:16]
    test, tokens = hashlib.sha256(), {}
    for d in corpus.domains:
        blocks = corpus.blocks(d, "test", cfg.model.seq_len, final_eval_sequences(cfg, d))
        test.update(blocks.tobytes())
        tokens[d] = int(blocks.size)
    return {
        "domains": list(corpus.domains),
        "tokenizer": digest,
        "test_set": test.hexdigest()[:16],
        "test_tokens": tokens,
    }


def load_references(cfg: Config, corpus) -> dict[str, Any] | None:
    """The task's references (``cfg.task``), checked against ``corpus``; None when the task has none yet.

    A file named by ``task.references`` must exist; references of another corpus or test set (other
    domains, tokenizer, held-out text or evaluation size) are refused with the command that recomputes
    them. The file shipped with a task was
    computed on this project's default corpus: where that corpus builds differently (another Python's
    standard library, other Debian packages), the task still runs, with a warning and no score.
    """
    task = cfg.task
    path = references_path(task)
    if path is None or (not path.exists() and not task.references):
        return None
    fix = f"recompute them: acodm-gym reference --task {task.name or 'NAME'}"
    refs = _parse_references(path, task)
    signature, theirs = corpus_signature(corpus, cfg), refs.get("corpus", {})
    if theirs != signature:
        what = ("domains", "tokenizer", "test_set")
        problem = (
            f"Reference file {path} was computed on another corpus or test set "
            f"({', '.join(f'{k} {theirs.get(k)}' for k in what)}, {_tokens(theirs)}); this run's has "
            f"{', '.join(f'{k} {signature[k]}' for k in what)}, {_tokens(signature)}"
        )
        if task.references:
            raise ConfigError(f"{problem}: {fix}.")
        warnings.warn(f"{problem}. No normalised score is given; to score runs, {fix} --ship.", stacklevel=2)
        return None
    return refs


def _tokens(signature: dict) -> str:
    tokens = signature.get("test_tokens") or {}
    return f"{min(tokens.values())}–{max(tokens.values())} test tokens per domain" if tokens else "test tokens unknown"


def normalised_score(test_metric: float, references: dict[str, Any] | None) -> float | None:
    """100 × (natural − method) / (natural − best static), from the references' mean test metrics."""
    if references is None:
        return None
    natural = float(np.mean(references["references"]["natural"]["test_metric"]))
    best = float(np.mean(references["references"]["best_static"]["test_metric"]))
    if natural == best:
        return None
    return 100.0 * (natural - float(test_metric)) / (natural - best)


def search_budget(search: dict[str, Any] | None) -> str | None:
    """One line giving the budget of the search behind the best static mixture (score 100), shown beside
    every score: ``search`` is a reference file's ``search`` block (None: no references, no line)."""
    if search is None:
        return None
    seconds = search["machine_seconds"]
    hours = "machine time not recorded" if seconds is None else f"{seconds / 3600:.1f} machine-hours"
    return f"best static from {search['method']}: {search['runs']} runs, {search['steps']:,} steps, {hours}"
