"""RL-grade statistics: IQM with stratified bootstrap intervals, probability of improvement, profiles, t intervals."""

from __future__ import annotations

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics

from acodm_gym.runs import stats
from acodm_gym.runs.compare import _rl_lines, mean_interval

# 5 seeds × 3 tasks of normalised scores for three methods (fixed: the numbers below are rliable's on them)
FIXED = {
    "uniform": np.array(
        [[100.4, 92.9, 90.4], [96.1, 89.0, 91.5], [104.0, 95.2, 89.9], [99.7, 97.1, 90.8], [98.2, 91.0, 92.0]]
    ),
    "odm": np.array(
        [[92.2, 84.4, 82.2], [90.0, 80.1, 83.0], [95.5, 88.8, 81.1], [89.9, 86.0, 82.9], [93.1, 82.5, 80.7]]
    ),
    "acodm": np.array(
        [[33.6, 32.4, 40.4], [30.1, 20.2, 47.0], [36.0, 41.1, 35.3], [29.9, 35.8, 44.1], [38.2, 29.9, 33.0]]
    ),
}


def test_iqm_and_intervals_match_rliable_on_a_fixed_score_matrix():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    ours = stats.iqm_intervals(FIXED)
    assert (np.random.get_state()[1] == before).all()  # the caller's global generator is left as it was
    for method, x in FIXED.items():  # rliable called directly, with the same seed and resamples
        np.random.seed(stats.SEED)
        point, interval = rly.get_interval_estimates(
            {method: x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=stats.REPS
        )
        assert ours[method] == (point[method][0], interval[method][0, 0], interval[method][1, 0])
        iqm, low, high = ours[method]
        assert low < iqm < high
    # the IQM is the 25 % trimmed mean of the 15 runs: int(0.25 · 15) = 3 cut from each end, 9 left
    middle = np.sort(FIXED["odm"].ravel())[3:12]
    assert ours["odm"][0] == pytest.approx(middle.mean())
    assert stats.iqm_intervals(FIXED) == ours  # the same report every time


def test_probability_of_improvement_on_a_constructed_case():
    scores = {
        # task a: 6 of the 9 pairs of runs favour "mine" (10>5; 20>15, 20>5; 30>15, 30>25, 30>5): 2/3
        # task b: every run of "mine" above every run of uniform: 1; across both tasks: (2/3 + 1) / 2
        "mine": {"a": {0: 10.0, 1: 20.0, 2: 30.0}, "b": {0: 9.0, 1: 8.0, 2: 7.0, 3: 100.0}},
        "uniform": {"a": {0: 15.0, 1: 25.0, 2: 5.0}, "b": {0: 1.0, 1: 2.0, 2: 3.0}},
    }
    mats = stats.matrices(scores, ["a", "b"])
    assert mats["mine"].shape == (3, 2)  # seed 3 is on task b only: the seeds every task has
    assert stats.improvement(mats, "uniform") == pytest.approx({"mine": 5 / 6, "uniform": 0.5})
    assert stats.improvement(stats.matrices(scores, ["a"]), "uniform")["mine"] == pytest.approx(2 / 3)
    assert stats.improvement(mats, "odm") == {}  # no such baseline


def test_tables_per_task_and_across_tasks_and_the_profile(tmp_path):
    scores = {
        m: {t: dict(enumerate(x[:, i])) for i, t in enumerate(["noisy", "skewed", "target"])} for m, x in FIXED.items()
    }
    lines = stats.rl_tables(scores, ["noisy", "skewed", "target"])
    assert "| method | noisy | skewed | target | all tasks |" in lines
    iqm = stats.iqm_intervals({"odm": FIXED["odm"]})["odm"]
    odm = next(line for line in lines if line.startswith("| odm | ") and "[" in line)
    assert odm.endswith(f"| {iqm[0]:.1f} [{iqm[1]:.1f}, {iqm[2]:.1f}] |")
    assert "| acodm | 0.00 / 0.00 | 0.00 / 0.00 | 0.00 / 0.00 | 0.00 / 0.00 |" in lines
    # a compare report of one task: its table and its performance profile
    results = {m: {"seeds": [0, 1, 2, 3, 4], "score": list(x[:, 0])} for m, x in FIXED.items()}
    lines = _rl_lines(results, "noisy", tmp_path)
    assert "| method | noisy |" in lines and (tmp_path / "profile.png").stat().st_size > 10_000
    assert _rl_lines({m: {"seeds": [0], "score": [None]} for m in FIXED}, "noisy", tmp_path / "x") == []


def test_the_interval_uses_students_t_at_any_number_of_seeds():
    values = [0.0, 1.0] * 6  # 12 seeds: t(0.975, 11) = 2.201, not the normal's 1.96
    mean, half = mean_interval(values)
    assert mean == 0.5 and half == pytest.approx(2.201 * np.std(values, ddof=1) / np.sqrt(12), rel=1e-3)
    assert mean_interval([1.0]) is None
