# Two commands set up a fresh machine: `make demo` and `make test` (both create/update .venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cordillera-installed
export OMP_NUM_THREADS ?= 2
export RAY_USAGE_STATS_ENABLED := 0
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-fast bench train-nano clean-venv

install: $(STAMP)

# Re-run pip only when the pins change. torch first so the local CPU wheel is taken.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m cordillera.serve.build_protos
	touch $(STAMP)

demo: install
	$(PY) -m cordillera demo --out demo_out

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile

test-fast: install
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

# Data → stage 1 → stage 2 → eval → checkpoints/nano (~1.5 h on 2 cores, 1 h of it training; ABLATION=1 adds nano-traj-only).
train-nano: install
	$(PY) -m cordillera train nano $(if $(ABLATION),--ablation,)

bench: install
	# benchmarks marked '# make bench: skip' compare or train given checkpoints on given data: run them by hand
	for b in benchmarks/*.py; do if grep -q '^# make bench: skip' $$b; then continue; fi; echo "== $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
