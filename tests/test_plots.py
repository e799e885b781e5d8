"""Plots: one colour per domain and per method across plots, distinct for any count, unscored domains marked,
the stacked legend in stack order, and the comparison's seed bands (the data drawn, not the pixels)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from scipy import stats

from acodm_gym.runs import plots
from acodm_gym.runs.compare import seed_band

NOISY = ["dictionary", "code", "techdocs", "math", "dialogue", "legal", "books", "religious", "salad", "boilerplate"]


@pytest.mark.parametrize("n", [1, 4, 10, 11, 20, 21, 64])
def test_every_name_gets_its_own_colour_for_any_count(n):
    names = [f"d{i}" for i in range(n)]
    palette = plots.colors(names)
    assert list(palette) == names and len(set(palette.values())) == n
    assert plots.colors(names) == palette  # by position: the same list, the same colours
    assert all(c != to_rgba(plots.AGGREGATE) for c in palette.values())


def test_a_domain_has_one_colour_across_a_runs_plots_and_unscored_domains_are_marked(tmp_path):
    """Noisy: 10 domains and the task metric are 11 distinct lines; each domain's line has its stacked area's
    colour; the stacked legend reads top-down as the stack; salad and boilerplate are marked."""
    k, steps = len(NOISY), np.arange(1, 6)
    weights = np.random.default_rng(0).dirichlet(np.ones(k), size=len(steps))
    unscored = ["salad", "boilerplate"]
    stacked = plots.plot_weights(steps, weights, NOISY, tmp_path / "w.png", unscored=unscored)
    assert [label for label, _ in stacked] == [f"{d} (unscored)" if d in unscored else d for d in NOISY][::-1]
    curves = {"task metric (geometric mean)": (steps, np.linspace(50, 20, 5))}
    curves.update({d: (steps, np.linspace(60 + i, 30, 5)) for i, d in enumerate(NOISY)})
    lines = plots.plot_val_ppl(curves, tmp_path / "v.png", palette=plots.colors(NOISY), unscored=unscored)
    assert len(lines) == 11 and len({c for _, c in lines}) == 11
    assert lines[0] == ("task metric (geometric mean)", to_rgba(plots.AGGREGATE))
    area = {label: c[:3] for label, c in stacked}
    assert {label: c[:3] for label, c in lines[1:]} == area
    assert "salad (unscored)" in area and "boilerplate (unscored)" in area and "code" in area


def test_seed_band_is_the_95_percent_interval_over_seeds_per_step():
    curves = np.array([[30.0, 20.0, 15.0], [34.0, 21.0, 15.0], [32.0, 25.0, 15.0]])
    mean, low, high = seed_band(curves)
    half = stats.t.ppf(0.975, 2) * curves.std(axis=0, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(mean, [32.0, 22.0, 15.0])
    np.testing.assert_allclose(high - mean, half, rtol=1e-4)
    np.testing.assert_allclose(mean - low, half, rtol=1e-4)
    assert high[2] == low[2] == 15.0  # no spread, no band
    one = seed_band(curves[:1])
    assert all(np.array_equal(part, curves[0]) for part in one)  # a single seed: no band


def test_comparison_plots_draw_each_method_in_one_colour_with_its_band_and_error_bars(tmp_path):
    methods = plots.colors(["natural", "uniform", "acodm"])
    steps = np.array([10, 20])
    curves = {m: (steps, np.array([40.0 - i, 30.0 - i])) for i, m in enumerate(methods)}
    bands = {m: (c - 1.0, c + 1.0) for m, (_, c) in curves.items()}
    lines = plots.plot_val_ppl(curves, tmp_path / "v.png", palette=methods, bands=bands)
    values = {m: np.array([20.0, 30.0]) for m in methods}
    errors = {m: np.array([1.0, 2.0]) for m in methods}
    bars = plots.plot_domain_ppl(values, ["a", "b"], tmp_path / "t.png", errors=errors, palette=methods)
    assert lines == bars == list(methods.items())
