"""The command line answers --help and config errors before the heavy modules load, and takes
overrides anywhere on the line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from acodm_gym.cli import _config, build_parser, parse_args
from acodm_gym.registry import AGENTS

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "stable_baselines3", "acodm_gym.data.corpus", "acodm_gym.agents")

# Runs the CLI in a fresh interpreter and reports its exit code, output and which heavy modules it imported.
_PROBE = """
import contextlib, io, json, sys
from acodm_gym.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"code": code, "out": out.getvalue(), "err": err.getvalue(), "heavy": heavy}}))
"""


def _probe(*argv: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_agent_names_of_the_cli_are_the_registry():
    from acodm_gym.agents import agent_class

    names = AGENTS.names()
    assert len(names) == len(set(names)) and all(agent_class(name).name == name for name in names)


@pytest.mark.parametrize(
    "argv, code, text",
    [
        (["report", "--help"], 0, "usage: acodm-gym report"),
        (["train", "--help"], 0, "natural"),
        (["train", "--agent", "natural", "train.lrr=1e-3"], 2, "Did you mean 'train.lr'?"),
        (["train", "--agent", "nope"], 2, "agent.name='nope' is not supported; choose one of natural"),
        (["compare", "--help"], 0, "vector-sac"),
        (["compare", "--methods", "natural,odmm"], 2, "Unknown compare method(s) ['odmm']: choose from natural"),
    ],
)
def test_help_and_config_errors_come_before_torch_and_the_corpus(argv, code, text):
    result = _probe(*argv)
    assert result["code"] == code and text in result["out"] + result["err"], result
    assert result["heavy"] == [], f"{argv} imported {result['heavy']}"


def test_overrides_are_accepted_anywhere_on_the_line():
    argv = ["train", "train.total_steps=60", "--name", "x", "run.progress=false", "--seed", "3", "env.eval_interval=7"]
    args = parse_args(build_parser(), argv)
    cfg = _config(args, {"run.name": args.name, "run.seed": args.seed})
    assert (cfg.train.total_steps, cfg.run.progress, cfg.env.eval_interval, cfg.run.name, cfg.run.seed) == (
        60,
        False,
        7,
        "x",
        3,
    )
    # after a list option: the seeds stop at the first override
    args = parse_args(build_parser(), ["compare", "--seeds", "0", "1", "train.threads=1", "--methods", "odm"])
    assert (args.seeds, args.overrides, args.methods) == ([0, 1], ["train.threads=1"], "odm")
    for argv in (["train", "a.b=1", "--name", "x", "stray"], ["report", "dir", "train.lr=1"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(build_parser(), argv)
        assert exc.value.code == 2


def test_only_the_projects_own_errors_are_answered_with_an_exit_code(monkeypatch, capsys):
    """Bad input (an InputError) exits 2, a failed run (a RunFailure) 1; any other error is a bug and keeps its traceback."""
    from acodm_gym import cli
    from acodm_gym.errors import CorpusError, NonFiniteLossError

    def command_raising(exc):
        def command(args):
            raise exc

        return command

    monkeypatch.setattr(cli, "cmd_report", command_raising(CorpusError("the corpus is broken")))
    assert cli.main(["report", "somewhere"]) == 2 and "error: the corpus is broken" in capsys.readouterr().err
    monkeypatch.setattr(cli, "cmd_report", command_raising(NonFiniteLossError("3 consecutive steps")))
    assert cli.main(["report", "somewhere"]) == 1
    monkeypatch.setattr(cli, "cmd_report", command_raising(ValueError("a bug inside")))
    with pytest.raises(ValueError, match="a bug inside"):
        cli.main(["report", "somewhere"])


@pytest.mark.parametrize(
    "argv, text",
    [
        (["train", "--seed", "-1"], "run.seed=-1"),
        (["train", "run.seed=4294967296"], "run.seed=4294967296"),
        (["compare", "--seeds", "0", "-3"], "--seeds -3"),
        (["reference", "--task", "default", "--seeds", "-1"], "--seeds -1"),
        (["reference", "--task", "default", "--finalists", "-1"], "--finalists -1"),
        (["reference", "--task", "default", "--finalists", "1000000"], "--finalists 1000000"),
        (["reference", "--task", "default", "--trials", "-2"], "--trials -2"),
        (["reference", "--task", "default", "--search-steps", "0"], "--search-steps 0"),
    ],
)
def test_out_of_range_seeds_and_search_budgets_are_one_line_before_any_work(argv, text):
    result = _probe(*argv)
    assert result["code"] == 2 and text in result["err"], result
    assert len(result["err"].strip().splitlines()) == 1, result["err"]
    assert result["heavy"] == [], f"{argv} imported {result['heavy']}"


def test_report_on_a_directory_that_is_not_a_comparison_is_one_line(tmp_path):
    result = _probe("report", str(tmp_path))
    assert result["code"] == 2 and "Traceback" not in result["err"], result
    (line,) = [line for line in result["err"].splitlines() if line.startswith("error:")]  # an import may print a notice
    assert f"{tmp_path} is not a comparison" in line and "compare.json" in line, result
