# advlab: `make run` and `make test` work on a fresh clone; both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.advlab-installed
# the `oracle` extra of pyproject.toml (the authors' code the oracle tests compare against), without deps
ORACLE := $(shell sed -n 's/^oracle = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '",')

.PHONY: install run test test-fast lint bench clean

install: $(STAMP)

# uv (installed into the venv by pip) installs torch and its CUDA wheels several times faster than pip and
# reuses its cache across clones; plain pip is the fallback.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q uv 2>/dev/null || true
	@if $(BIN)/python -m uv --version >/dev/null 2>&1; then \
		echo "installing advlab[dev] into $(VENV) with uv"; \
		$(BIN)/python -m uv pip install -q --python $(BIN)/python -e '.[dev]'; \
		$(BIN)/python -m uv pip install -q --python $(BIN)/python --no-deps $(ORACLE); \
	else \
		echo "installing advlab[dev] into $(VENV) with pip"; \
		$(BIN)/python -m pip install -q -e '.[dev]'; \
		$(BIN)/python -m pip install -q --no-deps $(ORACLE); \
	fi
	@touch $(STAMP)

run: install
	$(BIN)/advlab $(ARGS)

# one pytest worker per core (pytest-xdist); each worker and the runs it starts use one thread (tests/conftest.py)
test: install
	$(BIN)/python -m pytest -q -n auto $(ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -n auto -m "not slow" $(ARGS)

lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

bench: install
	$(BIN)/python -m uv pip install -q --python $(BIN)/python --no-deps 'torchattacks>=3.5' \
		|| $(BIN)/python -m pip install -q --no-deps 'torchattacks>=3.5'
	$(BIN)/python scripts/bench_pgd.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
