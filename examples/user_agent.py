"""An agent of your own, by name everywhere: register it, then train and compare it like a built-in one.

    python examples/user_agent.py                          # follow-reward against natural, a short run
    python examples/user_agent.py --task noisy --seeds 0 1 train.total_steps=200

Registering (``@register("follow-reward")``) is all it takes: the name then works in ``agent.name``,
``--agent``, ``compare --methods`` and the task sweeps, for code that imports this module first (or,
for an installed package, through the ``acodm_gym.agents`` entry point group: no import needed). Its
``Options`` are merged and range-checked like the built-in agents' (``agent.options.eta=-1`` is refused
before any work), and what it needs from the env is declared on the class: ``needs_reward = True``
(the default) makes the env compute the per-domain alignment reward it learns from.

``FollowTheReward`` is a small exponentiated-gradient mixer: α ∝ natural · exp(η · Σ_t r̃_t), with r̃
the step's reward vector standardised across the domains present, so domains whose gradients align
with the mixture's gain weight.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from acodm_gym.agents import Agent, EnvSpec, option, register


@dataclass
class FollowOptions:
    """Options of ``follow-reward``.

    :param eta: step size of the exponentiated-gradient update
    :param floor: share of the uniform mixture mixed in, so no domain is starved
    """

    eta: float = option(0.2, "(0, inf)")
    floor: float = option(0.05, "[0, 1)")


@register("follow-reward")
class FollowTheReward(Agent):
    """α ∝ natural · exp(η · Σ_t r̃_t) mixed with a uniform floor; learns from ``info["vector_reward"]``."""

    Options = FollowOptions
    needs_reward = True  # the default, spelled out: the env computes the alignment reward

    def __init__(self, spec: EnvSpec, **options):
        super().__init__(spec)
        self.options = self.make_options(options)
        self.score = np.zeros(self.k)  # Σ_t r̃_t
        self.rewards_seen = 0.0  # Σ_t |r_t|: how much reward reached the agent (non-zero unless switched off)

    def act(self, obs: np.ndarray) -> np.ndarray:
        o = self.options
        logits = np.log(self.spec.natural_weights) + o.eta * self.score
        weights = np.exp(logits - logits.max())
        return self._to_weights((1 - o.floor) * weights / weights.sum() + o.floor / self.k)

    def observe(self, obs, action, reward, next_obs, info) -> None:
        r = np.asarray(info["vector_reward"], dtype=np.float64)
        present = info["domain_counts"] > 0
        self.rewards_seen += float(np.abs(r).sum())
        if present.sum() > 1 and r[present].std() > 0:
            self.score[present] += (r[present] - r[present].mean()) / r[present].std()

    def state_dict(self):  # what a checkpoint keeps, so a stopped run resumes exactly
        return {"score": self.score.tolist(), "rewards_seen": self.rewards_seen}

    def load_state_dict(self, state):
        self.score, self.rewards_seen = np.asarray(state["score"], dtype=np.float64), float(state["rewards_seen"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="YAML config path or name under configs/")
    parser.add_argument("--task", default="default", help="benchmark task (configs/tasks/)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="runs/user-agent", help="where the runs and report.md go")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    args = parser.parse_args(argv)

    from acodm_gym.config import load_config
    from acodm_gym.runs.compare import compare

    # A quick run unless overridden: a tiny model, 60 steps.
    quick = ["model.preset=tiny", "train.total_steps=60", "train.warmup_steps=6", "env.eval_interval=20"]
    cfg = load_config(args.config, [*quick, *args.overrides], task=args.task)
    out = compare(cfg, seeds=args.seeds, methods=["natural", "follow-reward"], out=args.out)
    print((out / "report.md").read_text())
    return out


if __name__ == "__main__":
    main()
