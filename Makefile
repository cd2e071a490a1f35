# Set-up and checks. Every target installs what it needs by itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: test demo lint java flink venv clean bench

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

java:
	bash scripts/ensure-java

flink: venv java
	$(BIN)/flink-task local-flink install

test: venv flink
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check flink_task tests benchmarks scripts
	$(BIN)/ruff format --check flink_task tests benchmarks scripts
	$(BIN)/mypy flink_task benchmarks

demo: venv flink
	$(BIN)/python scripts/demo.py

bench: venv flink
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
