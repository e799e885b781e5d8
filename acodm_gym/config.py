"""Configuration as data: nested dataclasses, loaded from YAML, overridden from the command line.

Every option lives in one of eight sections (``data``, ``model``, ``train``, ``env``, ``agent``,
``task``, ``proxy``, ``run``). An unknown key is an error that names the key and the closest valid one, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import hashlib
import importlib.resources
import json
import math
import re
import types
import typing
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import yaml

from .errors import ConfigError
from .registry import AGENTS, PLANTED_GENERATORS, STATE_PARTS, TASK_DIR, TASKS
from .rewards import REWARD_VARIANTS
from .simplex import SCALARIZATIONS

# Shipped as package data (setup.cfg), so an installed wheel finds its configs and presets.
CONFIG_DIR = Path(str(importlib.resources.files("acodm_gym") / "configs"))


@dataclass
class RecipeConfig:
    """A corpus recipe (benchmark tasks): the base corpus's domains resampled to given training shares,
    plus planted low-quality domains generated from the clean text (data/recipes.py). Empty ``shares``:
    no recipe, the corpus as it is."""

    shares: dict[str, float] = field(
        default_factory=dict
    )  # domain -> relative share of the training text (real and planted)
    train_bytes: int = 8_000_000  # bytes of training text the shares divide
    heldout_bytes: int = 60_000  # per domain and held-out split (validation, test), drawn before the training sample
    heldout_max_bytes: int = 0  # >0: each held-out split is topped up to this size from the text the training sample
    # leaves unused (drawn after it, so the training text is the same); 0: heldout_bytes only
    planted: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # name -> {generator: word_salad | boilerplate, ...}
    chunk_bytes: int = 4_000  # documents are cut into pieces of about this size before sampling
    seed: int = 0


@dataclass
class DataConfig:
    corpus: str = "default"  # "default" (built from packages), a directory, or a .jsonl / .jsonl.zst file
    cache_dir: str | None = None  # None: $ACODM_GYM_CACHE or the user cache dir
    domains: list[str] | None = None  # keep only these domains (None: all)
    domain_fields: list[str] = field(
        default_factory=lambda: ["meta.pile_set_name", "meta.redpajama_set_name", "domain"]
    )  # JSONL: dotted paths tried in order for a record's domain
    text_field: str = "text"
    tokenizer: str | None = None  # path to a tokenizer.json; None: train a byte-level BPE
    vocab_size: int = 4096
    max_bytes_per_domain: int | None = 6_000_000  # None: keep all text
    val_fraction: float = 0.02
    test_fraction: float = 0.02
    seed: int = 0  # hashes documents into train/validation/test and into the even sample under the byte cap
    encoding: str = "utf-8"  # of text files (JSONL is UTF-8 unless set); "auto": UTF-8, else cp1252, per file
    recipe: RecipeConfig = field(default_factory=RecipeConfig)


@dataclass
class ModelConfig:
    arch: str = "gpt_neox"  # gpt_neox | llama
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 2
    num_kv_heads: int | None = None  # llama only (None: = num_heads)
    intermediate_size: int = 512
    seq_len: int = 128
    probe_module: str | None = None  # FFN output projection; None: the architecture's default
    dtype: str = "float32"


@dataclass
class TrainConfig:
    total_steps: int = 600
    batch_size: int = 16
    micro_batch_size: int | None = None  # None: whole batch in one forward/backward
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = (
        None  # LR warm-up; None: default_warmup_steps(total_steps), 50 or an eighth of a shorter run
    )
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0  # max gradient norm (0: no clipping)
    loss_weighting: str = "alpha"  # alpha: sum_i alpha_i * loss_i (the paper) | mean: plain mean
    exploration_share: float = 0.1  # share of the batch spread evenly over domains (>= 1 each)
    exploration_floor: bool = True  # False: batches follow alpha alone (ODM samples this way)
    max_nonfinite_steps: int = 5  # consecutive skipped non-finite steps before stopping
    device: str = "cpu"
    threads: int | None = None  # torch threads (None: leave torch's default)
    backend: str = (
        "torch"  # torch: one process | deepspeed: a DeepSpeed engine, one or more ranks (torchrun / deepspeed launcher)
    )
    deepspeed_config: str | dict[str, Any] = (
        "zero1"  # DeepSpeed JSON: a path, or zero0 / zero1 / zero2 (configs/deepspeed/)
    )
    dist_timeout: float = 600.0  # seconds a collective waits for the other ranks before failing (a dead or hung rank)


@dataclass
class EnvConfig:
    compute_reward: bool = True
    # a name of rewards.REWARD_VARIANTS: paper (<g_i, sum_j g_j>) | authors (off-diagonal, normalised, z-scored)
    reward_variant: str = "paper"
    reward_depths: list[float] = field(default_factory=lambda: [0.75, 0.875, 1.0])
    reward_sketch: list[int] | None = None  # null: exact per-domain gradients | [p, q]: Kronecker sketch (lm/probes.py)
    # S in W_i = <g_i, S>: corpus (the paper: every domain) | eval_domains (task.eval_domains)
    reward_target: str = "corpus"
    num_norm_probes: int = 4  # L: layers whose weight norms are observed
    scalarization: str = "alpha_weighted"  # a name of simplex.SCALARIZATIONS: alpha_weighted | sum | mean
    drop_state: list[str] = field(default_factory=list)  # state parts (registry.STATE_PARTS) zeroed (ablations)
    eval_interval: int = 50  # steps between per-domain validation perplexities (0: off)
    eval_batches: int = 2  # validation batches per domain
    # scoring: the end-of-episode evaluation (task metric and score) at the last step | training: none, an
    # episode that only trains an agent (env.eval_interval=0 also skips the periodic validation)
    episode: str = "scoring"


# What `compare` runs: any agent by name (registry.AGENTS), `acodm-proxy` (AC-ODM learnt on the proxy model, then
# frozen) and `<agent>-learned` (an agent trained across episodes, then frozen); METHODS is its default.
PROXY_METHOD = "acodm-proxy"
LEARNED = "-learned"  # compare method suffix: the agent trained across episodes, then frozen (learned_agent)
METHODS = ("natural", "uniform", "odm", "acodm", PROXY_METHOD)


def learned_agent(method: str) -> str | None:
    """The agent of a learned compare method (``<agent>-learned``: trained across ``learn.episodes`` episodes,
    then frozen), else None."""
    agent = method.removesuffix(LEARNED)
    return agent if method.endswith(LEARNED) and agent in AGENTS else None


def check_methods(methods: Sequence[str]) -> None:
    """Refuse an unknown compare method before any run starts."""
    known = (*AGENTS.names(), PROXY_METHOD)
    unknown = [m for m in methods if m not in known and learned_agent(m) is None]
    choose = f"choose from {', '.join(known)}, or an agent trained across episodes as <agent>{LEARNED}"
    if not methods:
        raise ConfigError(f"No compare method given: {choose}.")
    if unknown:
        raise ConfigError(f"Unknown compare method(s) {unknown}: {choose} (an agent of your own: {AGENTS.add_with}).")


SEED_MAX = 2**32 - 1  # numpy's and gymnasium's seeds are non-negative; torch's fit in 64 bits
MAX_SEARCH_RUNS = 1000  # runs of one reference search stage: each is a whole training run


def check_seed(seed: Any, key: str = "run.seed=") -> None:
    """Refuse a seed numpy, gymnasium and torch would not all take (``--seed -1``), before any work."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{key}{seed} is not a seed: give an integer from 0 to {SEED_MAX}.")


