"""Importing DeepSpeed, and nothing else: shared by the process group (lm/distributed.py) and the
backend (lm/deepspeed_backend.py) without either importing the other's module.

DeepSpeed picks its accelerator when it is first imported (DS_ACCELERATOR), so the import is done
here, for the configured device, and checked.
"""

from __future__ import annotations

import logging
import os
import warnings

from ..errors import ConfigError


def import_deepspeed(device: str):
    """Import DeepSpeed for ``device`` (DS_ACCELERATOR=cpu on CPU) and check the accelerator it chose."""
    if str(device).startswith("cpu"):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        with warnings.catch_warnings():  # its import touches deprecated torch.jit APIs
            warnings.simplefilter("ignore", DeprecationWarning)
            import deepspeed
            from deepspeed.accelerator import get_accelerator
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"train.backend=deepspeed needs DeepSpeed ({exc}): pip install 'acodm-gym[deepspeed]' "
            "(with torch pinned in the same command, e.g. pip install torch==2.13.0 'acodm-gym[deepspeed]')."
        ) from None
    want = "cpu" if str(device).startswith("cpu") else "cuda"
    have = get_accelerator().device_name()
    if have != want:
        raise ConfigError(
            f"DeepSpeed runs on its '{have}' accelerator but train.device={device}: set DS_ACCELERATOR={want} "
            "before DeepSpeed is first imported, or change train.device."
        )
    # DeepSpeed's ZeRO all-gathers call a torch API that torch 2.13 marks deprecated, once per process.
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.* is deprecated", category=FutureWarning)
    for name in ("DeepSpeed", "deepspeed"):
        logging.getLogger(name).setLevel(max(logging.getLogger(name).level, logging.WARNING))
    return deepspeed
