# kassa: two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check fmt bench migrate openapi install clean chart-sync

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Install from the lock file (exact versions), then the project itself in editable mode.
$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/kassa up

test: $(STAMP)
	$(BIN)/python -m pytest -q

# mypy checks src, tests and bench strictly: the files and module bases are in pyproject.toml
# ([tool.mypy]), so that `make check`, pre-commit and a bare `mypy` check the same tree.
check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m kassa.events.schema_compat

fmt: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: $(STAMP)
	$(BIN)/python -m bench.run

migrate: $(STAMP)
	$(BIN)/kassa migrate

openapi: $(STAMP)
	$(BIN)/python -c "import json, kassa.api.app as a; from kassa.api import openapi; print(json.dumps(openapi.build(), indent=2))" > openapi.json

# Regenerate the lock file after changing dependencies in pyproject.toml.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

# Helm reads only files inside the chart: copy the observability rule files and dashboards into
# it (tests/deploy/test_helm_chart.py fails when the copies drift or a copy has no source).
chart-sync:
	rm -rf deploy/helm/kassa/files/observability/prometheus deploy/helm/kassa/files/observability/dashboards
	mkdir -p deploy/helm/kassa/files/observability/prometheus deploy/helm/kassa/files/observability/dashboards
	cp deploy/observability/prometheus/*.rules.yaml deploy/helm/kassa/files/observability/prometheus/
	cp deploy/observability/dashboards/*.json deploy/helm/kassa/files/observability/dashboards/

clean:
	rm -rf $(VENV) .kassa .pytest_cache .mypy_cache .ruff_cache
