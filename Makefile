# PayGo — `make run` serves the embedded default; `make test` runs the suite on PostgreSQL + Redis.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

# Settings default to production (DEBUG off, secrets required): everything run from here is development.
export DEBUG ?= 1

# Unset, the suite starts an embedded PostgreSQL of its own (paygo/tests/plugin.py).
TEST_DATABASE_URL ?=
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
# The suite's environment: DATABASE_URL is left to the plugin (TEST_DATABASE_URL or its own server).
TEST_ENV := DATABASE_URL= TEST_DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)"

.PHONY: install run prod test check lint format services bench stress clean

$(STAMP): requirements.txt
	@echo "Installing PayGo's Python packages into $(VENV) (the first time: about half a minute)..."
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --progress-bar on -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Serve API, admin, docs and WebSockets on http://localhost:8000 (embedded: a private PostgreSQL
## whose data lives in var/postgres/, no Redis). A database without users of its own first gets demo
## data (seed_demo; what an interrupted seed left is completed), whose credentials are printed.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --if-empty
	$(PY) manage.py serve --port $${PORT:-8000}

## The production shape on this machine, on http://localhost:$${PORT:-8000}: nginx in front of gunicorn's
## WSGI workers (HTTP) and Daphne (WebSockets), a Celery worker and beat, after collectstatic and the
## migrations; Ctrl-C stops them all (scripts/prod.py). Production settings: DATABASE_URL, REDIS_URL,
## ALLOWED_HOSTS and the secrets from the environment (README, "One machine: make prod"). DEBUG stays off
## unless you set it.
prod: install
	bash scripts/ensure-services.sh nginx
	DEBUG=$(if $(filter environment command line,$(origin DEBUG)),$(DEBUG),0) $(PY) scripts/prod.py

## Make sure Redis runs (and PostgreSQL, when TEST_DATABASE_URL names one), then lint and run
## every test, in parallel (one pytest-xdist worker per core, each with its own database).
test: install services check
	$(TEST_ENV) $(PY) -m pytest -n auto --dist worksteal

## Long runs kept out of `make test`: 10,000 real sweeps, the simulation's 100,000 operations
## (paygo/tests/test_simulation.py; SIM_SEED=n replays a run), and the like.
stress: install services
	$(TEST_ENV) $(PY) -m pytest -m stress

services:
	TEST_DATABASE_URL="$(TEST_DATABASE_URL)" bash scripts/ensure-services.sh

check: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles  # var/ (local data, dev secrets) is kept
