"""Plots people would rather look at than CSVs: weights, perplexity curves, per-domain perplexity."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_weights(
    steps: np.ndarray, weights: np.ndarray, domains: list[str], path: Path, title: str = "Domain weights"
) -> None:
    """Stacked domain weights α over training steps (the paper's Fig. 7)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.stackplot(steps, weights.T, labels=domains, alpha=0.9)
    ax.set(xlabel="step", ylabel="weight", title=title, ylim=(0, 1), xlim=(steps.min(), steps.max()))
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_val_ppl(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "Average validation perplexity"
) -> None:
    """Average validation perplexity over steps, one line per method or domain (the paper's Fig. 1a)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (steps, ppl) in curves.items():
        ax.plot(steps, ppl, marker="o", markersize=3, label=name)
    ax.set(xlabel="step", ylabel="perplexity", title=title, yscale="log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_domain_ppl(
    values: Mapping[str, np.ndarray], domains: list[str], path: Path, title: str = "Per-domain test perplexity"
) -> None:
    """Grouped bars: perplexity per domain for each method (the paper's Fig. 4)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(domains)), 4))
    width = 0.8 / max(1, len(values))
    x = np.arange(len(domains))
    for j, (name, ppl) in enumerate(values.items()):
        ax.bar(x + j * width - 0.4 + width / 2, ppl, width, label=name)
    ax.set_xticks(x, domains, rotation=30, ha="right")
    ax.set(ylabel="perplexity", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def diagnostic_columns(metrics: Mapping[str, np.ndarray]) -> list[str]:
    """The ``diag/<name>`` columns of a run's metrics that hold a value."""
    return [key for key in metrics if key.startswith("diag/") and np.isfinite(metrics[key]).any()]


def plot_diagnostics(metrics: Mapping[str, np.ndarray], path: Path, title: str = "Agent diagnostics") -> bool:
    """One panel per ``diag/<name>`` column of a run's metrics that holds a value; False (no file) if none does."""
    columns = diagnostic_columns(metrics)
    if not columns:
        return False
    fig, axes = plt.subplots(len(columns), 1, figsize=(8, 1.8 * len(columns) + 0.6), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], columns):
        seen = np.isfinite(metrics[key])
        ax.plot(metrics["step"][seen], metrics[key][seen], linewidth=1)
        ax.set_ylabel(key.removeprefix("diag/").replace("_", " "), fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
