# chatlab: every target sets itself up; `make demo` and `make test` work on a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint clean

# The virtualenv is rebuilt whenever pyproject.toml changes.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

# A classroom of 30 bots chats for 15 s on an in-process reference server; the
# checker's verdict and the figures are printed, and the report's path is shown.
demo: $(INSTALLED)
	$(BIN)/chatlab swarm bots/classroom.py --bots 30 --duration 15 --seed 1 --out runs/demo

test: $(INSTALLED)
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff check chatlab tests exercises

clean:
	rm -rf $(VENV) build .pytest_cache
