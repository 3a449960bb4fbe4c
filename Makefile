# Partner Health PRM: `make run` starts the demo, `make test` runs every test. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: run test lint install browser clean bench load

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip check
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

## Run the application on the embedded default (SQLite, filesystem broker): web + worker + beat.
run: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py rundemo

## Install Debian's chromium for the browser tests when it is missing and we may (root or sudo).
browser:
	@bash .ci/install-browser

## The whole test suite, on PostgreSQL and Redis when reachable (required when CI=true).
test: $(STAMP) browser
	$(BIN)/python -m ruff check .
	@# The OpenAPI schema must validate with no warning (a warning is a part of the API left undescribed).
	DEBUG=true $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null
	$(BIN)/python -m tests $(ARGS)

## The quick benchmarks (10,000 partners) on PostgreSQL at 127.0.0.1:5432; docs/benchmarks.md has the full ones.
bench: $(STAMP)
	flock /tmp/prm-bench.lock $(BIN)/python -m bench.recompute --quick
	flock /tmp/prm-bench.lock $(BIN)/python -m bench.dashboards --quick

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

clean:
	rm -rf $(VENV) .var

## The load test (locust against gunicorn, 100,000 partners in prm_bench); docs/benchmarks.md, "Load".
load: $(STAMP)
	flock /tmp/prm-bench.lock $(BIN)/python -m bench.load
