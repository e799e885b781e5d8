from .pretrain_env import PretrainEnv, action_to_weights, scalarize
from .wrappers import ImportanceWeightedRewardEMA

__all__ = ["PretrainEnv", "ImportanceWeightedRewardEMA", "action_to_weights", "scalarize"]
