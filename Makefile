# PayGo — `make run` serves the embedded default; `make test` runs the suite on PostgreSQL + Redis.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

# Settings default to production (DEBUG off, secrets required): everything run from here is development.
export DEBUG ?= 1

TEST_DATABASE_URL ?= postgres://postgres:postgres@127.0.0.1:5432/paygo
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1

.PHONY: install run test check lint format services bench stress clean

$(STAMP): requirements.txt
	@echo "Installing PayGo's Python packages into $(VENV) (the first time: about half a minute)..."
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --progress-bar on -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Serve API, admin, docs and WebSockets on http://localhost:8000 (embedded: SQLite, no Redis).
## A database without users first gets demo data (seed_demo), whose credentials are printed.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --if-empty
	$(PY) manage.py serve --port $${PORT:-8000}

## Make sure PostgreSQL and Redis run (installing or starting them), then lint and run every test.
test: install services check
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest

## Long runs kept out of `make test`: 10,000 real sweeps, and the like.
stress: install services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest -m stress

services:
	bash scripts/ensure-services.sh

check: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles  # var/ (local data, dev secrets) is kept
