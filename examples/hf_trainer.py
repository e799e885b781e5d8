"""Let a learned (or bandit, or static) mixture choose the domain weights for the Hugging Face Trainer.

    python examples/hf_trainer.py --agent odm
    python examples/hf_trainer.py --actor runs/acodm-proxy-stage-seed0/agent.pt --grad-accum 2

The model and TrainingArguments are yours; MixingTrainer trains on batches drawn from the
mixer's P_α, lets the agent observe every optimiser step, logs weight/<domain> with each
training loss and writes <output-dir>/mixture.json at the end (needs pip install 'acodm-gym[hf]').
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from transformers import TrainingArguments

from acodm_gym.config import load_config
from acodm_gym.data.corpus import open_corpus
from acodm_gym.hf_trainer import MIXTURE_FILE, MixingTrainer
from acodm_gym.lm.models import build_model
from acodm_gym.mixing import DomainMixer


def main(argv=None) -> DomainMixer:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="config whose data section names the corpus")
    parser.add_argument("--agent", default="natural", help="natural, uniform or odm")
    parser.add_argument("--actor", default=None, help="agent.pt of an acodm run: steer with the frozen actor")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    parser.add_argument("--output-dir", default="runs/hf-trainer", help="Trainer output; mixture.json goes here")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)

    cfg = load_config(args.config, args.overrides)
    corpus = open_corpus(cfg.data)
    m = cfg.model
    model = build_model(m, corpus.vocab_size, seed=0)  # any GPT-NeoX or LLaMA causal LM of yours works here
    agent = {"name": "frozen", "options": {"path": args.actor}} if args.actor else args.agent
    # the mixer draws one optimiser step's rows: per_device_train_batch_size × gradient_accumulation_steps
    mixer = DomainMixer(
        corpus, model, agent, total_steps=args.steps, batch_size=cfg.train.batch_size, seq_len=m.seq_len
    )
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=cfg.train.batch_size // args.grad_accum,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=cfg.train.lr,
        logging_steps=max(1, args.steps // 6),
        save_strategy="no",  # checkpoints would not hold the mixer's state
        disable_tqdm=True,
    )
    MixingTrainer(mixer, model=model, args=training_args).train()  # prints each log: loss and weight/<domain>

    mean = " ".join(f"{d}={w:.2f}" for d, w in zip(corpus.domains, np.mean(mixer.schedule, axis=0)))
    print(f"{mixer.step} steps, mean weights {mean}; weight schedule: {Path(args.output_dir) / MIXTURE_FILE}")
    return mixer


if __name__ == "__main__":
    main()
