"""A process's random number generators, saved and restored: shared by run checkpoints (runs/checkpoint.py)
and saved agents (agents/base.py), free of the package.

SB3's stock agents explore with the global torch and numpy RNGs and their action space's own generator
(random actions before ``learning_starts``), so these states are what makes an exploratory action repeatable.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng() -> dict[str, Any]:
    """This process's global RNG states: python, numpy, torch (and CUDA when in use)."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    state = {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np_state = dict(state["numpy"])
    np_state["state"] = {**np_state["state"], "key": np.asarray(np_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def space_rng(space) -> dict | None:
    """A gymnasium space's generator state (None while it was never used or seeded)."""
    rng = getattr(space, "_np_random", None)
    return rng.bit_generator.state if rng is not None else None


def restore_space_rng(space, state: dict | None) -> None:
    if state is not None:
        space.np_random.bit_generator.state = state
