# Works from a fresh clone on a machine with only python3: everything else is
# installed here (system packages only when running as root with apt-get).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
RUN := .run
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
# The main run is the same wherever it starts: in-memory broker, SQLite.
PYTEST := env -u REDIS_URL -u DATABASE_URL -u SSE_OVERRIDES $(PY) -m pytest

# `$(call apt_install,packages)`: installs when root with apt-get, else says how.
define apt_install
if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	echo "Installing $(1) with apt-get"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq $(1) >/dev/null \
		|| echo "!! apt-get install $(1) failed"; \
else \
	echo "!! $(1): not installed; run as root: apt-get install $(1)"; \
fi
endef

.PHONY: test test-postgres test-production demo lint bench soak clean system-deps $(VENV)

$(VENV): $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

system-deps:
	@command -v redis-server >/dev/null || { \
		$(call apt_install,redis-server); \
		command -v redis-server >/dev/null \
			|| echo "!! The Redis tests will fail: they need redis-server on PATH."; }
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || { \
		$(call apt_install,chromium chromium-driver); \
		command -v chromium >/dev/null \
			|| echo "!! The browser tests will be skipped (and fail under CI=true)."; }
	@command -v promtool >/dev/null || { \
		$(call apt_install,prometheus); \
		command -v promtool >/dev/null \
			|| echo "!! The alert rules' promtool tests will be skipped (and fail under CI=true)."; }

test: $(VENV) system-deps
	@mkdir -p $(RUN)
	$(PYTEST) -m "not production" 2>&1 | tee $(RUN)/pytest-main.log
	@$(MAKE) --no-print-directory test-postgres
	@echo "Main run: $$(tail -n 1 $(RUN)/pytest-main.log)"

# The concurrency tests again on PostgreSQL, when a server answers or can be set up.
test-postgres: $(VENV)
	@if ! $(PY) -m tests.postgres_probe $(POSTGRES_URL) >/dev/null 2>&1 \
		&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		command -v pg_ctlcluster >/dev/null || { \
			$(call apt_install,postgresql); \
			for hba in /etc/postgresql/*/main/pg_hba.conf; do \
				[ -f "$$hba" ] || continue; \
				sed -i '1i host all postgres 127.0.0.1/32 trust' "$$hba"; \
			done; }; \
		version=$$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true); \
		if [ -n "$$version" ]; then \
			pg_ctlcluster --skip-systemctl-redirect "$$version" main start || true; \
			for _ in $$(seq 20); do \
				$(PY) -m tests.postgres_probe $(POSTGRES_URL) >/dev/null 2>&1 && break; \
				sleep 0.5; \
			done; \
		fi; \
	fi
	@if $(PY) -m tests.postgres_probe $(POSTGRES_URL); then \
		echo "Running the postgres tests on $(POSTGRES_URL)"; \
		status=0; \
		env -u REDIS_URL -u SSE_OVERRIDES DATABASE_URL=$(POSTGRES_URL) \
			$(PY) -m pytest -m postgres || status=$$?; \
		[ $$status = 0 ] || [ $$status = 5 ]; \
	else \
		echo "!! PostgreSQL run skipped: no server answers for $(POSTGRES_URL)"; \
	fi

# Real Sentinel and Cluster topologies on free ports (tests/topologies.py):
# primaries SIGKILLed under load, a resharded slot, TLS variants.  About four
# minutes of processes starting and failing over, so not in the main run;
# .ci/run runs it after `make test`.
test-production: $(VENV) system-deps
	@mkdir -p $(RUN)
	$(PYTEST) -m production 2>&1 | tee $(RUN)/pytest-production.log

# The demo on the embedded defaults: SQLite in the project, in-process broker.
DEMO_ADDR ?= 127.0.0.1:8000
DEMO_ENV := env -u REDIS_URL -u DATABASE_URL -u SSE_OVERRIDES DJANGO_DEBUG=1

demo: $(VENV)
	$(DEMO_ENV) $(PY) manage.py migrate --verbosity 0
	$(DEMO_ENV) $(PY) manage.py ensure_demo_user --url http://$(DEMO_ADDR)/
	$(DEMO_ENV) $(PY) manage.py runserver $(DEMO_ADDR)

lint: $(VENV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy sse permissions

# The benchmark against the peers (bench/README.md): about an hour, on a quiet
# machine; BENCH_ARGS="--scale small" for a smoke run.
BENCH_ARGS ?=
bench: $(VENV) system-deps
	$(PY) bench/run.py $(BENCH_ARGS)

# The soak (bench/README.md): 2,000 streams for SOAK_MINUTES under churn and
# publishing; exits non-zero if RSS, descriptors or tasks grew or an event
# was lost.  Not part of `test`: it takes half an hour.
SOAK_MINUTES ?= 30
SOAK_ARGS ?=
soak: $(VENV)
	@command -v redis-server >/dev/null || { $(call apt_install,redis-server); }
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(RUN) .pytest_cache .mypy_cache .ruff_cache
