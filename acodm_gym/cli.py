"""Command line: ``acodm-gym`` (also ``python train_env.py``).

Every sub-command takes ``--config`` (a YAML path or a name under configs/) and any number of
``section.key=value`` overrides anywhere on the line, e.g. ``acodm-gym train train.total_steps=200 --agent uniform``.

Heavy modules (torch, transformers, SB3, the corpus) are imported only once the config has loaded, so
``--help`` and a config error answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
import threading
import time

from .config import METHODS, PROXY_METHOD, TEST_SEEDS, LearnConfig, check_methods, check_search, load_config
from .errors import ConfigError, InputError, RunFailure
from .registry import AGENTS, TASKS


def _config(args, extra: dict | None = None):
    overrides = list(args.overrides)
    for key, value in (extra or {}).items():
        if value is not None:
            overrides.append(f"{key}={value}")
    task = getattr(args, "task", None)
    return load_config(args.config or (None if task else "default"), overrides, task=task)


def cmd_data(args) -> int:
    from .data.corpus import open_corpus

    cfg = _config(args)
    corpus = open_corpus(cfg.data)
    print(f"corpus: {corpus.root}")
    if args.verify:
        started = time.perf_counter()
        corpus.verify()
        size = sum(p.stat().st_size for p in corpus.root.glob("*/*.bin"))
        print(
            f"verified: every token file matches its checksum ({size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s)"
        )
    print(f"{'domain':<14}{'MB':>8}{'docs':>8}{'train tok':>12}{'val tok':>10}{'test tok':>10}  source (license)")
    for d in corpus.manifest["domains"]:
        t = d["tokens"]
        print(
            f"{d['name']:<14}{d['bytes'] / 1e6:8.2f}{d['documents']:8d}{t['train']:12d}{t['validation']:10d}{t['test']:10d}"
            f"  {d.get('source', '')} ({d.get('license', 'unknown')})"
        )
    return 0


def cmd_train(args) -> int:
    extra = {"agent.name": args.agent, "run.seed": args.seed, "run.name": args.name, "run.out_dir": args.out_dir}
    if getattr(args, "resume", None):
        # The checkpoint's config (or --config) plus the overrides; the run directory is RUN_DIR.
        overrides = list(args.overrides) + [
            f"{k}={v}" for k, v in extra.items() if v is not None and k in ("agent.name", "run.seed")
        ]
        allowed = [key for item in args.allow_change or () for key in item.split(",") if key]
        from .runs.runner import resume

        result = resume(args.resume, overrides, config=args.config, allow_changes=allowed)
    else:
        if getattr(args, "allow_change", None):
            raise ConfigError("--allow-change only applies with --resume RUN_DIR.")
        cfg = _config(args, extra)  # a config error is reported before torch is imported
        from .runs.runner import train

        result = train(cfg, overwrite=args.overwrite)
    if not result.summary:  # a rank other than 0 of a multi-rank run: rank 0 reports
        return 0
    s = result.summary
    if "test_ppl_avg" in s:
        print(f"final average validation perplexity {s['final_val_ppl_avg']:.2f}, test {s['test_ppl_avg']:.2f}")
    else:
        print("a training episode (env.episode=training): no final evaluation")
    print(f"outputs: {result.run_dir.resolve()}")
    return 0


def cmd_proxy(args) -> int:
    """Proxy stage: learn AC-ODM on the small proxy model and save its actor."""
    cfg = _config(args, {"run.seed": args.seed, "run.name": args.name, "run.out_dir": args.out_dir})
    from .runs.compare import proxy_stage
    from .runs.runner import run_dir_for

    actor = proxy_stage(cfg, run_dir_for(cfg).name, overwrite=args.overwrite)
    print(f"actor: {actor.resolve()}")
    print(f"use it: acodm-gym transfer --actor {actor}")
    return 0


def cmd_learn(args) -> int:
    """Train one agent over N training episodes, freeze it, score it on the test seeds (runs/learn.py)."""
    cfg = _config(args, {"agent.name": args.agent, "run.out_dir": args.out_dir})
    from .runs.learn import learn

    name = args.name or f"learn-{cfg.task.name or 'default'}-{cfg.agent.name}"
    curve = learn(
        cfg,
        args.episodes,
        f"{cfg.run.out_dir}/{name}",
        [] if args.train_only else args.test_seeds,
        args.train_seed,
        args.eval_interval,
        overwrite=args.overwrite,
    )
    last = curve["test"][-1] if curve["test"] else None
    if last is not None:
        score = "n/a" if last["mean_score"] is None else f"{last['mean_score']:.1f}"
        print(
            f"after {last['episodes']} episodes, frozen: test metric {last['mean_test_metric']:.2f}, score {score} "
            f"(test seeds {last['seeds']})"
        )
    print(f"learning curve: {cfg.run.out_dir}/{name}/curve.json")
    return 0


def cmd_dataset(args) -> int:
    """Build or extend a task's offline dataset (Minari) of one behaviour policy (runs/offline.py)."""
    cfg = _config(args, {"run.out_dir": args.out_dir})
    from .runs.offline import build

    manifest = build(cfg, args.behaviour, args.episodes, args.first_seed, args.manifest, author_email=args.author_email)
    print(
        f"{manifest['dataset_id']}: {manifest['total_episodes']} episodes, {manifest['total_steps']} steps "
        f"(minari.load_dataset('{manifest['dataset_id']}'))"
    )
    return 0


