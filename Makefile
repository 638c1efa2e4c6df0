# hbreg — `make help` lists the targets.
PYTHON ?= python
VENV := .venv
BIN := $(VENV)/bin
HBREG := $(BIN)/hbreg

.DEFAULT_GOAL := help
.PHONY: help install test test-fast fit fit-radon compare simulate bench lint format clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/hbreg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,dask,jax]'
	@touch $@

install: $(BIN)/hbreg ## Create .venv with hbreg, its dependencies and the test tools

test: install ## Run the whole test suite, every tier (unit, sampling, process)
	$(BIN)/python -m pytest

test-fast: install ## Run the unit tier (no sampler, no subprocess) without its slow compiles
	$(BIN)/python -m pytest -m "unit and not slow"

fit: install ## Fit the radon hierarchical example
	$(HBREG) fit configs/radon_hier.yaml

fit-radon: install ## Fit the three radon models (pooled, unpooled, hierarchical)
	$(HBREG) fit configs/radon_pooled.yaml
	$(HBREG) fit configs/radon_unpooled.yaml
	$(HBREG) fit configs/radon_hier.yaml

compare: install ## Fit the radon models if needed, then rank them and draw the shrinkage
	@for name in radon_pooled radon_unpooled radon_hier; do \
	  ls -d outputs/*_$$name >/dev/null 2>&1 || $(HBREG) fit configs/$$name.yaml; \
	done
	$(HBREG) compare --latest outputs --name radon_pooled --name radon_unpooled --name radon_hier

simulate: install ## Simulate the notebook's two-group example and report the recovery
	$(HBREG) simulate configs/simulate_two_groups.yaml

bench: install ## Whole processes against a plain PyMC script first, then in-process benchmarks against plain PyMC scripts and non-centered sampling
	$(BIN)/python bench/bench_process.py
	$(BIN)/python bench/bench_radon.py
	$(BIN)/python bench/bench_scaling.py
	$(BIN)/python bench/bench_correlated.py
	$(BIN)/python bench/bench_crossed.py
	$(BIN)/python bench/bench_cbpp.py

lint: install ## Lint and check formatting with ruff
	$(BIN)/ruff check hbreg tests bench
	$(BIN)/ruff format --check hbreg tests bench

format: install ## Format the code with ruff
	$(BIN)/ruff format hbreg tests bench
	$(BIN)/ruff check --fix hbreg tests bench

clean: ## Remove the virtualenv, outputs and caches
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache .hypothesis bench/results *.egg-info
