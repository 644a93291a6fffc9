# webstack: `make demo` and `make test` do all the set-up on a fresh Debian machine.
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1
DEMO_PORT ?= 8080
export WEBSTACK_DEMO_PORT := $(DEMO_PORT)
# TOPOLOGY=three-tier: web, two app and a db container (sandboxes/three-tier) instead of one.
TOPOLOGY ?= one
INVENTORY := $(if $(filter three-tier,$(TOPOLOGY)),sandboxes/three-tier,inventory)
SCENARIOS ?= $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))

.PHONY: help setup engine images image-12 image-13 browser fcgi-tools ssh-client sslyze bench-tools demo demo-down deploy rollback lint unit molecule test bench bench-up bench-provision bench-run bench-ports bench-reload bench-down collection clean

help:
	@echo "make demo     sandbox containers + site.yml + the app's answer through nginx"
	@echo "              (TOPOLOGY=three-tier: web, 2 app and db containers)"
	@echo "make test     lint, fast tests, every Molecule scenario"
	@echo "make setup    only the pinned tools in .venv"
	@echo "make deploy   ship new releases to the sandbox (APPS=a,b to pick apps)"
	@echo "make rollback put the previous release back (RELEASE=<id> to pick one)"
	@echo "make bench    every server through nginx under wrk: bench/results/<date>-<host>.{json,md,png}"

setup: $(VENV)/.installed .collections/ansible_collections/pyops/webstack

$(VENV)/.installed: requirements.txt
	@python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

.collections/ansible_collections/pyops/webstack:
	tools/link-collection.sh

engine:
	tools/engine.sh

image-12: engine
	tools/build-image.sh bookworm

image-13: engine
	tools/build-image.sh trixie

images: image-12 image-13

demo: setup image-12
	ansible-playbook -i $(INVENTORY) playbooks/sandbox.yml
	ansible-playbook -i $(INVENTORY) site.yml
	$(BIN)/python tools/answer.py http://127.0.0.1:$(DEMO_PORT)/ --host localhost

# Ship releases only (playbooks/deploy.yml), then show the answer; APPS=hello,shop picks apps.
deploy: setup
	ansible-playbook -i $(INVENTORY) playbooks/deploy.yml $(if $(APPS),-e webstack_deploy_apps=$(APPS))
	$(BIN)/python tools/answer.py http://127.0.0.1:$(DEMO_PORT)/ --host localhost

# The previous release back (playbooks/rollback.yml); RELEASE=<id> picks one.
rollback: setup
	ansible-playbook -i $(INVENTORY) playbooks/rollback.yml $(if $(RELEASE),-e webstack_release=$(RELEASE)) \
	  $(if $(APPS),-e webstack_deploy_apps=$(APPS))
	$(BIN)/python tools/answer.py http://127.0.0.1:$(DEMO_PORT)/ --host localhost

demo-down: setup
	ansible-playbook -i $(INVENTORY) playbooks/sandbox.yml -e webstack_sandbox_state=absent

# ansible-test sanity (tools/sanity.sh) is the check Galaxy and Automation Hub run on the built
# collection; pslint alone is skipped (it needs PowerShell).
lint: setup
	yamllint --strict .
	ansible-lint
	tools/sanity.sh

# One pytest worker per core; a file's tests stay on one worker (their session fixtures run once).
unit: setup fcgi-tools
	pytest -n auto --dist loadfile

# Debian's fcgiwrap and spawn-fcgi: the fast tests stop a real fcgiwrap with the cgi role's
# ExecStop, and start and reload a real spawn-fcgi with the spawn_fcgi role's scripts.
fcgi-tools:
	@test -x /usr/sbin/fcgiwrap -a -x /usr/bin/spawn-fcgi \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fcgiwrap spawn-fcgi; }

# The browser the servers scenario loads the sample app's page in (its CSP check).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# sslyze checks the live TLS of the servers scenario against Mozilla's profile; it pins an older
# cryptography than Ansible's, so it gets a venv of its own.
SSLYZE_VENV := $(CURDIR)/.cache/sslyze
export WEBSTACK_SSLYZE := $(SSLYZE_VENV)/bin/sslyze
sslyze: $(SSLYZE_VENV)/.installed

