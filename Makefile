# The two set-up-and-go commands are `make train` and `make test`; both create .venv and build
# the compiled ops on first use, and only redo what changed afterwards.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# pytest workers: the suite is CPU-bound; 2 matches the 2-core machines it is sized for.
TEST_WORKERS ?= 2
CSRC := $(shell find csrc -type f 2>/dev/null)

.PHONY: all venv build test train bench bench-env clean help

help:
	@echo "make test       set up .venv, build the ops, run the test suite"
	@echo "make build      (re)build maskrcnn._C after a change under csrc/"
	@echo "make train      set up, train Mask R-CNN R-18-FPN on the generated shapes data (GPU if any, else CPU),"
	@echo "                evaluate, plot; each run writes a new output/shapes/<config>-<time>/ (output/shapes/latest)"
	@echo "make bench      op benchmarks (benchmarks/ops.py); beside torchvision once 'make bench-env' ran"
	@echo "make bench-env  create .venv-peer: torch 2.13.0 + torchvision 0.28.0 + maskrcnn, for side-by-side tables"

venv: $(VENV)/.stamp-requirements

$(VENV)/.stamp-requirements: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	@touch $@

build: $(VENV)/.stamp-build

$(VENV)/.stamp-build: $(VENV)/.stamp-requirements setup.py pyproject.toml $(CSRC)
	MAX_JOBS=$${MAX_JOBS:-2} $(PIP) install -q --no-build-isolation -e .
	@touch $@

test: build
	$(PY) -m pytest -n $(TEST_WORKERS) tests

# Train + evaluate + plots through tools/train_shapes.py; TRAIN_ARGS adds options or KEY VALUE
# overrides, e.g. make train TRAIN_ARGS="SOLVER.MAX_ITER 200".
train: build
	$(PY) tools/train_shapes.py $(TRAIN_ARGS)

bench: build
	$(PY) benchmarks/ops.py

# A second environment with torchvision for side-by-side numbers. torchvision's wheels need the
# registry's (CUDA) torch build, so pip must ignore this machine's configuration, which points
# at the local CPU wheel: --isolated. About 5 GB.
PEER := .venv-peer
bench-env: $(PEER)/.stamp-peer

$(PEER)/.stamp-peer: requirements.txt setup.py $(CSRC)
	@test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER)
	$(PEER)/bin/pip install --isolated -q torch==2.13.0 torchvision==0.28.0
	$(PEER)/bin/pip install --isolated -q $$(grep -vE '^(torch==|#)' requirements.txt)
	MAX_JOBS=$${MAX_JOBS:-2} $(PEER)/bin/pip install --isolated -q --no-build-isolation .
	@touch $@

clean:
	rm -rf build *.egg-info maskrcnn/_C*.so $(VENV)/.stamp-build
