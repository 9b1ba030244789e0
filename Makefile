# One command to set up and run, one to test (see README).
#   make run    venv + synthetic default cohort + pipeline + the app
#   make test   venv + browser + the whole test suite (what .ci/run calls)
#   make bench  the benchmarks under bench/, printing their figures

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COHORT := data/synthetic
RUN := runs/synthetic-demo
SEED ?= 0
PATIENTS ?= 24
EPOCHS ?= 12

.PHONY: setup browser pipeline run app test bench clean

setup: $(VENV)/.installed

# The pinned requirements first, then the project itself, editable (no sys.path edits anywhere):
# `idc ...` and `python -m pipeline|app` then work from any folder.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Debian's Chromium and its driver, for the end-to-end browser test (never a downloaded browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium + chromium-driver"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; } \
	  || echo "warning: could not install chromium; the browser test will be skipped"

$(COHORT)/SYNTHETIC_COHORT.json: | setup
	$(PY) -m pipeline synth --out $(COHORT) --patients $(PATIENTS) --seed $(SEED)

pipeline: setup $(COHORT)/SYNTHETIC_COHORT.json
	$(PY) -m pipeline run --data $(COHORT) --out $(RUN) --epochs $(EPOCHS) --seed $(SEED)

# The launcher binds to 127.0.0.1 wherever it starts (IDC_ADDRESS=0.0.0.0 opens it to the network).
app: setup
	$(PY) -m app

run: pipeline app

test: setup browser
	$(PY) -m pytest -q -rs tests

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) -m bench.$$(basename $$b .py) || exit 1; done

clean:
	rm -rf $(RUN) $(COHORT) test-output .pytest_cache
