# make run: set up .venv and run the main job; make test: set up .venv with the test extras and run the suite.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
TORCH_PIN = torch==2.13.0

.PHONY: run test venv-run venv-test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv-run: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_PIN)" -e ".[llm]"

venv-test: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_PIN)" -e ".[all]"

run: venv-run
	$(BIN)/puredl finetune run-all --config configs/embedded.sdn

test: venv-test
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: venv-test
	$(BIN)/ruff check src tests benchmarks

bench: venv-test
	$(BIN)/python benchmarks/ops.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