def check_search(seeds: Sequence[int], trials: int = 0, finalists: int = 0, search_steps: int = 1) -> None:
    """Seeds and a reference search's budget in range before the corpus loads: 0 trials or finalists means
    none, and every count is bounded (a count is a number of whole training runs)."""
    if not seeds:
        raise ConfigError("--seeds: give at least one seed.")
    for seed in seeds:
        check_seed(seed, "--seeds ")
    for flag_, value in (("--trials", trials), ("--finalists", finalists)):
        if not 0 <= value <= MAX_SEARCH_RUNS:
            raise ConfigError(
                f"{flag_} {value} is out of range: give 0 (none) to {MAX_SEARCH_RUNS} runs; each is a training run."
            )
    if search_steps < 1:
        raise ConfigError(f"--search-steps {search_steps} is out of range: give at least 1 step per search run.")


@dataclass
class AgentConfig:
    name: str = "natural"
    weights: str | list[float] | dict[str, float] | dict[str, list[Any]] | None = (
        None  # static: file or values; schedule: file or {steps, weights}
    )
    options: dict[str, Any] = field(default_factory=dict)  # agent-specific hyper-parameters
    init_from: str | None = (
        None  # start from this saved agent (agent.pt: networks, replay buffer, counters); None: fresh
    )
    # true: the agent only acts, greedily (Agent.greedy), and never observes or learns: a saved agent (init_from)
    # scored as it is (learn's test episodes of an agent that agent 'frozen' cannot run)
    frozen: bool = False
    # with frozen (or agent 'frozen'): how the saved agent was trained (learn's protocol: episodes, first seed;
    # for agent 'frozen' also the actor's agent and options), recorded so a scoring run of a policy trained
    # otherwise is never reused; not read when the run runs
    trained: dict[str, Any] | None = None


