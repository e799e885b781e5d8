"""Plots people would rather look at than CSVs: weights, perplexity curves, per-domain perplexity.

Colours come from ``colors``: one per name by its position in a list, so a domain (by the corpus's domain
order) has the same colour in every plot of a run and of a comparison, and a method the same colour in every
plot of a comparison. Domains the task does not score (``unscored``: planted junk) are hatched in the
stacked weights, dotted in curves and marked on bar labels. Each plot returns its legend as (label, colour)
pairs, top to bottom.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

Color = tuple[float, float, float, float]
Legend = list[tuple[str, Color]]
AGGREGATE = "black"  # a curve that is no domain or method (the task metric): black and dashed


def colors(names: Sequence[str]) -> dict[str, Color]:
    """A distinct colour for each name, by position: tab10 up to 10 names, tab20 up to 20, then evenly spaced
    hues of ``turbo`` (no two names share a colour for any count)."""
    n = len(names)
    if n <= 10:
        values = plt.get_cmap("tab10").colors[:n]
    elif n <= 20:
        tab20 = plt.get_cmap("tab20").colors
        values = [tab20[i] for i in (*range(0, 20, 2), *range(1, 20, 2))][:n]  # the ten strong shades first
    else:
        values = plt.get_cmap("turbo")(np.linspace(0.02, 0.98, n))
    return {name: to_rgba(c) for name, c in zip(names, values)}


def _label(name: str, unscored: Sequence[str]) -> str:
    return f"{name} (unscored)" if name in unscored else name


def _color(handle) -> Color:
    """A legend handle's colour: a patch's fill (stacked areas, bars), a line's colour."""
    return to_rgba(handle.get_facecolor() if isinstance(handle, Patch) else handle.get_color())


def _save(fig, ax, path: Path, handles=None, outside: bool = False) -> Legend:
    """Draw the legend (beside the axes if ``outside``), write the figure; the legend's (label, colour) pairs."""
    kwargs = {"loc": "center left", "bbox_to_anchor": (1.0, 0.5)} if outside else {}
    legend = ax.legend(handles=handles, fontsize=8, **kwargs)  # handles None: every labelled artist, in order
    entries = [(text.get_text(), _color(handle)) for text, handle in zip(legend.get_texts(), legend.legend_handles)]
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return entries


def plot_weights(
    steps: np.ndarray,
    weights: np.ndarray,
    domains: list[str],
    path: Path,
    title: str = "Domain weights",
    unscored: Sequence[str] = (),
) -> Legend:
    """Stacked domain weights α over training steps (the paper's Fig. 7); the legend lists the domains top to
    bottom as they are stacked, unscored domains hatched."""
    palette = colors(domains)
    fig, ax = plt.subplots(figsize=(8, 4))
    layers = ax.stackplot(
        steps, weights.T, labels=[_label(d, unscored) for d in domains], colors=[palette[d] for d in domains]
    )
    for layer, d in zip(layers, domains):
        layer.set_alpha(0.9)
        if d in unscored:
            layer.set_hatch("//")
    ax.set(xlabel="step", ylabel="weight", title=title, ylim=(0, 1), xlim=(steps.min(), steps.max()))
    return _save(fig, ax, path, handles=layers[::-1], outside=True)


def plot_val_ppl(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    title: str = "Average validation perplexity",
    palette: Mapping[str, Color] | None = None,
    bands: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    unscored: Sequence[str] = (),
    xlabel: str = "step",
) -> Legend:
    """Validation perplexity over steps, one line per method or domain (the paper's Fig. 1a).

    :param palette: each line's colour (None: ``colors`` of the curves); a curve without one is an aggregate
        (the task metric), drawn black and dashed
    :param bands: (low, high) per curve, shaded (a comparison: the seeds' 95 % interval)
    :param unscored: curves of domains the task does not score, dotted and marked
    """
    palette = colors(list(curves)) if palette is None else palette
    fig, ax = plt.subplots(figsize=(8 if len(curves) > 6 else 7, 4))
    for name, (steps, ppl) in curves.items():
        color = palette.get(name, AGGREGATE)
        style = "--" if name not in palette else ":" if name in unscored else "-"
        ax.plot(steps, ppl, style, marker="o", markersize=3, color=color, label=_label(name, unscored))
        if bands and name in bands:
            ax.fill_between(steps, *bands[name], color=color, alpha=0.2, linewidth=0)
    ax.set(xlabel=xlabel, ylabel="perplexity", title=title, yscale="log")
    ax.grid(alpha=0.3)
    return _save(fig, ax, path, outside=len(curves) > 6)  # a run's per-domain lines: the legend beside the plot


def plot_domain_ppl(
    values: Mapping[str, np.ndarray],
    domains: list[str],
    path: Path,
    title: str = "Per-domain test perplexity",
    errors: Mapping[str, np.ndarray] | None = None,
    palette: Mapping[str, Color] | None = None,
    unscored: Sequence[str] = (),
) -> Legend:
    """Grouped bars: perplexity per domain for each method (the paper's Fig. 4).

    :param errors: per method, the half-width of each bar's error bar (a comparison: the seeds' 95 % interval)
    :param palette: each method's colour (None: ``colors`` of the methods)
    :param unscored: domains the task does not score, marked on their labels
    """
    palette = colors(list(values)) if palette is None else palette
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(domains)), 4))
    width = 0.8 / max(1, len(values))
    x = np.arange(len(domains))
    for j, (name, ppl) in enumerate(values.items()):
        yerr = errors.get(name) if errors else None
        ax.bar(x + j * width - 0.4 + width / 2, ppl, width, yerr=yerr, capsize=2, color=palette[name], label=name)
    ax.set_xticks(x, [_label(d, unscored) for d in domains], rotation=30, ha="right")
    ax.set(ylabel="perplexity", title=title)
    return _save(fig, ax, path)


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
