"""The layers point down: no module imports one above its layer, read from the source with ``ast``
(nothing is imported, so a function-level import counts as much as a top-level one)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "acodm_gym"

# config → data → lm → envs → agents → runs → cli; errors, registry, rewards and simplex sit below config, the
# package itself (__version__) at the bottom, and mixing.py / hf_trainer.py above agents.
LAYERS = {
    "": 0,
    "errors": 0,
    "registry": 0,
    "rewards": 0,
    "simplex": 0,
    "rng": 0,
    "config": 1,
    "data": 2,
    "lm": 3,
    "envs": 4,
    "agents": 5,
    "runs": 6,
    "mixing": 6,
    "hf_trainer": 6,
    "cli": 7,
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of the package in ``path``."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from . import rundir``, ``from .. import errors``: each name may be a module
            found += (
                [(node.lineno, f"{module}.{a.name}") for a in node.names]
                if not node.module
                else [(node.lineno, module)]
            )
    return [(line, m) for line, m in found if m == root.name or m.startswith(root.name + ".")]


def _layer(module: str) -> int:
    """The layer of ``acodm_gym.<top>...``; a name that is no module (``__version__``) is the package's."""
    top = module.split(".")[1] if "." in module else ""
    return LAYERS.get(top, 0)


def layer_violations(root: Path = PACKAGE) -> list[str]:
    """'module:line imports other (layer a < b)' for each import that points up."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path, root)
        here = _layer(name)
        for line, other in _imports(path, root):
            there = _layer(other)
            if there > here:
                bad.append(f"{name}:{line} imports {other} (layer {here} imports layer {there})")
    return bad


def import_cycles(root: Path = PACKAGE) -> list[list[str]]:
    """Circles of imports between the package's modules (function-level imports included)."""
    modules = {_module_name(path, root): path for path in root.rglob("*.py")}
    graph = {
        name: sorted({m for _, m in _imports(path, root) if m in modules and m != name})
        for name, path in modules.items()
    }
    cycles, state = [], {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for other in graph[name]:
            if state.get(other) == "open":
                cycles.append(stack[stack.index(other) :] + [other])
            elif other not in state:
                visit(other, stack + [other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_every_top_level_module_has_a_layer():
    tops = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert tops - {"__init__"} <= LAYERS.keys(), f"give {sorted(tops - {'__init__'} - LAYERS.keys())} a layer in LAYERS"


def test_no_module_imports_one_above_its_layer():
    assert layer_violations() == []


def test_no_modules_import_each_other_in_a_circle():
    """A circle hidden by a function-level import (lm/step → distributed → deepspeed_backend → step) is one too."""
    assert import_cycles() == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The check fails on the kind of import it exists for (an env wrapper reaching into agents)."""
    root = tmp_path / "acodm_gym"
    (root / "envs").mkdir(parents=True)
    (root / "agents").mkdir()
    for part in ("envs", "agents"):
        (root / part / "__init__.py").write_text("")
    (root / "envs" / "wrappers.py").write_text("def f():\n    from ..agents.rewards import ema\n")
    assert layer_violations(root) == [
        "acodm_gym.envs.wrappers:2 imports acodm_gym.agents.rewards (layer 4 imports layer 5)"
    ]


def test_importing_the_envs_does_not_load_the_agents():
    """``gym.make`` pays for the env only: no stable-baselines3, no agent."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    code = "import sys, acodm_gym.envs; print(sorted(m for m in sys.modules if m.startswith(('stable_baselines3', 'acodm_gym.agents'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


MAX_FUNCTION_LINES = 60  # a function a reader can hold (issue 25): longer ones are split into named steps


def test_no_function_in_the_package_is_longer_than_a_reader_can_hold():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({lines} lines)")
    assert not long, f"split into named steps: {', '.join(long)}"
