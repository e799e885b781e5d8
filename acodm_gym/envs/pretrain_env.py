"""PretrainEnv: one LLM pretraining run as a Gymnasium episode (spaces, reward and episode end: the
class docstring). The environment does not know which agent drives it.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch

from ..config import Config, load_config
from ..data.corpus import open_corpus
from ..data.sampler import DomainSampler
from ..data.token_corpus import TokenCorpus
from ..errors import ConfigError, CorpusError, NonFiniteLossError
from ..lm import distributed
from ..lm.models import build_model, layers_at_depths, probe_layers
from ..lm.probes import AlignmentProbe
from ..lm.step import TorchBackend, evaluate_domains, train_step
from ..simplex import action_to_weights, scalarize
from .state import StepInfo, TrainingState, norm_probe, observation_layout, state_spaces, step_info
from .task import TaskMetric, final_eval_sequences, load_references, normalised_score


class PretrainEnv(gym.Env[np.ndarray, np.ndarray]):
    """## Description

    One pretraining run of a causal LM on a corpus of k domains, one update per step: the agent
    sets the domain weights α, the env draws a batch from P_α (with the exploration floor,
    ``train.exploration_share``), makes one α-reweighted update of the model and reports AC-ODM's
    training state and the per-domain gradient-alignment reward.

    ## Action Space

    ``Box(0, 1, (k,), float32)``: a weight per domain, mapped onto the simplex by
    ``action_to_weights`` (negative entries count as 0, then divide by the sum, which keeps the
    ranking; all zeros means uniform). An action outside the box is warned about once per env. Gaussian
    policies (SB3's PPO, SAC): wrap in ``gymnasium.wrappers.RescaleAction(env, -1, 1)``, so that their
    initial mean action 0 is the uniform mixture and [-1, 1] maps onto the simplex in order.

    ## Observation Space

    ``Box(-inf, inf, (3k + 1 + 2L,), float32)``: the six-part state of envs/state.py (samples seen,
    step, loss, loss change, weight norm, update norm; L = ``env.num_norm_probes``), free of model
    size; ``observation_layout()`` gives each part's slice. Nothing in it is ever NaN.

    ## Rewards

    ``info["vector_reward"]`` is W (k values; ``reward_space``), W_i = ⟨∇ℓ_i, Σ_j ∇ℓ_j⟩ on the reward
    layers (``env.reward_depths``; ``env.reward_sketch``: estimated from a sketch). The scalar
    returned by ``step`` (for stock agents) is, by default, the α-weighted sum Σ α_i W_i =
    ⟨Σ_i α_i ∇ℓ_i, Σ_j ∇ℓ_j⟩: the first-order decrease of the summed domain losses under the update
    this mixture makes (``env.reward_target: eval_domains``: S sums only the task's eval domains, DoGE's
    out-of-domain reward; ``env.scalarization``: ``sum``, ‖Σ g‖², hardly action-dependent; ``mean``,
    its 1/k). Agents without a reward (``env.compute_reward: false``) get zeros.

    ## Starting State

    ``reset(seed)`` builds a fresh model from ``seed`` (the same seed: the same model and batches)
    and measures each domain's initial loss on one validation block.

    ## Episode End

    Never terminated; truncated after ``train.total_steps`` steps, when ``info`` also holds the
    episode's result on the test split (``episode_result``) in a scoring episode (``env.episode``); a
    training episode (``env.episode: training``) skips that evaluation: it only trains an agent. Too many non-finite steps in a row
    raise ``NonFiniteLossError``.

    ## Arguments

    :param config: a YAML path, a name under configs/, a mapping or a ``Config`` (None: the default)
    :param overrides: ``section.key=value`` strings or a mapping, applied on top of ``config``
    :param corpus: an open ``TokenCorpus`` to reuse (None: open or build ``config``'s ``data``)
    :param log: where progress lines go (the corpus build)
    :param task: a benchmark task under configs/tasks/ (also ``gym.make("acodm/<Task>-v0")``)
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        config: str | Mapping[str, Any] | Config | None = None,
        overrides: Sequence[str] | Mapping[str, Any] | None = None,
        corpus: TokenCorpus | None = None,
        log=print,
        task: str | None = None,
    ):
        self.cfg = load_config(config, overrides, task=task)
        if self.cfg.train.threads:
            torch.set_num_threads(self.cfg.train.threads)
        distributed.setup(self.cfg.train)  # train.backend=deepspeed: the process group of the ranks in lockstep
        self.corpus = corpus or open_corpus(self.cfg.data, log=log)
        self.domains = list(self.corpus.domains)
        if len(self.domains) < 2:  # every agent mixes: natural, uniform and static weights are all 1.0 here
            raise CorpusError(
                f"The corpus {self.corpus.root} has one domain ({', '.join(self.domains)}): mixing needs at least two "
                f"domains. Add a domain to {self.cfg.data.corpus} (a sub-directory, or another domain value), or list "
                "more in data.domains."
            )
        self.k = len(self.domains)
        self.natural_weights = self.corpus.natural_weights()
        self.metric = TaskMetric(self.domains, self.cfg.task.eval_domains)
        self.references = load_references(self.cfg, self.corpus)
        self.L = self.cfg.env.num_norm_probes
        self.observation_space, self.action_space, self.reward_space = state_spaces(self.k, self.L)
        seq = self.cfg.model.seq_len
        limit = self.cfg.env.eval_batches * self.cfg.train.batch_size
        self._val_blocks = [torch.from_numpy(self.corpus.blocks(d, "validation", seq, limit)) for d in self.domains]
        if any(len(b) == 0 for b in self._val_blocks):
            short = [d for d, b in zip(self.domains, self._val_blocks) if len(b) == 0]
            capped = [
                e for e in self.corpus.manifest["domains"] if e["name"] in short and e["bytes"] < e["input_bytes"]
            ]
            cap = "".join(
                f"; data.max_bytes_per_domain={self.cfg.data.max_bytes_per_domain} kept {e['bytes']} of "
                f"{e['name']}'s {e['input_bytes']} bytes"
                for e in capped
            )
            raise CorpusError(
                f"Domains {short} have fewer than seq_len={seq} validation tokens{cap}: add text or raise "
                f"data.val_fraction{' or data.max_bytes_per_domain' if capped else ''}."
            )
        self.backend: TorchBackend | None = None
        self._alignment: AlignmentProbe | None = None
        self._truncated = False  # the episode reached train.total_steps: step() waits for reset()
        self._warned_box = False  # an out-of-box action is warned about once per env

    # ------------------------------------------------------------------------------------------
    def observation_layout(self) -> dict[str, slice]:
        """Where each part of the state lives in the flat observation."""
        return observation_layout(self.k, self.L)

    def make_backend(self, model) -> TorchBackend:
        """The training backend named by ``train.backend`` (torch, or deepspeed: lm/deepspeed_backend.py)."""
        if self.cfg.train.backend == "deepspeed":
            from ..lm.deepspeed_backend import DeepSpeedBackend

            return DeepSpeedBackend(model, self.cfg.train)
        return TorchBackend(model, self.cfg.train)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        run_seed = seed if seed is not None else int(self.np_random.integers(2**31))
        run_seed = distributed.broadcast_int(run_seed)  # multi-rank: rank 0's seed (same model, same batches)
        if self._alignment is not None:
            self._alignment.close()
        model = build_model(self.cfg.model, self.corpus.vocab_size, run_seed)
        self.backend = self.make_backend(model)
        self._check_vocab(self.backend.model)
        layers = probe_layers(self.backend.model, self.cfg.model)
        modules = [m for _, m in layers]
        self._norm_probe = norm_probe(self.backend.model, self.cfg.model, self.L)
        self._alignment = (
            AlignmentProbe(
                [modules[i] for i in layers_at_depths(len(modules), self.cfg.env.reward_depths)],
                self.k,
                self.cfg.env.reward_variant,
                self.cfg.env.reward_sketch,
                seed=run_seed,
                target=self.metric.mask if self.cfg.env.reward_target == "eval_domains" else None,
            )
            if self.cfg.env.compute_reward
            else None
        )
        t = self.cfg.train
        self.sampler = DomainSampler(
            self.corpus, self.cfg.model.seq_len, t.batch_size, t.exploration_share, t.exploration_floor, run_seed
        )
        self.t = 0
        self.tokens = 0
        self._truncated = False
        self._nonfinite = 0
        self.skipped_steps = 0
        first_blocks = [b[:1] for b in self._val_blocks]
        initial_losses = evaluate_domains(self.backend, first_blocks, t.batch_size)
        self.state = TrainingState(t.total_steps, self.corpus.vocab_size, initial_losses, self._norm_probe.norms())
        info = {
            "step": 0,
            "tokens": 0,
            "domain_losses": initial_losses,
            "domain_weights": np.full(self.k, 1.0 / self.k),
        }
        return self._observation(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, StepInfo]:
        if self.backend is None:
            raise RuntimeError("Call reset() before step().")
        if self._truncated:
            raise RuntimeError(
                f"The episode was truncated at step {self.t} (train.total_steps={self.cfg.train.total_steps}): "
                "call reset() to start a new one before step()."
            )
        # Multi-rank: rank 0's action on every rank (the others may pass None); single process: the action.
        alpha = distributed.from_main(lambda: self._weights(action), (self.k,))
        t = self.cfg.train
        batch = self.sampler.sample(alpha)
        out = train_step(
            self.backend, batch, alpha, t.loss_weighting, t.micro_batch_size, self._alignment, self._norm_probe
        )
        if out.finite:
            self._nonfinite = 0
            self.state.record(out.domain_losses, out.weight_norms, out.update_norms)
        else:
            self._nonfinite += 1
            self.skipped_steps += 1
            if self._nonfinite >= t.max_nonfinite_steps:
                raise NonFiniteLossError(
                    f"{self._nonfinite} consecutive steps had a non-finite loss or gradient (last at step {self.t + 1}): "
                    "lower train.lr, check the data, or raise train.max_nonfinite_steps."
                )
        vector = out.reward if out.reward is not None else np.zeros(self.k)
        self.t += 1
        self.tokens += int(batch.input_ids.numel())
        info = step_info(self.t, alpha, batch, self.state, vector)
        info.update(
            tokens=self.tokens,
            samples_seen=self.sampler.samples_seen.copy(),
            epochs=self.sampler.epochs(),
            objective=out.objective,
            grad_norm=out.grad_norm,
            lr=out.lr,
            skipped=not out.finite,
            skipped_steps=self.skipped_steps,
        )
        truncated = self._truncated = self.t >= t.total_steps
        interval = self.cfg.env.eval_interval
        if interval and (self.t % interval == 0 or truncated):
            val = self.evaluate("validation")
            info.update(val_loss=val, val_ppl=np.exp(val), val_metric=self.metric.value(val))
        if truncated and self.cfg.env.episode == "scoring":
            info.update(self.episode_result())
        reward = scalarize(vector, alpha, self.cfg.env.scalarization)
        return self._observation(), reward, False, bool(truncated), info

    def _weights(self, action: Any) -> np.ndarray:
        """``action_to_weights``, with a warning (once per env) for an action outside the action space."""
        alpha = action_to_weights(action, self.k)
        a = np.asarray(action, dtype=np.float64)
        if not self._warned_box and (np.any(a < 0) or np.any(a > 1)):
            self._warned_box = True
            warnings.warn(
                f"PretrainEnv got action {a.tolist()} outside its action space [0, 1]^{self.k}: negative weights "
                f"count as 0 and the rest are divided by their sum ({alpha.round(4).tolist()}). Warned once per env.",
                stacklevel=5,  # the caller of step() (through from_main and its lambda)
            )
        return alpha

    def _check_vocab(self, model) -> None:
        """Every token id of the corpus must index the model's embedding and output layers."""
        sizes = [
            m.weight.shape[0] for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None
        ]
        if min(sizes) < self.corpus.vocab_size:
            raise ConfigError(
                f"Vocabulary mismatch: the model has {min(sizes)} token embeddings but the corpus {self.corpus.root} "
                f"uses {self.corpus.vocab_size} token ids (its tokenizer.json): build the model with "
                f"vocab_size={self.corpus.vocab_size} (build_model(cfg.model, env.corpus.vocab_size, seed)), or rebuild "
                f"the corpus with a tokenizer of at most {min(sizes)} tokens (data.tokenizer or data.vocab_size)."
            )

    def evaluate(self, split: str = "validation", final: bool = False) -> np.ndarray:
        """Per-domain mean loss on held-out data: during training the first ``env.eval_batches`` batches of
        the split (for ``validation`` the env's fixed blocks, part of the state), at the end of an episode
        (``final``) the first ``task.eval_tokens`` tokens of each scored domain (``final_eval_sequences``)."""
        if split == "validation" and not final:
            blocks = self._val_blocks
        else:
            during_training = self.cfg.env.eval_batches * self.cfg.train.batch_size
            blocks = [
                torch.from_numpy(
                    self.corpus.blocks(
                        d,
                        split,
                        self.cfg.model.seq_len,
                        final_eval_sequences(self.cfg, d) if final else during_training,
                    )
                )
                for d in self.domains
            ]
        return evaluate_domains(self.backend, blocks, self.cfg.train.batch_size)

    def episode_result(self) -> dict[str, Any]:
        """The episode's result, from the final evaluation: the task metric on the validation and test splits,
        the paper's arithmetic mean beside each, and the normalised score on test (None while the task has no
        references)."""
        val, test = self.evaluate("validation", final=True), self.evaluate("test", final=True)
        test_metric = self.metric.value(test)
        return {
            "final_val_loss": val,
            "final_val_metric": self.metric.value(val),
            "final_val_metric_arith": self.metric.arithmetic(val),
            "test_loss": test,
            "test_ppl": np.exp(test),
            "test_metric": test_metric,
            "test_metric_arith": self.metric.arithmetic(test),
            "score": normalised_score(test_metric, self.references),
        }

    def state_dict(self) -> dict[str, Any]:
        """The environment's own state, plain values only (the model and optimiser are the backend's:
        ``backend.save_checkpoint``): step, tokens, the six-part training state, the sampler (its RNG,
        per-domain positions, epochs and counts), the non-finite counters and ``np_random``."""
        if self.backend is None:
            raise RuntimeError("Call reset() before state_dict().")
        return {
            "t": self.t,
            "tokens": self.tokens,
            "nonfinite": self._nonfinite,
            "skipped_steps": self.skipped_steps,
            "training_state": self.state.state_dict(),
            "sampler": self.sampler.state_dict(),
            "np_random": self.np_random.bit_generator.state,
            "np_random_seed": self._np_random_seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` into an environment reset with the same config and seed."""
        if self.backend is None:
            raise RuntimeError("Call reset() before load_state_dict().")
        self.t, self.tokens = int(state["t"]), int(state["tokens"])
        self._truncated = self.t >= self.cfg.train.total_steps
        self._nonfinite, self.skipped_steps = int(state["nonfinite"]), int(state["skipped_steps"])
        self.state.load_state_dict(state["training_state"])
        self.sampler.load_state_dict(state["sampler"])
        self.np_random.bit_generator.state = state["np_random"]
        self._np_random_seed = state["np_random_seed"]

    def _observation(self) -> np.ndarray:
        obs = self.state.observation(self.sampler.samples_seen, self.t)
        if self.cfg.env.drop_state:  # ablations: the agent no longer sees these parts
            layout = self.observation_layout()
            for part in self.cfg.env.drop_state:
                obs[layout[part]] = 0.0
        return obs

    def close(self):
        if self._alignment is not None:
            self._alignment.close()
            self._alignment = None
        self.backend = None
