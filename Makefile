# The README's two commands: `make demo` and `make test`. Both start from a clean clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typing unit venv system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

venv: $(STAMP)

# Debian packages for the lab fleet (debootstrap, apt-utils); a no-op once installed.
system-deps:
	@bash scripts/install-system-deps.sh

demo: $(STAMP) system-deps
	@bash scripts/demo.sh

test: $(STAMP) system-deps
	$(BIN)/tox run -e lint,typing,py

# Quicker loops while developing (same tools, no tox environments).
lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
typing: $(STAMP)
	$(BIN)/mypy
unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

clean:
	rm -rf $(VENV) .tox .mypy_cache .ruff_cache .pytest_cache