TEST_SEEDS = (0, 1, 2, 3, 4)  # the model seeds a learned policy is scored on: those of the shipped references


@dataclass
class LearnConfig:
    """The protocol of compare's learned methods (``<agent>-learned``, ``runs/learn.py``): the agent trains over
    ``episodes`` training episodes, then is frozen and scored on each compare seed."""

    episodes: int = 20  # training episodes, a fresh model each, before the policy is frozen
    first_seed: int = 1000  # model seed of the first training episode (then +1 each), off the test seeds


@dataclass
class ProxyConfig:
    """The proxy stage of proxy mode (``acodm-gym proxy``, compare's ``acodm-proxy``); its model is ``run.proxy_model``."""

    episodes: int = (
        1  # training episodes the actor-critic learns over (runs/learn.py); networks and replay buffer carry across
    )


@dataclass
class TaskConfig:
    """What a run is scored on (configs/tasks/): the metric is the geometric mean of the per-domain
    perplexities over ``eval_domains`` (exp of their mean loss); references give the normalised score."""

    name: str | None = None  # a task under configs/tasks/ (set by --task NAME or the task's config)
    eval_domains: list[str] | None = None  # None: every domain
    references: str | None = (
        None  # reference scores (JSON); None: the task's shipped configs/tasks/<name>.references.json; "none": no score
    )
    eval_tokens: int | None = None  # tokens per domain of the end-of-episode evaluation (validation and test: the
    # metric and score); None: env.eval_batches batches, as during training. A shorter held-out split is read whole.


