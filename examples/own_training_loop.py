"""Let a learned (or bandit, or static) mixture choose the domain weights in your own PyTorch loop.

    python examples/own_training_loop.py --agent odm
    python examples/own_training_loop.py --actor runs/acodm-proxy-stage-seed0/agent.pt

The model, optimiser and loop are yours; acodm-gym supplies the batches (drawn from P_α) and
the agent that sets α from the training state it reads off your model.
"""

from __future__ import annotations

import argparse

import torch

from acodm_gym.config import load_config
from acodm_gym.data.corpus import open_corpus
from acodm_gym.lm.models import build_model
from acodm_gym.lm.step import sequence_losses
from acodm_gym.mixing import DomainMixer


def main(argv=None) -> DomainMixer:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="config whose data section names the corpus")
    parser.add_argument("--agent", default="natural", help="natural, uniform or odm")
    parser.add_argument("--actor", default=None, help="agent.pt of an acodm run: steer with the frozen actor")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--export", default="mixture.json", help="where to write the weight schedule")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)

    cfg = load_config(args.config, args.overrides)
    corpus = open_corpus(cfg.data)
    m = cfg.model
    model = build_model(m, corpus.vocab_size, seed=0)  # any GPT-NeoX or LLaMA causal LM of yours works here
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    agent = {"name": "frozen", "options": {"path": args.actor}} if args.actor else args.agent
    mixer = DomainMixer(
        corpus, model, agent, total_steps=args.steps, batch_size=cfg.train.batch_size, seq_len=m.seq_len
    )

    for step in range(1, args.steps + 1):
        batch = mixer.next_batch()
        seq_loss = sequence_losses(model(input_ids=batch.input_ids).logits, batch.input_ids)
        (seq_loss * mixer.loss_weights(batch)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        mixer.observe(seq_loss.detach())
        if step % 50 == 0 or step == args.steps:
            weights = " ".join(f"{d}={w:.2f}" for d, w in zip(corpus.domains, mixer.weights))
            print(f"step {step}: loss {seq_loss.mean():.3f}  {weights}")
    print(f"weight schedule: {mixer.export(args.export)}")
    return mixer


if __name__ == "__main__":
    main()
