# flex-rl: the commands a newcomer needs. `make demo` runs the main job, `make test` runs every test.
# Both set up a fresh machine first (system packages, .venv, torch CPU wheel, flexrl[dev]) and are quiet
# when that is already done.
SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-slow test-fast docs nbdocs export clean-nbs bench help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): settings.ini setup.py tools/setup.sh
	@VENV=$(VENV) tools/setup.sh
	@touch $@

install: $(STAMP)  ## set up .venv (idempotent)

demo: $(STAMP)  ## run the main job
	@$(BIN)/flexrl demo

test: $(STAMP)  ## notebooks clean + library in sync + nbdev_test + pytest
	@tools/test.sh

test-slow: $(STAMP)  ## also run the cells and tests flagged slow
	@FLEXRL_TEST_FLAGS=slow tools/test.sh

test-fast: $(STAMP)  ## sync checks + nbdev_test + pytest, without the infra tools (Docker, Helm, Terraform checks)
	@FLEXRL_TEST_FAST=1 tools/test.sh

clean-nbs: $(STAMP)  ## strip notebook outputs and metadata (what the sync check demands)
	@$(BIN)/nbdev_clean && $(BIN)/python tools/strip_outputs.py

docs: $(STAMP)  ## build the static docs site offline into _docs/
	@$(BIN)/python tools/docs.py site

nbdocs: $(STAMP)  ## the nbdev/Quarto docs (needs Quarto installed)
	@$(BIN)/nbdev_docs

export: $(STAMP)  ## notebooks -> flexrl/ and README.md
	@$(BIN)/nbdev_clean && $(BIN)/python tools/strip_outputs.py && $(BIN)/nbdev_export && $(BIN)/python tools/docs.py readme

bench: $(STAMP)  ## run the benchmarks in bench/
	@for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done
