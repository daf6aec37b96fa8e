# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it
# needs into .venv first (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	# the CPU wheel of torch first, so that nothing pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	# llama-cpp-python builds from source the first time (about 9 minutes on 2 cores),
	# portably: see the script for why
	PIP=$(BIN)/pip PY=$(BIN)/python bash scripts/install-llama.sh
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# the engine demo, then the service with a demo twin fed live over MQTT (Ctrl-C stops it)
demo: $(STAMP)
	command -v mosquitto >/dev/null || bash scripts/system-deps.sh mosquitto
	$(BIN)/lmtwin demo
	$(BIN)/lmtwin serve --demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy

# every test CI runs: the Debian servers and browser the tests start are installed first,
# and a test that would skip for want of one fails instead (LMTWIN_NO_SKIP)
test: lint
	bash scripts/system-deps.sh
	LMTWIN_NO_SKIP=1 $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/lmtwin bench engine
	$(BIN)/lmtwin bench tasks --quick

clean:
	rm -rf $(VENV) out
