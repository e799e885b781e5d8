"""Name → implementation, one registry per extension point, at the bottom of the layers.

Config validation, the command line, the gym registration and the docs read the names from here, so a
name is declared once. An entry is the implementation itself or a lazy ``"module:attr"`` path: the
names of the agents (which need torch) are known to ``--help`` and to a config check without importing
them. A registry also reads its entry point group, so an installed package adds entries by declaring::

    [options.entry_points]
    acodm_gym.agents =
        mine = my_package.agents:MyAgent

Each registry is declared by the module that implements its extension point where that module sits at
this layer (``simplex.SCALARIZATIONS``, ``rewards.REWARD_VARIANTS``); the others are declared here: the tasks
(YAML files: the package's ``configs/tasks/``, read by the config, the CLI and the gym registration), and,
with lazy paths to implementations that sit higher, the agents, planted generators and state parts.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.resources
import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Iterator, Mapping

from .errors import ConfigError


class Registry:
    """Names of one extension point and their implementations, in registration order.

    :param kind: what an entry is, for messages ("agent")
    :param key: the config key its names go in ("agent.name")
    :param group: the entry point group installed packages add entries through (None: none)
    :param entries: the built-in entries: implementations or lazy ``"module:attr"`` paths
    :param add_with: how a user adds an entry, for the error that lists the names
    """

    def __init__(
        self,
        kind: str,
        key: str,
        group: str | None = None,
        entries: Mapping[str, Any] | None = None,
        add_with: str = "",
    ):
        self.kind, self.key, self.group, self.add_with = kind, key, group, add_with
        self._entries: dict[str, Any] = dict(entries or {})
        self._plugins: dict[str, Any] | None = None  # the group's entry points, read once on first use

    def register(self, name: str, target: Any = None, *, replace: bool = False) -> Any:
        """Add ``name``: ``register("mine", MyAgent)``, or as a decorator ``@register("mine")``.

        :param target: the implementation or a lazy ``"module:attr"`` path (None: decorate)
        :param replace: allow replacing an existing entry (else a clash is an error)
        """
        if target is None:
            return lambda obj: self.register(name, obj, replace=replace)
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.kind} name must be a non-empty string; got {name!r}.")
        if name in self and not replace:
            raise ValueError(f"A {self.kind} named '{name}' is already registered: choose another name.")
        self._entries[name] = target
        return target

    def unregister(self, name: str) -> None:
        """Remove an entry added with ``register`` (e.g. at the end of a test)."""
        del self._entries[name]

    def _group(self) -> dict[str, Any]:
        if self._plugins is None:
            found = _installed_entry_points().select(group=self.group) if self.group else ()
            self._plugins = {ep.name: ep for ep in found}
        return self._plugins

    def names(self) -> tuple[str, ...]:
        """Every name: the built-in and registered entries in order, then the installed entry points."""
        return (*self._entries, *(n for n in self._group() if n not in self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._group()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> Any:
        """The implementation of ``name`` (a lazy path or entry point is imported now)."""
        self.check(name)
        if name not in self._entries:
            return self._group()[name].load()
        target = self._entries[name]
        if isinstance(target, str) and _LAZY.fullmatch(target):
            module, attr = target.split(":", 1)
            target = getattr(importlib.import_module(module), attr)
        return target

    __getitem__ = get

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((name, self.get(name)) for name in self.names())

    def check(self, name: Any, key: str | None = None) -> None:
        """ConfigError unless ``name`` is registered: names the valid ones and the closest."""
        if name in self:
            return
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        group = f" or the entry point group '{self.group}'" if self.group else ""
        own = f" Your own {self.kind}: {self.add_with}{group}." if self.add_with else ""
        raise ConfigError(
            f"{key or self.key}='{name}' is not supported; choose one of {', '.join(self.names())}.{hint}{own}"
        )


_LAZY = re.compile(r"[\w.]+:\w+")  # "package.module:attr"; anything else (a file path) is the entry itself


@functools.cache
def _installed_entry_points():
    """Every installed entry point, read once (a scan of the installed packages' metadata) for all registries."""
    return entry_points()


def lazy(module: str, names: Mapping[str, str]) -> dict[str, str]:
    """``{name: "module:attr"}`` for built-in entries implemented in ``module``."""
    return {name: f"{module}:{attr}" for name, attr in names.items()}


# Benchmark tasks: a name → its YAML file (the shipped ones under configs/tasks/; ``default`` is Pretrain-v0). A task
# of your own: TASKS.register("mine", "path/to/mine.yaml") (its references go beside it), or the entry point group.
TASK_DIR = Path(str(importlib.resources.files("acodm_gym") / "configs" / "tasks"))
TASKS = Registry(
    "task",
    "--task",
    "acodm_gym.tasks",
    {p.stem: p for p in sorted(TASK_DIR.glob("*.yaml")) if not p.name.startswith("_")},
    add_with="acodm_gym.registry.TASKS.register('NAME', 'path/to/NAME.yaml')",
)

# Agents (acodm_gym.agents): a name → an ``Agent`` subclass. Users add theirs with
# ``@acodm_gym.agents.register("mine")`` or the entry point group.
AGENTS = Registry(
    "agent",
    "agent.name",
    "acodm_gym.agents",
    {
        "natural": "acodm_gym.agents.static:NaturalAgent",
        "uniform": "acodm_gym.agents.static:UniformAgent",
        "static": "acodm_gym.agents.static:StaticAgent",
        "schedule": "acodm_gym.agents.static:ScheduleAgent",
        "acodm": "acodm_gym.agents.acodm:ACODMAgent",
        "acodm-td3": "acodm_gym.agents.acodm:ACODMTD3Agent",
        "vector-sac": "acodm_gym.agents.acodm:VectorSACAgent",
        "frozen": "acodm_gym.agents.acodm:FrozenActorAgent",
        "odm": "acodm_gym.agents.exp3:EXP3Agent",
        "doge": "acodm_gym.agents.doge:DoGEAgent",
        "ddpg": "acodm_gym.agents.sb3:DDPGAgent",
        "td3": "acodm_gym.agents.sb3:TD3Agent",
        "sac": "acodm_gym.agents.sb3:SACAgent",
        "ppo": "acodm_gym.agents.sb3:PPOAgent",
        "aioli": "acodm_gym.agents.aioli:AioliAgent",
        "ado": "acodm_gym.agents.ado:ADOAgent",
        "acodm-released": "acodm_gym.agents.acodm:ACODMReleasedAgent",
        "offline": "acodm_gym.agents.offline:OfflineAgent",
    },
    add_with="decorate its Agent subclass with @acodm_gym.agents.register('NAME')",
)

# Planted generators of a corpus recipe (data/recipes.py): a name → ``generate(clean_texts, n_bytes, seed,
# **options) -> documents``.
PLANTED_GENERATORS = Registry(
    "planted generator",
    "data.recipe.planted.<name>.generator",
    "acodm_gym.planted_generators",
    lazy("acodm_gym.data.recipes", {"word_salad": "word_salad", "boilerplate": "boilerplate"}),
    add_with="acodm_gym.registry.PLANTED_GENERATORS.register('NAME', generate)",
)

# Parts of the training state, in observation order (envs/state.py): a name → a ``StatePart`` (its size
# and its value). ``env.drop_state`` names them.
STATE_PARTS = Registry(
    "state part",
    "env.drop_state",
    "acodm_gym.state_parts",
    lazy(
        "acodm_gym.envs.state",
        {
            "samples_seen": "SAMPLES_SEEN",
            "step": "STEP",
            "loss": "LOSS",
            "loss_change": "LOSS_CHANGE",
            "weight_norm": "WEIGHT_NORM",
            "update_norm": "UPDATE_NORM",
        },
    ),
    add_with="acodm_gym.registry.STATE_PARTS.register('NAME', acodm_gym.envs.state.StatePart(size, value))",
)

__all__ = ["Registry", "lazy", "TASK_DIR", "TASKS", "AGENTS", "PLANTED_GENERATORS", "STATE_PARTS"]