@dataclass
class RunConfig:
    out_dir: str = "runs"
    name: str | None = None  # None: <agent>-<seed>
    seed: int = 0  # the model, its batches, and the agent unless agent.options.seed is given (runner.seed_agent)
    progress: bool = True
    tensorboard: bool = True
    plots: bool = True
    proxy_model: str = "tiny-proxy"  # model preset (configs/models/) of the proxy stage
    checkpoint_interval: int = 100  # steps between checkpoints under <run>/checkpoints/ (0: none); resume with --resume
    keep_checkpoints: int = 2  # newest complete checkpoints kept
    log_transitions: bool = False  # write every (s, a, r, vector r, s') to <run>/transitions.npz (offline RL)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    learn: LearnConfig = field(default_factory=LearnConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, *sections: str) -> str:
        """Short hash of the named sections, to key caches and to check compatibility."""
        d = self.to_dict()
        blob = json.dumps({s: d[s] for s in sections}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as the declared type of ``key`` (YAML reads ``1e-3`` as a string); ConfigError if it is not one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"Config key '{key}' got {value!r}; expected {_type_name(hint)}.")
    ok: Any = _NOPE
    if hint is bool:
        ok = value if isinstance(value, bool) else _NOPE
    elif hint is int and not isinstance(value, bool):
        number = _number(value)
        ok = int(number) if number is not None and float(number).is_integer() else _NOPE
    elif hint is float and not isinstance(value, bool):
        number = _number(value)
        ok = float(number) if number is not None else _NOPE
    elif hint is str:
        ok = (
            value
            if isinstance(value, str)
            else str(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else _NOPE
        )
    elif origin is list and isinstance(value, (list, tuple)):
        ok = [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else list(value)
    elif origin is dict and isinstance(value, Mapping):
        ok = {k: _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()} if args else dict(value)
    if ok is _NOPE:
        raise ConfigError(f"Config key '{key}' got {value!r}; expected {_type_name(hint)}.")
    return ok


_NOPE = object()


def _number(value: Any) -> float | int | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if typing.get_args(hint) else getattr(hint, "__name__", str(hint))


def merge_section(section: Any, values: Mapping[str, Any], where: str) -> Any:
    """``values`` merged into the dataclass ``section`` as a config section is (``agent.options`` into an
    agent's options): each coerced to its declared type, an unknown key refused with the closest valid one."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"Config key '{where}' is a section; give a mapping.")
    _merge(section, values, where)
    return section


def _merge(section: Any, values: Mapping[str, Any], where: str) -> None:
    names = {f.name: f for f in fields(section)}
    hints = typing.get_type_hints(type(section))
    for key, value in values.items():
        path = f"{where}.{key}" if where else key  # as written in an override: train.lr
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            suggestion = f" Did you mean '{where + '.' if where else ''}{hint[0]}'?" if hint else ""
            raise ConfigError(
                f"Unknown config key '{path}'.{suggestion} Valid keys in '{where or 'the config'}': "
                f"{', '.join(sorted(names))}."
            )
        current = getattr(section, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"Config key '{path}' is a section; give a mapping.")
            _merge(current, value, path)
        else:
            value = _coerce(value, hints[key], path)
            if isinstance(current, dict) and isinstance(value, dict):
                value = {**current, **value}  # agent.options.x=1 adds to the options, not replaces them
            setattr(section, key, value)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: {path}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from None
    if data is None:  # a file that is empty, or holds only comments: say so rather than run on defaults silently
        warnings.warn(f"Config file {path} is empty: every key keeps its default.", stacklevel=2)
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of sections.")
    return data


def resolve_config_path(name: str | Path, relative_to: Path | None = None) -> Path:
    """A path as given (or next to the including file), else a name under configs/ (``tiny`` → configs/tiny.yaml)."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    if relative_to is not None and not path.is_absolute() and (relative_to / path).exists():
        return relative_to / path
    for candidate in (CONFIG_DIR / path, CONFIG_DIR / f"{name}.yaml", CONFIG_DIR / "models" / f"{name}.yaml"):
        if candidate.exists():
            return candidate
    raise ConfigError(f"Config '{name}' not found: give a YAML path or a name from {CONFIG_DIR}.")


def task_names() -> list[str]:
    """Every registered task (``registry.TASKS``)."""
    return sorted(TASKS.names())


def task_config_path(name: str) -> Path:
    """A registered task's YAML, or a task file of your own (a .yaml path); an unknown name lists the known ones."""
    if str(name).endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
    else:
        path = Path(TASKS.get(name)).expanduser() if name in TASKS else TASK_DIR / f"{name}.yaml"
    if not path.is_file():
        hint = difflib.get_close_matches(name, task_names(), n=1)
        suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
        raise ConfigError(f"Unknown task '{name}'.{suggestion} Known tasks: {', '.join(task_names())}.")
    return path


def task_references_file(name: str) -> Path:
    """A task's own reference file: ``<name>.references.json`` beside its YAML (configs/tasks/ for the shipped
    tasks; there too for a task named in a task file of your own)."""
    folder = Path(TASKS.get(name)).expanduser().parent if name in TASKS else TASK_DIR
    return folder / f"{name}.references.json"


def _expand(data: dict[str, Any], origin: Path | None = None) -> dict[str, Any]:
    """Apply ``base:`` (a config file this one extends; relative to ``origin``, the including
    file's directory) and ``model: {preset: NAME}``."""
    data = dict(data)
    base = data.pop("base", None)
    if base is not None:
        base_path = resolve_config_path(base, origin)
        merged = _expand(_load_yaml(base_path), base_path.parent)
        for section, values in data.items():
            if isinstance(values, Mapping) and isinstance(merged.get(section), Mapping):
                merged[section] = {**merged[section], **values}
            else:
                merged[section] = values
        data = merged
    model = data.get("model")
    if isinstance(model, Mapping) and "preset" in model:
        model = dict(model)
        preset = _load_yaml(resolve_config_path(Path("models") / f"{model.pop('preset')}.yaml"))
        data["model"] = {**preset.get("model", preset), **model}
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=1e-3`` → (["train", "lr"], 0.001); values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"Override '{text}' must look like section.key=value (e.g. train.total_steps=200).")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def load_config(
    source: str | Path | Mapping[str, Any] | Config | None = None,
    overrides: str | Sequence[str] | Mapping[str, Any] | None = None,
    task: str | None = None,
) -> Config:
    """Build a Config from defaults, a task (configs/tasks/<task>.yaml), a YAML file or mapping on top,
    and overrides (strings, one string, or a nested mapping)."""
    cfg = Config()
    if task is not None:
        path = task_config_path(task)
        _merge(cfg, _expand(_load_yaml(path), path.parent), "")
        cfg.task.name = cfg.task.name or (task if task in TASKS else path.stem)
    if isinstance(source, Config):
        _merge(cfg, source.to_dict(), "")
    elif source is not None:
        if isinstance(source, (str, Path)):
            path = resolve_config_path(source)
            data, origin = _load_yaml(path), path.parent
        else:
            data, origin = dict(source), None
        _merge(cfg, _expand(data, origin), "")
    if isinstance(overrides, str):  # gym.make(id, overrides="train.total_steps=3"): one override
        overrides = [overrides]
    if overrides:
        if isinstance(overrides, Mapping):
            _merge(cfg, _expand(dict(overrides)), "")
        else:
            for item in overrides:
                keys, value = parse_override(item)
                nested: dict[str, Any] = {keys[-1]: value}
                for key in reversed(keys[:-1]):
                    nested = {key: nested}
                _merge(cfg, _expand(nested), "")
    if cfg.train.warmup_steps is None:  # resolved here, so config.yaml records the steps the run warmed up for
        cfg.train.warmup_steps = default_warmup_steps(cfg.train.total_steps)
    validate(cfg)
    return cfg


def default_warmup_steps(total_steps: int) -> int:
    """The LR warm-up when ``train.warmup_steps`` is not set: 50 steps, or an eighth of a run shorter than 400
    steps (so ``train.total_steps=20`` needs no other override; the default and task runs keep 50)."""
    return min(50, total_steps // 8)


def check_recipe(recipe: RecipeConfig, where: str = "data.recipe") -> None:
    """Recipe checks that need no corpus: shares, generators, sizes (the domains are checked when it is built)."""
    if not recipe.shares:
        if recipe.planted:
            raise ConfigError(f"{where}.planted needs {where}.shares: give every domain, real and planted, a share.")
        return
    bad = next((k for k, v in recipe.shares.items() if not math.isfinite(v) or v < 0), None)
    if bad is not None:
        raise ConfigError(
            f"{where}.shares.{bad}={recipe.shares[bad]}: a share must be a finite number >= 0 (a relative share of "
            "the training text, e.g. 2.5)."
        )
    if sum(recipe.shares.values()) <= 0:
        raise ConfigError(
            f"{where}.shares must be non-negative and sum to a positive value; got {dict(recipe.shares)}."
        )
    for name, spec in recipe.planted.items():
        generator = spec.get("generator")
        if generator not in PLANTED_GENERATORS:
            raise ConfigError(
                f"{where}.planted.{name}: unknown generator {generator!r}; choose one of "
                f"{', '.join(PLANTED_GENERATORS.names())} (your own: {PLANTED_GENERATORS.add_with})."
            )
        if name not in recipe.shares:
            raise ConfigError(f"{where}.planted.{name} has no share: add {where}.shares.{name}.")
    if min(recipe.train_bytes, recipe.heldout_bytes, recipe.chunk_bytes) < 1:
        raise ConfigError(f"{where}.train_bytes, heldout_bytes and chunk_bytes must be positive.")
    if recipe.heldout_max_bytes and recipe.heldout_max_bytes < recipe.heldout_bytes:
        raise ConfigError(
            f"{where}.heldout_max_bytes={recipe.heldout_max_bytes} is below heldout_bytes={recipe.heldout_bytes}: it is "
            "the size held-out splits are topped up to, so give at least heldout_bytes (or 0 for no top-up)."
        )


def _choice(value: str, allowed: Sequence[str], key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}='{value}' is not supported; choose one of {', '.join(allowed)}.")


def check_sketch(sketch: Any, shapes: Sequence[tuple[int, int]] = ()) -> None:
    """Refuse a sketch size that is not [p, q] with 1 ≤ p ≤ out and 1 ≤ q ≤ in for every probed layer."""
    ok = (
        isinstance(sketch, (list, tuple))
        and len(sketch) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sketch)
    )
    if not ok:
        raise ConfigError(
            f"env.reward_sketch={sketch!r} is not a sketch size: give two positive integers [p, q] (output and input "
            "side of each probed layer, e.g. [64, 64]), or null for the exact probe."
        )
    p, q = sketch
    for out_f, in_f in shapes:
        if p > out_f or q > in_f:
            raise ConfigError(
                f"env.reward_sketch=[{p}, {q}] is larger than a probed layer of {out_f} outputs × {in_f} inputs: "
                f"choose p ≤ {out_f} and q ≤ {in_f} (or null for the exact probe)."
            )


def validate(cfg: Config) -> None:
    """Check values that a typo or a bad combination would make silently wrong, section by section."""
    _check_names(cfg)
    _check_runs(cfg)
    check_model(cfg.model)
    _check_train(cfg.train)
    _check_eval(cfg)
    _check_data(cfg)


def _check_names(cfg: Config) -> None:
    """Every name a setting chooses (agent, architecture, backend, reward, scalarisation, recipe) is known."""
    AGENTS.check(cfg.agent.name)
    _choice(cfg.model.arch, ["gpt_neox", "llama"], "model.arch")
    _choice(cfg.model.dtype, ["float32", "bfloat16", "float16"], "model.dtype")
    _choice(cfg.train.loss_weighting, ["alpha", "mean"], "train.loss_weighting")
    _choice(cfg.train.backend, ["torch", "deepspeed"], "train.backend")
    if cfg.train.dist_timeout <= 0:
        raise ConfigError("train.dist_timeout must be a positive number of seconds.")
    REWARD_VARIANTS.check(cfg.env.reward_variant)
    _choice(cfg.env.reward_target, ["corpus", "eval_domains"], "env.reward_target")
    SCALARIZATIONS.check(cfg.env.scalarization)
    _choice(cfg.env.episode, ["scoring", "training"], "env.episode")
    check_recipe(cfg.data.recipe)


def _check_runs(cfg: Config) -> None:
    """The protocol's counts and seeds, the agent files a run starts from, checkpoints."""
    if cfg.proxy.episodes < 1 or cfg.learn.episodes < 1:
        raise ConfigError(f"{'proxy' if cfg.proxy.episodes < 1 else 'learn'}.episodes must be at least 1.")
    check_seed(cfg.learn.first_seed, "learn.first_seed=")
    if cfg.agent.init_from is not None and not Path(cfg.agent.init_from).expanduser().is_file():
        raise ConfigError(f"agent.init_from={cfg.agent.init_from} is not a file: give the agent.pt of an earlier run.")
    if cfg.agent.frozen and cfg.agent.init_from is None:
        raise ConfigError("agent.frozen=true scores a saved agent as it is: set agent.init_from to its agent.pt.")
    if cfg.agent.trained is not None and not (cfg.agent.frozen or cfg.agent.name == "frozen"):
        raise ConfigError(
            "agent.trained records how a frozen agent was trained: set agent.frozen=true (or agent 'frozen'), or drop it."
        )
    if cfg.env.reward_sketch is not None:
        check_sketch(cfg.env.reward_sketch)  # against the layer sizes again when the probe meets the model
    check_seed(cfg.run.seed)
    if cfg.run.checkpoint_interval < 0 or cfg.run.keep_checkpoints < 1:
        raise ConfigError("run.checkpoint_interval must be >= 0 (0: no checkpoints) and run.keep_checkpoints >= 1.")


def _check_eval(cfg: Config) -> None:
    """Validation and evaluation sizes, batch, exploration floor, and the observation's parts."""
    if cfg.env.eval_batches < 1 or cfg.env.eval_interval < 0:
        raise ConfigError(
            f"env.eval_batches={cfg.env.eval_batches} must be >= 1 and env.eval_interval={cfg.env.eval_interval} >= 0 "
            "(0: no periodic validation)."
        )
    if cfg.task.eval_tokens is not None and cfg.task.eval_tokens < cfg.model.seq_len:
        raise ConfigError(
            f"task.eval_tokens={cfg.task.eval_tokens} is less than one sequence (model.seq_len={cfg.model.seq_len}): "
            "give at least seq_len tokens, or null for env.eval_batches batches."
        )
    if cfg.train.batch_size < 1 or (cfg.train.micro_batch_size or 1) < 1:
        raise ConfigError("train.batch_size and train.micro_batch_size must be positive.")
    if not 0.0 <= cfg.train.exploration_share < 1.0:
        raise ConfigError("train.exploration_share must be in [0, 1).")
    unknown = [p for p in cfg.env.drop_state if p not in STATE_PARTS]
    if unknown:
        raise ConfigError(
            f"env.drop_state names unknown state parts {unknown}; choose from {', '.join(STATE_PARTS.names())}."
        )
    if cfg.env.num_norm_probes < 1:
        raise ConfigError("env.num_norm_probes must be at least 1.")
    _check_norm_probes(cfg)


def _check_data(cfg: Config) -> None:
    """The corpus' tokenizer, held-out fractions and encoding, and the reward's probe depths."""
    if cfg.data.tokenizer is None and cfg.data.vocab_size < MIN_VOCAB:
        raise ConfigError(
            f"data.vocab_size={cfg.data.vocab_size} is below {MIN_VOCAB}, the smallest byte-level BPE (256 bytes and "
            f"<|endoftext|>): set data.vocab_size >= {MIN_VOCAB} (default 4096)."
        )
    if any(not 0.0 < d <= 1.0 for d in cfg.env.reward_depths) or not cfg.env.reward_depths:
        raise ConfigError("env.reward_depths must be relative depths in (0, 1], e.g. [0.75, 0.875, 1.0].")
    if (
        cfg.data.val_fraction <= 0
        or cfg.data.test_fraction <= 0
        or cfg.data.val_fraction + cfg.data.test_fraction >= 0.5
    ):
        raise ConfigError("data.val_fraction and data.test_fraction must be positive and sum to less than 0.5.")
    if cfg.data.encoding != "auto":
        try:
            codecs.lookup(cfg.data.encoding)
        except LookupError:
            raise ConfigError(
                f"data.encoding='{cfg.data.encoding}' is not a known encoding: use utf-8, auto, latin-1 or cp1252."
            ) from None


_DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")
MIN_VOCAB = 257  # a byte-level BPE: its 256 byte tokens and <|endoftext|> (data/tokenizer.py)


def _check_norm_probes(cfg: Config) -> None:
    """More weight norms than layers only repeat layers: fine for the default count (any model observes it)
    and for the proxy model (run.proxy_model), whose repeats match its target's observation; else an error."""
    probes, layers, default = cfg.env.num_norm_probes, cfg.model.num_layers, EnvConfig.num_norm_probes
    if probes <= max(layers, default):
        return
    try:
        preset = _load_yaml(resolve_config_path(Path("models") / f"{cfg.run.proxy_model}.yaml"))
    except ConfigError:
        preset = {}
    preset = preset.get("model", preset)
    if preset and all(getattr(cfg.model, k, None) == v for k, v in preset.items()):
        return
    raise ConfigError(
        f"env.num_norm_probes={probes} is more than the model's {layers} layers (model.num_layers): the observation "
        f"would repeat each layer's weight norm to fill {probes} places. Set env.num_norm_probes to at most "
        f"{max(layers, default)} (only the proxy model, run.proxy_model, repeats layers beyond that, to match its "
        "target's observation)."
    )


def check_model(model: ModelConfig) -> None:
    """Model sizes that build a working transformer (a 0 would fail later with a misleading error)."""
    sizes = {k: getattr(model, k) for k in ("num_layers", "hidden_size", "num_heads", "intermediate_size")}
    if model.seq_len < 2:
        raise ConfigError(f"model.seq_len={model.seq_len}: set model.seq_len >= 2 (a block predicts its next tokens).")
    small = [f"model.{k}={v}" for k, v in sizes.items() if v < 1]
    if small:
        raise ConfigError(f"{', '.join(small)}: model sizes must be >= 1.")
    if model.hidden_size % model.num_heads:
        raise ConfigError(
            f"model.hidden_size={model.hidden_size} must be divisible by model.num_heads={model.num_heads}."
        )
    kv = model.num_kv_heads
    if kv is not None and (kv < 1 or model.num_heads % kv):
        raise ConfigError(
            f"model.num_kv_heads={kv} must be >= 1 and divide model.num_heads={model.num_heads} (null: = num_heads)."
        )


def _check_train(t: TrainConfig) -> None:
    """Training settings in range: each error says what to set."""
    if t.total_steps < 1:
        raise ConfigError("train.total_steps must be at least 1.")
    if not 0 <= t.warmup_steps < t.total_steps:
        raise ConfigError(
            f"train.warmup_steps={t.warmup_steps} must be >= 0 and less than train.total_steps={t.total_steps}: "
            f"set e.g. train.warmup_steps={default_warmup_steps(t.total_steps)}, or null for that default."
        )
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise ConfigError(f"train.lr={t.lr}: set a positive learning rate, e.g. train.lr=2e-3.")
    if not 0.0 <= t.min_lr_ratio <= 1.0:
        raise ConfigError(f"train.min_lr_ratio={t.min_lr_ratio} must be in [0, 1] (the final LR as a share of lr).")
    if not t.weight_decay >= 0.0:
        raise ConfigError(f"train.weight_decay={t.weight_decay} must be >= 0.")
    if len(t.betas) != 2 or not all(0.0 <= b < 1.0 for b in t.betas):
        raise ConfigError(f"train.betas={t.betas}: give AdamW's two betas, each in [0, 1), e.g. [0.9, 0.95].")
    if not t.grad_clip >= 0.0:
        raise ConfigError(f"train.grad_clip={t.grad_clip} must be >= 0 (0: no clipping).")
    if t.threads is not None and t.threads < 1:
        raise ConfigError(f"train.threads={t.threads} must be >= 1 (null: torch's default).")
    if not _DEVICE.fullmatch(t.device):
        raise ConfigError(f"train.device='{t.device}' is not a device: use cpu, cuda, cuda:N (e.g. cuda:0) or mps.")
