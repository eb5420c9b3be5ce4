# labkit: two commands on a fresh machine, as root.
#   make lab    set up what is missing, then JupyterLab on notebooks/
#   make test   set up what is missing, then the whole test suite (notebooks included)
#   make tour   set up, then run every notebook headless into build/tour/*.html
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup lab test test-fast tour lint clean

setup:
	@scripts/setup.sh

lab: setup
	cd notebooks && $(VENV)/bin/jupyter lab --allow-root --no-browser --ip=127.0.0.1 \
	  --ServerApp.root_dir=$(CURDIR)/notebooks

# Every stage runs even when one before it failed; the end names each stage that failed.
test: setup
	@scripts/test-stages.sh $(PY) $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

tour: setup
	mkdir -p build/tour
	$(VENV)/bin/jupyter nbconvert --to html --execute --ExecutePreprocessor.timeout=600 \
	  --output-dir build/tour notebooks/*.ipynb

lint: setup
	$(VENV)/bin/ruff check labkit tests
	$(VENV)/bin/mypy

clean:
	rm -rf build .pytest_cache

# A disposable kernel (labkit/vm): tests/vm run INSIDE a qemu VM whose kernel has what this
# host may lack (cgroup v2 controllers, kprobes, ipvlan).  The image is cached outside the
# repo ($LABKIT_VM_CACHE, default /var/cache/labkit/vm); vm-clean removes it.
# The VM runs what this host cannot: tests/vm, the cgroup suites against real v2 controllers,
# and the overlay tests, whose encrypted half needs ESP and AES-GCM (not built into this host).
VM_TESTS ?= tests/vm tests/conformance tests/privileged/test_cgroups_limits.py \
  tests/privileged/test_net_overlay.py
.PHONY: vm-image test-vm vm-clean
vm-image: setup
	$(PY) -m labkit.cli vm build

test-vm: setup
	$(PY) -m labkit.cli vm run -- python -m pytest --privileged -p no:cacheprovider -q $(VM_TESTS)

vm-clean:
	$(PY) -m labkit.cli vm clean || rm -rf "$${LABKIT_VM_CACHE:-/var/cache/labkit/vm}"
