# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv if needed;
# `make test` also installs the servers the tests start (see `services`).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Programs the tests start, as program=Debian package: a real Redis (tests/redis_server.py) and
# Prometheus with promtool (tests/deploy, deploy-check); Chromium, which Playwright drives in
# tests/test_progress_page_browser.py (never a browser Playwright downloads itself); kubectl,
# whose `kubectl kustomize` renders deploy/kubernetes (tests/deploy, deploy-check).
SERVICES ?= redis-server=redis-server prometheus=prometheus promtool=prometheus \
  kubectl=kubernetes-client \
  pg_isready=postgresql-client pg_dump=postgresql-client pg_ctlcluster=postgresql \
  samba=samba samba=samba-ad-provision samba=samba-dsdb-modules winbindd=winbind \
  ldapsearch=ldap-utils slapd=slapd \
  chromium=chromium
# Debian packages with no program of their own to look for: Samba's VFS modules (the AD DC's
# provisioning loads acl_xattr from them; apt leaves them out as a mere recommendation).
PACKAGES ?= samba-vfs-modules
# Headers python-ldap builds against (it ships no wheels), as file=Debian package.
BUILD_HEADERS ?= /usr/include/ldap.h=libldap-dev /usr/include/sasl/sasl.h=libsasl2-dev

.PHONY: demo test services lint typecheck bench clean dashboard deploy-check check-base-install

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "make needs Python 3.11+ as '$(PY)' (found: $$($(PY) -V 2>&1)); run: make PY=python3.11 ..." >&2; exit 1; }
	@test -x $(BIN)/pip || { rm -rf $(VENV); $(PY) -m venv $(VENV) >/dev/null 2>&1; } || \
	  { rm -rf $(VENV); echo "'$(PY) -m venv' does not work here; on Debian/Ubuntu run: apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	@missing=$$(for e in $(BUILD_HEADERS); do test -e "$${e%%=*}" || echo "$${e#*=}"; done | tr '\n' ' '); \
	[ -z "$${missing% }" ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } || \
	  { echo "building python-ldap needs $$missing: run 'sudo apt-get install -y $$missing'" >&2; exit 1; }
	$(BIN)/pip install -q -e '.[dev]'  # dev brings every extra ([all]): the suite tests them all
	touch $(STAMP)

# emulators/ is not installed: it is importable here, from the repo root (python -m puts cwd first).
demo: $(STAMP)
	$(BIN)/python -m emulators.demo $(DEMO_ARGS)

# pytest's own exit status is make's: 5 (no tests collected) fails like any other.
test: services $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The tests start real servers. Missing ones are installed with apt-get when running as root;
# otherwise this stops at once with the one command that installs them.
services:
	@missing=$$({ for entry in $(SERVICES); do \
	    command -v "$${entry%%=*}" >/dev/null 2>&1 || echo "$${entry#*=}"; \
	  done; for pkg in $(PACKAGES); do \
	    dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'ok installed' || echo "$$pkg"; \
	  done; } | sort -u | tr '\n' ' '); \
	missing=$${missing% }; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing $$missing (apt-get), which the tests start"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  for entry in $(SERVICES); do command -v "$${entry%%=*}" >/dev/null 2>&1 || \
	    { echo "$${entry%%=*} is still not on PATH after installing $${entry#*=}" >&2; exit 1; }; done; \
	else \
	  echo "make test needs $$missing (Debian packages) on PATH: run 'sudo apt-get install -y $$missing', or run make as root to install them" >&2; \
	  exit 1; \
	fi
	@# The ledger tests use the PostgreSQL on 127.0.0.1:5432 (trust auth for loopback, as on CI).
	@pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; \
	cluster=$$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $$1" "$$2}'); \
	if [ -n "$$cluster" ] && [ "$$(id -u)" = 0 ]; then pg_ctlcluster --skip-systemctl-redirect $$cluster start; fi; \
	pg_isready -q -h 127.0.0.1 -p 5432 -t 30 || \
	  { echo "make test needs PostgreSQL on 127.0.0.1:5432: run 'sudo pg_ctlcluster <version> main start' (pg_lsclusters shows it)" >&2; exit 1; }

# The base install (no extras) in a brand-new venv: wheels only, check-config, a VERIFIED hook
# call through the dev environment's Entra emulator, no emulator shipped. Uses the registry (pip).
check-base-install: $(STAMP)
	DEV_PYTHON=$(BIN)/python $(PY) .ci/check_base_install

lint: $(STAMP)
	$(BIN)/ruff check gateway plugins emulators tests bench
	$(BIN)/ruff format --check gateway plugins emulators tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Regenerate the Grafana dashboard JSON from deploy/grafana/dashboard.py.
dashboard: $(STAMP)
	$(BIN)/python deploy/grafana/dashboard.py

# deploy/: lint and type-check the generator, the committed dashboard is current, alert rules pass,
# the Kubernetes manifests validate offline (bundled schemas) and the Kustomize overlays render.
deploy-check: services $(STAMP)
	$(BIN)/ruff check deploy
	$(BIN)/ruff format --check deploy
	$(BIN)/mypy --strict deploy/grafana/dashboard.py deploy/kubernetes/check.py
	$(BIN)/python deploy/kubernetes/check.py
	tmp=$$(mktemp) && trap 'rm -f "$$tmp"' EXIT && \
	  $(BIN)/python deploy/grafana/dashboard.py -o "$$tmp" >/dev/null && \
	  diff -u deploy/grafana/gateway-dashboard.json "$$tmp" || \
	  { echo "deploy/grafana/gateway-dashboard.json is stale: run make dashboard" >&2; exit 1; }
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts_test.yaml
	promtool check config --syntax-only deploy/prometheus/prometheus.yml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
