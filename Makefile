# Two set-up commands on a fresh Debian machine (as root): `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LAB := $(VENV)/bin/lab
APT_PACKAGES := iproute2 iputils-ping iperf3 sockperf tcpdump tshark nftables chromium gcc libc6-dev python3-dev openssh-server openssh-client
SCENARIO ?= scenarios/quickstart.toml

.PHONY: run test lint deps apt venv clean-testbeds bench

run: deps
	$(LAB) run $(SCENARIO)

test: deps
	$(VENV)/bin/ruff check lab tests bench
	$(VENV)/bin/ruff format --check lab tests bench
	$(VENV)/bin/mypy lab bench
	$(VENV)/bin/pytest -q

lint: deps
	$(VENV)/bin/ruff check lab tests bench
	$(VENV)/bin/ruff format --check lab tests bench
	$(VENV)/bin/mypy lab bench

deps: apt venv

# Runs the benchmarks (a few minutes, as root) and rewrites docs/benchmarks.md.
bench: deps
	@test "$$(id -u)" = 0 || { echo "make bench needs root (network namespaces): sudo make bench" >&2; exit 2; }
	$(PY) bench/report.py --output docs/benchmarks.md

# Installs only what is missing, so a warm machine pays nothing.
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  policy=/usr/sbin/policy-rc.d; made=""; \
	  if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod 755 $$policy && made=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  status=$$?; [ -z "$$made" ] || rm -f $$policy; exit $$status; \
	fi

venv: $(VENV)/.installed

# setup.py builds the compiled impairment core (lab/impairment/_core.c) in place
$(VENV)/.installed: pyproject.toml setup.py lab/impairment/_core.c
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean-testbeds: venv
	$(LAB) cleanup
