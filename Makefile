# Two commands on a fresh machine: `make demo` and `make test`. Each bootstraps .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: venv demo test lint typecheck unit bench sysext docs clean

venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/python -m tools.demo

lint: venv
	$(BIN)/ruff check ghost_backup tests tools benchmarks

typecheck: venv
	$(BIN)/mypy ghost_backup

unit: venv
	$(BIN)/pytest tests

test: lint typecheck unit

bench: venv
	$(BIN)/python -m benchmarks.run

# Flatcar system extensions: dist/ghost-backup-<version>-x86-64.raw, dist/rclone-<version>-x86-64.raw,
# dist/SHA256SUMS (needs squashfs-tools and binutils; see docs/install-flatcar.md).
sysext: venv
	VENV=$(VENV) packaging/sysext/build.sh dist

docs: venv
	$(BIN)/python -m tools.gen_docs

clean:
	rm -rf $(VENV) dist build .mypy_cache .ruff_cache .pytest_cache
