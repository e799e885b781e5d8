"""acodm-gym: LLM pretraining as a Gymnasium environment for learned online data mixing (AC-ODM)."""

import gymnasium

from .registry import TASKS

__version__ = "0.1.0"

ENV_ID = "acodm/Pretrain-v0"


def register_task_envs() -> dict[str, str]:
    """Register ``acodm/<Name>-v0`` for every task in ``registry.TASKS`` not yet registered (run at import; call it
    again after adding a task); returns task name → env id. Default-v0 is Pretrain-v0."""
    ids = {name: f"acodm/{name.capitalize()}-v0" for name in sorted(TASKS.names())}
    for task, env_id in ids.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="acodm_gym.envs.pretrain_env:PretrainEnv", kwargs={"task": task})
    return ids


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="acodm_gym.envs.pretrain_env:PretrainEnv")
# The benchmark tasks (registry.TASKS) as acodm/<Name>-v0.
TASK_ENV_IDS = register_task_envs()
