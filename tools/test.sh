#!/usr/bin/env bash
# The test command (`make test`): notebooks clean, library and README in sync, nbdev_test, pytest tests/.
# Exits non-zero on the first failure and when pytest collects no test.
# FLEXRL_TEST_FLAGS="slow gpu" also runs the cells and tests carrying those flags; FLEXRL_TEST_FAST=1 (`make test-fast`)
# leaves out the infra checks and the tests that need the infra tools (helm, terraform, checkov).
set -euo pipefail
cd "$(dirname "$0")/.."
export BIN=$(pwd)/${VENV:-.venv}/bin
FLAGS=${FLEXRL_TEST_FLAGS:-}
export MUJOCO_GL=${MUJOCO_GL:-egl} PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-egl}
step() { printf '\n== %s\n' "$*"; }

step "notebooks clean, library and README in sync"
tools/check_sync.sh

FAST=${FLEXRL_TEST_FAST:-}
if [ -z "$FAST" ]; then
  step "infra checks (Dockerfile, Helm chart, manifests, Terraform, checkov)"
  tools/infra.sh check
fi

step "nbdev_test ${FLAGS:+(flags: $FLAGS)}"
# notebooks log and train into a throw-away home: the tests never touch your runs, skills or MLflow store
export FLEXRL_HOME=${FLEXRL_TEST_HOME:-$(mktemp -d -t flexrl-test-XXXX)}
"$BIN/nbdev_test" --n_workers 2 --timing ${FLAGS:+--flags "$FLAGS"}

step "pytest tests/"
marks=(); [[ " $FLAGS " == *" slow "* ]] || marks=(-m "not slow")
[ -z "$FAST" ] || marks+=(--ignore tests/test_k8s.py --ignore tests/test_terraform.py --ignore tests/test_jobs.py)
"$BIN/python" -m pytest tests/ "${marks[@]}" -p no:cacheprovider --durations=15
