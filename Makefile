# make run: set up .venv and run the main job; make test: set up .venv with the test extras and run the suite.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
TORCH_PIN = torch==2.13.0

.PHONY: run test test-pythons venv-run venv-test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv-run: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_PIN)" -e ".[llm]"

venv-test: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_PIN)" -e ".[all]"

run: venv-run
	$(BIN)/puredl finetune run-all --config configs/embedded.sdn

# the op and autograd suites run again under each acceleration mode (AUTO with thresholds forced low
# so that graphs mix backends)
CORE_TESTS = tests/test_ops_*.py tests/test_tensor_*.py tests/test_indexing.py tests/test_autograd.py tests/test_nn*.py tests/test_optim*.py
PYTEST = $(BIN)/python -m pytest -q -p no:cacheprovider

test: venv-test
	$(PYTEST) tests
	PUREDL_ACCEL=torch $(PYTEST) $(CORE_TESTS)
	PUREDL_ACCEL=auto PUREDL_ACCEL_THRESHOLDS=low $(PYTEST) $(CORE_TESTS)

# other supported Pythons (pyenv installs): the pure-tier core suites and the examples, each in its own
# .venv-X.Y, with torch as the oracle where it installs sensibly (ORACLE=local|pypi|none, see
# .ci/test_python); the slow fine-tune tests run only in `make test`, on the default Python
EXTRA_PYTHONS ?= 3.10 3.13
ORACLE ?= local
PURE_TESTS = $(CORE_TESTS) tests/test_examples.py

test-pythons: $(addprefix test-python-,$(EXTRA_PYTHONS))

test-python-%:
	ORACLE=$(ORACLE) TORCH_PIN="$(TORCH_PIN)" bash .ci/test_python $* $(PURE_TESTS)

lint: venv-test
	$(BIN)/ruff check src tests benchmarks

bench: venv-test
	$(BIN)/python benchmarks/ops.py

clean:
	rm -rf $(VENV) $(VENV)-3.* build dist src/*.egg-info .pytest_cache .ruff_cache
