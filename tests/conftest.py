"""Shared fixtures: a small real corpus built in seconds from text already on the machine."""

from __future__ import annotations

import importlib.util
import os
import sysconfig
from pathlib import Path

import matplotlib
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
DOMAIN_BYTES = 160_000
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
# What torchrun / the deepspeed launcher set: cleared from the environment of a child that must start alone.
LAUNCH_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "LOCAL_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def benchmark_script(name: str):
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_domain(root: Path, name: str, files: list[Path], budget: int = DOMAIN_BYTES) -> None:
    out = root / name
    out.mkdir(parents=True)
    used = 0
    for i, path in enumerate(sorted(files)):
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            continue
        (out / f"{i:04d}.txt").write_text(text[: budget - used])
        used += len(text[: budget - used])
        if used >= budget:
            break


def make_local_corpus(root: Path) -> Path:
    """Four domains of real text: Python code, Python docs, licences, font metrics."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    _write_domain(root, "code", list((stdlib / "json").glob("*.py")) + list((stdlib / "email").glob("*.py")))
    _write_domain(root, "docs", [stdlib / "pydoc_data" / "topics.py"])
    licenses = [p for p in Path("/usr/share/common-licenses").glob("*") if p.is_file()]
    if not licenses:  # not Debian: licences shipped inside installed packages
        licenses = list(Path(matplotlib.__file__).parents[1].glob("*.dist-info/licenses/*"))
    _write_domain(root, "legal", licenses)
    _write_domain(root, "fonts", list((Path(matplotlib.get_data_path()) / "fonts" / "afm").glob("*.afm")))
    return root


@pytest.fixture(scope="session")
def corpus_text_dir(tmp_path_factory) -> Path:
    return make_local_corpus(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def small_config(corpus_dir: Path, cache: Path, **sections) -> dict:
    """A model and batch small enough that a step takes milliseconds."""
    cfg = {
        "data": {"corpus": str(corpus_dir), "cache_dir": str(cache), "vocab_size": 512},
        "model": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "seq_len": 32},
        "train": {"total_steps": 20, "batch_size": 8, "warmup_steps": 2, "lr": 3e-3, "threads": 1},
        "env": {"eval_interval": 10, "eval_batches": 1},
        "run": {"progress": False},
    }
    for section, values in sections.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return cfg


@pytest.fixture(scope="session")
def config(corpus_text_dir, cache_dir) -> dict:
    return small_config(corpus_text_dir, cache_dir)


@pytest.fixture(scope="session")
def corpus(config):
    from acodm_gym.config import load_config
    from acodm_gym.data.corpus import open_corpus

    return open_corpus(load_config(config).data, log=lambda _: None)
