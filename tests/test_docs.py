"""The documentation: the README's quick start and links, the docs site (built strict, so a broken link
fails), and benchmarks/RESULTS.md equal to what the results files give."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import benchmark_script

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_keeps_the_two_commands_and_links_only_to_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1]
    assert quick_start.split("```")[1].split() == ["make", "run", "make", "test"]
    links = [t for t in re.findall(r"\]\(([^)]+)\)", readme) if "://" not in t]
    assert "docs/environment.md" in links and "benchmarks/RESULTS.md" in links
    missing = [t for t in links if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_docs_build_strict_and_a_broken_link_or_anchor_fails_the_build(tmp_path):
    """CI installs the ``docs`` extra; without it there is nothing to build with."""
    pytest.importorskip("material", reason="the docs extra (mkdocs-material) is not installed")
    done = _mkdocs(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert "Benchmark tasks" in (tmp_path / "site" / "results" / "index.html").read_text()  # the included RESULTS.md
    # the same sources with one broken link, then one broken anchor: each fails the strict build, naming it
    for broken in ("[gone](no-such-page.md)", "[gone](environment.md#no-such-section)"):
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        for name in ("mkdocs.yml", "README.md", "docs", "benchmarks/RESULTS.md"):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, copy / name)
        with (copy / "docs" / "agents.md").open("a") as f:
            f.write(f"\n{broken}\n")
        failed = _mkdocs(copy / "mkdocs.yml", tmp_path / "broken")
        assert failed.returncode != 0 and "agents.md" in failed.stderr, failed.stderr


def test_results_md_is_generated_from_the_results_files(capsys):
    results_md = benchmark_script("results_md")
    assert results_md.main(["--check"]) == 0, capsys.readouterr().out
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    for path in sorted((ROOT / "benchmarks" / "results" / "tasks").glob("*.json")):
        result = json.loads(path.read_text())
        section = text.split(f"### `{result['task']}`", 1)[1].split("\n### ", 1)[0]
        assert "Code version: " in section  # one table per task, with the code version of its runs
        for method in result["methods"]:
            assert f"\n| {method} | {len(result['methods'][method]['seeds'])} | " in section
