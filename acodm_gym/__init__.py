"""acodm-gym: LLM pretraining as a Gymnasium environment for learned online data mixing (AC-ODM)."""
import gymnasium

__version__ = "0.1.0"

ENV_ID = "acodm/Pretrain-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="acodm_gym.envs.pretrain_env:PretrainEnv")
