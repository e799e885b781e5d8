from ..simplex import action_to_weights, scalarize
from .pretrain_env import PretrainEnv
from .wrappers import ImportanceWeightedRewardEMA

__all__ = ["PretrainEnv", "ImportanceWeightedRewardEMA", "action_to_weights", "scalarize"]