def cmd_transfer(args) -> int:
    """Target stage: a frozen actor steers a (larger) target model; no reward computation."""
    args.agent = "frozen"
    args.overrides = [*args.overrides, f"agent.options={{path: {json.dumps(str(args.actor))}}}"]
    return cmd_train(args)


def cmd_compare(args) -> int:
    cfg = _config(args, {"run.out_dir": args.out_dir})
    methods = args.methods.split(",") if args.methods else list(METHODS)
    check_methods(methods)  # before torch is imported
    check_search(args.seeds)
    from .runs.compare import compare

    # A task's sweep goes beside its references, so their natural and uniform runs are reused.
    out = args.out or (f"{cfg.run.out_dir}/tasks/{cfg.task.name}" if cfg.task.name else None)
    out = compare(cfg, seeds=args.seeds, methods=methods, out=out, overwrite=args.overwrite, keep_stale=args.keep_stale)
    print((out / "report.md").read_text())
    print(f"outputs: {out.resolve()}")
    return 0


def cmd_reference(args) -> int:
    """Reference scores of a task: natural, uniform and the best static mixture of a budgeted search."""
    load_config(None, args.overrides, task=args.task)  # a bad task or override is reported before torch is imported
    check_search(args.seeds, args.trials, args.finalists, args.search_steps)
    import numpy as np

    from .envs.task import search_budget
    from .runs.reference import references

    result = references(
        args.task,
        args.overrides,
        out=args.out,
        seeds=args.seeds,
        trials=args.trials,
        finalists=args.finalists,
        search_steps=args.search_steps,
        ship=args.ship,
        command="acodm-gym " + " ".join(sys.argv[1:]),
    )
    for kind, ref in result["references"].items():
        print(
            f"{kind:<12} val {np.mean(ref['val_metric']):8.2f}  test {np.mean(ref['test_metric']):8.2f} ± "
            f"{np.std(ref['test_metric'], ddof=1) if len(ref['test_metric']) > 1 else 0:.2f}  weights "
            + "/".join(f"{w:.2f}" for w in ref["weights"])
        )
    d = result["discrimination"]["test"]
    verdict = "discriminates" if d["discriminates"] else "does NOT discriminate"
    print(
        f"best static beats natural by {d['gap']:.2f} = {d['gap_over_std'] or float('nan'):.1f} pooled seed std on test: {verdict}"
    )
    print(search_budget(result["search"]))
    return 0


def cmd_reproduce(args) -> int:
    """Rerun a sample of run records and compare their test metric: exit 0 when all reproduce, 3 when not."""
    from .runs.reproduce import reproduce, table

    rows = reproduce(args.records, args.out, args.runs)
    print(table(rows))
    return 0 if all(r["match"] for r in rows) else 3


