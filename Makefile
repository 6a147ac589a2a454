# Partnerboard developer commands. `make demo` and `make test` work on a fresh machine:
# they create the virtual environment and install what they need first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PB     := $(VENV)/bin/partnerboard
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test test-fast serve collect simulate check-config chromium pack-tools oidc-provider postgres lint bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Partnerboard needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

# Browser tests drive Debian's Chromium; Playwright cannot download its own here.
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# The review pack: WeasyPrint writes its PDF with Pango and fonts from Debian; the tests
# read it back with Poppler (pdftotext, pdftoppm).
pack-tools:
	@{ ldconfig -p | grep -q libpangoft2-1.0 && fc-list | grep -qi dejavu && command -v pdftotext >/dev/null; } || \
		{ $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core poppler-utils; }

# PostgreSQL's server binaries from Debian: the suite runs a second time against a real
# PostgreSQL (a throw-away cluster the fixtures start on 127.0.0.1, tests/postgres_server.py).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

# The OpenID provider the OIDC sign-in tests run on 127.0.0.1 (npm package oidc-provider).
oidc-provider: tests/oidc/node_modules/.package-lock.json

tests/oidc/node_modules/.package-lock.json: tests/oidc/package-lock.json
	@command -v npm >/dev/null || { $(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }
	npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error

demo: setup pack-tools  ## simulator + board with collectors, on the shipped partners.toml
	$(PB) demo

# Two pytest-xdist workers (one per core here). Whole test files go to one worker
# (--dist loadfile), so a module's shared server or store is built once, not once per worker;
# the costliest files first (tests/scheduling.py), not xdist's default of the most tests first.
WORKERS ?= 2
XDIST   := -n $(WORKERS) --dist loadfile --no-loadscope-reorder

# pytest keeps its rewritten test modules, and Python its compiled ones, only where bytecode
# may be written: with this machine's PYTHONDONTWRITEBYTECODE=1 every worker of every pass
# rewrote all test modules again (about 3 s of CPU each). __pycache__ is git-ignored.
test test-fast: export PYTHONDONTWRITEBYTECODE :=

# Every test on DuckDB, then on PostgreSQL the tests whose SQL can differ there (see
# docs/testing.md: tests of pages, HTTP, the browser, OIDC, PDF text and commands run once).
# Each pass prints its 25 slowest steps, so CI's log shows where the time goes.
test: setup chromium pack-tools oidc-provider postgres ## the whole test suite
	$(PY) -m pytest $(XDIST) --durations=25
	PARTNERBOARD_TEST_STORE=postgresql $(PY) -m pytest $(XDIST) --durations=25

# The edit-test loop: the in-process tests only (no subprocess, real schedule or browser).
# Three workers: these tests wait on sockets part of the time (3:11 against 3:50 with two;
# four spent more CPU on their own start-up and finished no sooner, 3:17-3:26).
FAST_WORKERS ?= 3
test-fast: setup pack-tools
	$(PY) -m pytest -n $(FAST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow and not browser"

serve: setup         ## board + collectors against $$PARTNERBOARD_DATABASE_URL
	$(PB) serve

collect: setup       ## collectors only (no board)
	$(PB) collect

simulate: setup      ## the stand-in partner APIs on 127.0.0.1:8765
	$(PB) simulate --demo-blips

check-config: setup
	$(PB) check-config

lint: setup
	$(VENV)/bin/ruff check .

# Every benchmark once at a tiny scale, so a change that breaks one is seen in CI (the
# figures themselves come from full-scale runs: see each bench's --help).
bench-smoke: setup chromium postgres
	d=$${BENCH_DATA:-$$(mktemp -d)} && \
	$(PY) bench/bench_kpis.py --scale 0.001 --data $$d && \
	$(PY) bench/bench_pages.py --scale 0.001 --data $$d --repeat 1 && \
	$(PY) bench/bench_collectors.py --scale 0.01 --data $$d/collectors && \
	$(PY) bench/bench_sign_in.py --scale 0.1 --data $$d/sign-in && \
	$(PY) bench/bench_probe_isolation.py --scale 0.02 --seconds 5 --data $$d/probes && \
	$(PY) bench/bench_probe_scheduler.py --endpoints 40 --interval 2 --rounds 3 --data $$d/scheduler && \
	$(PY) bench/bench_alerts.py --scale 0.05 --interval 1 --data $$d/alerts && \
	$(PY) bench/bench_pack.py --scale 0.001 --data $$d && \
	$(PY) bench/bench_pack_pages.py --scale 0.02 --probe-days 2 --data $$d/pack-pages && \
	$(PY) bench/bench_stores.py --scale 0.001 --data $$d && \
	$(PY) bench/bench_viewers.py --scale 0.05 --sessions 1,8 --live-seconds 40 --data $$d/viewers && \
	$(PY) bench/bench_reconciliation.py --orders 20000 --page --postgres --data $$d/recon && \
	$(PY) bench/bench_demo_start.py --until orders --data $$d/demo

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache
