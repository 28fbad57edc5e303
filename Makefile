# Each target creates .venv if it is missing and installs the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test nightly lint typecheck unit install clean bench bytecode peers

# uv installs the same packages as pip from the same index in about a quarter of the time
# (11 s instead of 37 s on a fresh clone, its cache cold): a fresh clone's `make test` is
# budgeted. Unlike pip it compiles no bytecode at install (that alone is 11 s, mostly for
# modules nothing here imports): demo and test let Python write it at first import instead.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: export PYTHONDONTWRITEBYTECODE :=
demo: $(STAMP) bytecode
	$(BIN)/swarmlog demo

bytecode: $(STAMP)
	$(BIN)/python -m compileall -q src >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

# One run over the whole suite, four tests at a time on the two cores: the tests that start
# servers and daemons mostly wait on them, and the pure and property tests fill that time. A
# module's tests go to one worker (they may share the module's running system); each test owns
# its data dir, ports and server. The 15 slowest are printed so the next engineer sees where the
# time goes. Modules are handed out in collection order (not xdist's "most tests first"), and
# tests/conftest.py puts the longest modules first (LONGEST_FIRST), so the many short unit
# tests fill the end of the run instead of a long module starting last.
#
# Every daemon, agent and CLI call the tests start is a new Python process: with its bytecode
# cached, one starts in about 0.25 s instead of 0.45 s (an environment that sets
# PYTHONDONTWRITEBYTECODE would otherwise compile the package afresh in each of them).
#
# ruff and mypy run beside pytest, not before it (mypy alone holds one core for about 17 s
# on a fresh clone, while the suite's own processes leave a few per cent of the machine idle,
# waiting on servers and timers); their output is kept and printed after pytest's, and make
# test fails if either of them does. The bytecode comes first: the suite's first processes
# would otherwise all compile the same modules at once.
SUITE := -m pytest -q -n 4 --dist loadscope --no-loadscope-reorder --durations=15 tests

test: export PYTHONDONTWRITEBYTECODE :=
test: $(STAMP) bytecode
	@$(MAKE) --no-print-directory --jobs=2 --output-sync=target lint typecheck \
		> $(VENV)/checks.log 2>&1 & checks=$$!; \
	$(BIN)/python $(SUITE); \
	tests=$$?; wait $$checks; checked=$$?; cat $(VENV)/checks.log; \
	if [ $$checked -ne 0 ]; then echo "make test: ruff or mypy failed (above)" >&2; fi; \
	[ $$tests -eq 0 ] && [ $$checked -eq 0 ]

# The same suite at full strength, for a nightly job (far longer than `make test`): many more
# hypothesis examples, simulation seeds, fuzzing inputs and projector kills than `make test`'s
# quick profile, which keeps to its six-minute budget.
nightly: export SWARMLOG_HYPOTHESIS_PROFILE := nightly
nightly: export SWARMLOG_SIM_SEEDS := 10000
nightly: export SWARMLOG_FUZZ_EXAMPLES := 100000
nightly: export SWARMLOG_CRASH_KILLS := 20
nightly: $(STAMP) bytecode
	$(BIN)/python $(SUITE)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# The peers `swarmlog bench compare` runs beside swarmlog (LangGraph, eventsourcing): an
# optional extra, kept out of the dev install so `make test` does not pay for it.
peers: $(STAMP)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev,peers]'

clean:
	rm -rf $(VENV) .swarmlog .pytest_cache .mypy_cache .ruff_cache