$(SSLYZE_VENV)/.installed: requirements-sslyze.txt
	python3 -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/pip install -q -r requirements-sslyze.txt
	touch $@

# matplotlib draws the bench's chart; a venv of its own keeps it out of the tools' venv.
BENCH_VENV := $(CURDIR)/.cache/bench-venv
export WEBSTACK_BENCH_PYTHON := $(BENCH_VENV)/bin/python
bench-tools: $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed: requirements-bench.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q -r requirements-bench.txt
	touch $@

# make bench (bench/): sandbox containers converged by site.yml (bench/inventory), then in turn
# bench-provision (bare container to serving stack, and the re-run, timed), bench-run (every server
# through nginx under wrk, in rounds), bench-ports (port exhaustion without upstream keep-alive)
# and bench-reload (reloads and deploys under constant load, with a hard restart as the control).
# Each writes to bench/results. BENCH_ROUNDS, BENCH_WARMUP and BENCH_DURATION (seconds),
# BENCH_CONNECTIONS (comma-separated), BENCH_HIGH (more connections, for gunicorn and uWSGI only) and
# BENCH_ONLY (substrings of target names) change bench-run; BENCH_LOG_TWINS=1 adds the gunicorn sync and
# uWSGI apps that log each request themselves too (what a second log costs; about 9 more minutes);
# BENCH_RELOAD_APPS (app names) and BENCH_ACTIONS (reload,deploy,hard) change bench-reload.
BENCH_ROUNDS ?= 5
BENCH_WARMUP ?= 5
BENCH_DURATION ?= 10
BENCH_CONNECTIONS ?= 8,32,128
BENCH_HIGH ?= 512
BENCH_ONLY ?=
BENCH_LOG_TWINS ?=
BENCH_RELOAD_APPS ?=
BENCH_ACTIONS ?= reload,deploy,hard
BENCH_PLAN := .cache/bench
BENCH_TWINS_VAR := $(if $(BENCH_LOG_TWINS),-e bench_log_twins=true)
bench: bench-provision bench-run bench-ports bench-reload

BENCH_PROVISION_ROUNDS ?= 3
bench-provision: setup image-12
	python3 bench/provision.py --rounds $(BENCH_PROVISION_ROUNDS)

bench-up: setup image-12 bench-tools
	ansible-playbook -i bench/inventory playbooks/sandbox.yml
	ansible-playbook -i bench/inventory site.yml --limit bench:bench_ports $(BENCH_TWINS_VAR)
	ansible-playbook -i bench/inventory bench/plan.yml -e bench_hosts=bench:bench_ports $(BENCH_TWINS_VAR)

bench-run: bench-up
	$(WEBSTACK_BENCH_PYTHON) bench/run.py $(BENCH_PLAN)/plan-webstack-bench.json --rounds $(BENCH_ROUNDS) \
	  --warmup $(BENCH_WARMUP) --duration $(BENCH_DURATION) --connections $(BENCH_CONNECTIONS) \
	  --high-connections "$(BENCH_HIGH)" \
	  $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

bench-ports: bench-up
	python3 bench/ports.py $(BENCH_PLAN)/plan-webstack-bench-ports.json

bench-reload: bench-up
	python3 bench/reload.py $(BENCH_PLAN)/plan-webstack-bench.json --actions $(BENCH_ACTIONS) \
	  $(if $(BENCH_RELOAD_APPS),--apps $(BENCH_RELOAD_APPS))

bench-down: setup
	ansible-playbook -i bench/inventory playbooks/sandbox.yml -e webstack_sandbox_state=absent

# The multinode scenario reaches its hosts over ssh, as real hosts are: the controller needs a client.
ssh-client:
	@command -v ssh >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client; }

molecule: setup images browser sslyze bench-tools ssh-client
	set -e; mkdir -p .cache; for s in $(SCENARIOS); do start=$$(date +%s); molecule test -s $$s; \
	  echo "molecule $$s: $$(( $$(date +%s) - start ))s" | tee -a .cache/molecule-times.txt; done

test: lint unit molecule

collection: setup
	ansible-galaxy collection build --force --output-path .cache/dist .

clean:
	rm -rf .cache .collections .pytest_cache
