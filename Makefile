# chatlab: every target sets itself up; `make demo` and `make test` work on a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint clean notebooks lab

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

# The walkthroughs, executed top to bottom at their default sizes: executed copies and
# HTML pages to hand out land in build/notebooks/.
notebooks: $(INSTALLED)
	mkdir -p build/notebooks
	$(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.kernel_name=python3 \
		--ExecutePreprocessor.timeout=300 --output-dir build/notebooks notebooks/*.ipynb
	$(BIN)/jupyter nbconvert --to html --output-dir build/notebooks build/notebooks/*.ipynb

# JupyterLab on the walkthroughs (the `notebooks` extra is installed the first time).
$(VENV)/.notebooks: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[notebooks]'
	touch $(VENV)/.notebooks

lab: $(VENV)/.notebooks
	$(BIN)/jupyter lab notebooks/

lint: $(INSTALLED)
	$(BIN)/ruff check chatlab tests exercises notebooks

clean:
	rm -rf $(VENV) build .pytest_cache
