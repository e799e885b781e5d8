"""acodm-gym: LLM pretraining as a Gymnasium environment for learned online data mixing (AC-ODM)."""

import gymnasium

__version__ = "0.1.0"

ENV_ID = "acodm/Pretrain-v0"

# The benchmark tasks (configs/tasks/<name>.yaml) as acodm/<Name>-v0; Default-v0 is Pretrain-v0.
TASK_ENV_IDS = {name: f"acodm/{name.capitalize()}-v0" for name in ("default", "skewed", "noisy", "target")}

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="acodm_gym.envs.pretrain_env:PretrainEnv")
for _task, _id in TASK_ENV_IDS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point="acodm_gym.envs.pretrain_env:PretrainEnv", kwargs={"task": _task})
