# The two quick-start commands: `make run` (main job on the embedded default) and `make test` (ruff check, then pytest).
# Both create or reuse .venv and install the project with CPU torch 2.13.0 pinned in the same
# pip command, so no dependency can pull a CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0

.PHONY: run test install docs clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" -e ".[test,deepspeed]"
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	OMP_NUM_THREADS=2 $(VENV)/bin/acodm-gym run

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests

# The docs site (docs/, mkdocs.yml) into site/, strict: a broken link, anchor or included file fails it.
$(VENV)/.installed-docs: $(VENV)/.installed
	$(PY) -m pip install -q "$(TORCH)" -e ".[docs]"
	touch $@

docs: $(VENV)/.installed-docs
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site