def cmd_report(args) -> int:
    from .runs.compare import report

    path = report(args.dir)
    print(path.read_text())
    print(f"report: {path.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Every sub-command with its arguments (the options of each are added by the ``_add_*`` helpers below)."""
    parser = argparse.ArgumentParser(
        prog="acodm-gym", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # The deepspeed launcher passes --local_rank=N before the sub-command (LOCAL_RANK in the environment says the same).
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    p = _common(sub.add_parser("data", help="build (first time) and describe the corpus"))
    p.add_argument("--verify", action="store_true", help="check every token file against its checksum in the manifest")
    p.set_defaults(func=cmd_data)
    _add_train(_run_options(_common(sub.add_parser("train", help="one pretraining run driven by an agent"))))
    proxy = sub.add_parser("proxy", help="learn AC-ODM on the proxy model and save the actor")
    _run_options(_common(proxy)).set_defaults(func=cmd_proxy)
    _add_learn(_common(sub.add_parser("learn", help="train one agent over N training episodes, then score it frozen")))
    _add_dataset(_common(sub.add_parser("dataset", help="build or extend a task's offline dataset (Minari)")))
    p = _run_options(_common(sub.add_parser("transfer", help="a frozen actor steers the target model")))
    p.add_argument("--actor", required=True, help="agent.pt saved by `proxy` (or by an acodm run)")
    p.set_defaults(func=cmd_transfer)
    _add_compare(_common(sub.add_parser("compare", help="all methods on one corpus, budget and seeds, then report.md")))
    _add_compare(_common(sub.add_parser("run", help="the main job: compare on the embedded default")))
    help_ = "reference scores of a task: natural, uniform, best static mixture of an Optuna search"
    _add_reference(sub.add_parser("reference", help=help_))
    _add_reproduce(
        sub.add_parser("reproduce", help="rerun a sample of run records and compare their test metric to 1e-9")
    )
    p = sub.add_parser("report", help="rewrite report.md and plots of a compare directory")
    p.add_argument("dir")
    p.set_defaults(func=cmd_report)
    return parser


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The config, the task and the overrides, as every command that builds a config takes them."""
    p.add_argument("--config", default=None, help="YAML config path or name under configs/ (default: default)")
    p.add_argument("--task", default=None, help="benchmark task (configs/tasks/): " + ", ".join(TASKS.names()))
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    return p


def _run_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Where one run goes, its seed, and whether it may replace an earlier run."""
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--name", default=None, help="run directory name under run.out_dir")
    p.add_argument("--out-dir", default=None, help="where run directories go (default: runs/)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run directory holding an earlier run's checkpoints or results (default: refuse; see --resume)",
    )
    return p


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", default=None, help="agent name: " + ", ".join(sorted(AGENTS.names())))
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue this run directory from its latest complete checkpoint (with its saved config plus the overrides)",
    )
    p.add_argument(
        "--allow-change",
        metavar="KEY[,KEY]",
        action="append",
        default=None,
        help="with --resume: accept changed config keys (or sections) that would otherwise be refused, e.g. "
        "--allow-change train.lr train.lr=1e-3",
    )
    p.set_defaults(func=cmd_train)


def _add_learn(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", required=True, help="agent to train: " + ", ".join(sorted(AGENTS.names())))
    p.add_argument("--episodes", type=int, required=True, help="training episodes (a fresh model each)")
    p.add_argument("--test-seeds", type=int, nargs="+", default=list(TEST_SEEDS), help="model seeds it is scored on")
    p.add_argument(
        "--train-only",
        action="store_true",
        help="train and write the learning curve (validation proxy) only, no test seed: choose on it, then score",
    )
    first = LearnConfig.first_seed
    p.add_argument("--train-seed", type=int, default=first, help="model seed of the first training episode (then +1)")
    p.add_argument(
        "--eval-interval",
        type=int,
        default=None,
        help="steps between the training episodes' validations (default: once, at the last step; 0: none)",
    )
    p.add_argument("--name", default=None, help="directory under run.out_dir (default: learn-<task>-<agent>)")
    p.add_argument("--out-dir", default=None, help="where it goes (default: runs/)")
    p.add_argument("--overwrite", action="store_true", help="train every episode from scratch")
    p.set_defaults(func=cmd_learn)


def _add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--behaviour",
        required=True,
        help="a registered agent (e.g. uniform, natural, odm, doge); dirichlet-uniform or dirichlet-natural (random "
        "static mixtures); drift-uniform or drift-natural (random slowly drifting schedules)",
    )
    p.add_argument("--episodes", type=int, required=True, help="episodes in the dataset (more extend it)")
    p.add_argument("--first-seed", type=int, default=2000, help="model seed of the first episode (then +1 each)")
    p.add_argument("--manifest", default=None, help="where the manifest goes (default: beside the episodes)")
    p.add_argument("--out-dir", default=None, help="where the episodes' run directories go (default: runs/)")
    p.add_argument("--author-email", default=None, help="the dataset's contact, in its Minari metadata")
    p.set_defaults(func=cmd_dataset)


def _add_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated methods (default: {','.join(METHODS)}; any agent, {PROXY_METHOD}, or <agent>-learned "
        f"(trained over learn.episodes training episodes, then frozen): {', '.join(AGENTS.names())})",
    )
    p.add_argument("--out", default=None, help="output directory (default: <run.out_dir>/compare)")
    p.add_argument("--out-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="run every method from scratch (default: reuse finished runs, resume stopped ones)",
    )
    p.add_argument(
        "--keep-stale",
        action="store_true",
        help="reuse finished runs of other code versions or corpora (the report names their version) "
        "instead of training them again",
    )
    p.set_defaults(func=cmd_compare)


def _add_reference(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="benchmark task (configs/tasks/)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the final reference runs")
    p.add_argument(
        "--trials",
        type=int,
        default=40,
        help="short runs of the Optuna search, complete or pruned (the structured candidates first; more continue it)",
    )
    p.add_argument(
        "--finalists",
        type=int,
        default=3,
        help="best search mixtures rerun at the task's budget with every seed, beside natural and uniform",
    )
    p.add_argument("--search-steps", type=int, default=200, help="steps of each search run")
    p.add_argument("--out", default=None, help="output directory (default: <run.out_dir>/tasks/<task>)")
    p.add_argument(
        "--ship",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH",
        help="also write the references to PATH (no PATH: the task's own <task>.references.json, in a source checkout only)",
    )
    p.set_defaults(func=cmd_reference)


def _add_reproduce(p: argparse.ArgumentParser) -> None:
    p.add_argument("records", help="a records directory (<run>/ or <task>/<run>/), e.g. benchmarks/results/tasks/runs")
    p.add_argument(
        "--runs",
        nargs="+",
        default=(),
        metavar="GLOB",
        help="records to rerun, as <task>/<run> globs, e.g. 'noisy/odm-seed*' (default: one per method and task)",
    )
    p.add_argument("--out", default="runs/reproduce", help="where the reruns go (default: runs/reproduce)")
    p.set_defaults(func=cmd_reproduce)


# ``section.key=value`` (also ``section.sub.key=value``): an override wherever it stands on the line
OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the line, taking ``section.key=value`` overrides wherever they stand. They are taken out
    first: argparse alone takes one positional run of them, refuses the rest, and lets a list option
    (``--seeds 0 1 train.lr=1e-3``) swallow the ones that follow it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [item for item in argv if OVERRIDE.match(item)]
    args = parser.parse_args([item for item in argv if not OVERRIDE.match(item)])
    stray = [item for item in getattr(args, "overrides", []) if not OVERRIDE.match(item)]
    if stray or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or overrides)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    return args


@contextlib.contextmanager
def _ctrl_c_stops():
    """Ctrl-C (SIGINT) raises KeyboardInterrupt here even if this process started with SIGINT ignored.

    A shell without job control (a script's ``cmd &``, ``make test &``, some CI runners) starts
    background commands with SIGINT ignored, and Python then installs no handler: a Ctrl-C or
    ``kill -INT`` was dropped and the run went on to the end, exit 0. The previous disposition
    comes back on return (``main`` may be called from Python).
    """
    if (
        signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    try:
        with _ctrl_c_stops():
            return args.func(args)
    except InputError as exc:  # bad input, a refused resume: fix and rerun (any other error is a bug: its traceback)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (
        RunFailure
    ) as exc:  # too many non-finite steps, a failed checkpoint or output write: the last checkpoint is usable
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C: one line (the runner says where it stopped and how to resume)
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
