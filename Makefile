# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean dashboard deploy-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m gateway.demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gateway plugins tests bench
	$(BIN)/ruff format --check gateway plugins tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Regenerate the Grafana dashboard JSON from deploy/grafana/dashboard.py.
dashboard: $(STAMP)
	$(BIN)/python deploy/grafana/dashboard.py

# deploy/: lint and type-check the generator, the committed dashboard is current, alert rules pass.
deploy-check: $(STAMP)
	$(BIN)/ruff check deploy
	$(BIN)/ruff format --check deploy
	$(BIN)/mypy --strict deploy/grafana/dashboard.py
	tmp=$$(mktemp) && trap 'rm -f "$$tmp"' EXIT && \
	  $(BIN)/python deploy/grafana/dashboard.py -o "$$tmp" >/dev/null && \
	  diff -u deploy/grafana/gateway-dashboard.json "$$tmp" || \
	  { echo "deploy/grafana/gateway-dashboard.json is stale: run make dashboard" >&2; exit 1; }
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts_test.yaml
	promtool check config --syntax-only deploy/prometheus/prometheus.yml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
