# Two commands do everything: `make run` (the live demo) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-reliability lint format bench install run-packages test-packages clean

run: install run-packages
	$(BIN)/chs dev

# On Apache Kafka (the release production runs); then the dev-broker subset on Tansu, the
# broker of `make run`.
test: install test-packages lint
	$(BIN)/pytest
	CHS_TEST_BROKER=tansu $(BIN)/pytest -m dev_broker

# The fault-injection and scale-out tests (make test runs all but the scale-out ones).
test-reliability: install test-packages
	$(BIN)/pytest -m reliability

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install run-packages
	$(BIN)/python -m bench.run

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is needed (python3.11 or python3)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "$(PYTHON) is older than 3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
		{ echo "creating the venv failed: install the Debian package python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run-packages:
	@scripts/ensure-packages redis-server:redis-server

# The tests also run promtool, a real Prometheus server (Debian package prometheus),
# docker-compose config (Debian package docker-compose; no Docker engine needed), headless
# Chromium, and Apache Kafka from its jars (Java 17; Maven fetches the jars once).
test-packages:
	@scripts/ensure-packages redis-server:redis-server promtool:prometheus docker-compose:docker-compose \
		chromium:chromium java:openjdk-17-jre-headless mvn:maven

clean:
	rm -rf $(VENV) .run .chs-data .pytest_cache .mypy_cache .ruff_cache *.egg-info
