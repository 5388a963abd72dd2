# The two commands: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint install install-dev kafka-up kafka-down kafka-reset bench clean

$(VENV)/.deps: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements-dev.txt $(VENV)/.deps
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.deps

install-dev: $(VENV)/.dev-deps

## Install and start the app on the embedded bus (http://127.0.0.1:8501).
run: install
	$(VENV)/bin/streamlit run app.py

## Install, fetch Kafka, Chromium, Redis and PostgreSQL, lint and type-check, then run the whole suite. The suite
## starts and stops a broker of its own (scripts/kafka.sh --test: .kafka/test, KAFKA_TEST_PORT or
## KAFKA_PORT+2), never the desk's.
test: install-dev
	scripts/setup-chromium.sh
	scripts/setup-redis.sh
	scripts/setup-postgres.sh
	scripts/kafka.sh fetch
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest

## The linter (ruff: lint and format) and the type checker (mypy) over the whole tree.
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## The desk's local Kafka broker (log in .kafka/data, port KAFKA_PORT or 39092): start it in the
## background and print its bootstrap address; stop it; stop it and delete its topics, messages and
## groups after a confirmation (CONFIRM=yes make kafka-reset answers it, for scripts).
kafka-up:
	@scripts/kafka.sh start

kafka-down:
	@scripts/kafka.sh stop

kafka-reset:
	@scripts/kafka.sh reset

## Bus throughput on both backends (starts the local broker if needed).
bench: install
	$(PY) -m bench.bus --backend embedded --messages 200000
	KAFKA_BOOTSTRAP_SERVERS=$$(scripts/kafka.sh start) $(PY) -m bench.bus --backend kafka --messages 300000

clean:
	scripts/kafka.sh stop
	scripts/kafka.sh --test stop
	rm -rf $(VENV) .kafka .pytest_cache test-results
