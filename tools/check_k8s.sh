#!/usr/bin/env bash
# Offline checks of the container image and the Helm chart (no Docker engine, no cluster), with the tools that
# tools/infra.sh installs into .venv-infra:
#   hadolint   lints Dockerfile (settings in .hadolint.yaml)
#   lint       helm lint --strict of the chart (values.schema.json included) for every value set below
#   validate   helm template of every set | kubernetes-validate --strict against Kubernetes $K8S_VERSION
#   checkov    checkov on Dockerfile and the rendered manifests (every failure fixed or skipped with a reason)
# Value sets: default (values.yaml), minikube (k8s/values-minikube.yaml), gpu (k8s/values-gpu.yaml: inference
# tp=2 on GPUs, plus a 1-GPU notebook Job and a 1-GPU sweep of k8s/sweep-points.example.json), and for
# lint/validate also job and sweep (job-only releases rendered as `flexrl submit` and `flexrl sweep --submit` do:
# a ConfigMap and a Job, an Indexed one for the sweep, which rely on the NetworkPolicy of the namespace's service
# release, so checkov scans them within the gpu set instead).
#
#   tools/check_k8s.sh [hadolint|lint|validate|checkov ...]   # default: all four; exit status 1 if any failed
# Env: INFRA_VENV (.venv-infra), CHART (k8s/flexrl), DOCKERFILES (Dockerfile; space-separated),
#      K8S_VERSION (1.34.0), KEEP_RENDERED (a folder to keep the rendered manifests in).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${INFRA_VENV:-.venv-infra}/bin
CHART=${CHART:-k8s/flexrl}
DOCKERFILES=${DOCKERFILES:-Dockerfile}
K8S_VERSION=${K8S_VERSION:-1.34.0}
RELEASE=flexrl
NAMESPACE=flexrl  # not "default": checkov's CKV_K8S_21 rejects it, and the chart puts everything in the release's
STEPS=("$@"); ((${#STEPS[@]})) || STEPS=(hadolint lint validate checkov)

for tool in hadolint helm kubernetes-validate checkov; do
  [ -x "$BIN/$tool" ] || { echo "check_k8s: $BIN/$tool missing: run tools/infra.sh install" >&2; exit 2; }
done

declare -A SETS=(
  [default]=""
  [minikube]="-f k8s/values-minikube.yaml"
  [gpu]="-f k8s/values-gpu.yaml --set job.enabled=true --set job.notebook=train_skills --set job.gpus=1 --set-file job.paramsYaml=params/train_skills.yaml --set sweep.enabled=true --set sweep.notebook=train_skills --set sweep.parentRunId=0123456789abcdef0123456789abcdef --set-file sweep.pointsJson=k8s/sweep-points.example.json --set sweep.gpus=1"
  [job]="--set job.enabled=true --set inference.enabled=false --set mlflow.enabled=false --set job.notebook=train_skills --set job.gpus=0 --set-file job.paramsYaml=params/train_skills.yaml --set mlflow.trackingUri=http://flexrl-mlflow.flexrl.svc:5000"
  [sweep]="--set inference.enabled=false --set mlflow.enabled=false --set sweep.enabled=true --set sweep.notebook=train_skills --set sweep.parentRunId=0123456789abcdef0123456789abcdef --set-file sweep.pointsJson=k8s/sweep-points.example.json --set sweep.parallelism=2 --set mlflow.trackingUri=http://flexrl-mlflow.flexrl.svc:5000"
)
SET_NAMES=(default minikube gpu job sweep)
CHECKOV_SETS=(default minikube gpu)

OUT=${KEEP_RENDERED:-$(mktemp -d "${TMPDIR:-/tmp}/check_k8s.XXXXXX")}
mkdir -p "$OUT"
[ -n "${KEEP_RENDERED:-}" ] || trap 'rm -rf "$OUT"' EXIT
failed=()
t0=$SECONDS

ok()   { echo "check_k8s: ok    $*"; }
fail() { echo "check_k8s: FAIL  $*"; failed+=("$*"); }

run_hadolint() {
  local f
  for f in $DOCKERFILES; do
    if "$BIN/hadolint" --config .hadolint.yaml --no-color "$f"; then ok "hadolint $f"; else fail "hadolint $f"; fi
  done
}

run_lint() {
  local s log
  for s in "${SET_NAMES[@]}"; do
    # shellcheck disable=SC2086  # a set is a list of helm arguments
    if log=$("$BIN/helm" lint --strict "$CHART" --namespace "$NAMESPACE" ${SETS[$s]} 2>&1); then ok "helm lint --strict ($s)"
    else echo "$log"; fail "helm lint --strict ($s)"; fi
  done
}

render() {  # render set $1 into $OUT/$1.yaml
  # shellcheck disable=SC2086
  "$BIN/helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$K8S_VERSION" ${SETS[$1]} >"$OUT/$1.yaml"
}

run_validate() {
  local s
  for s in "${SET_NAMES[@]}"; do
    if ! render "$s"; then fail "helm template ($s)"; continue; fi
    if "$BIN/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$OUT/$s.yaml"; then ok "kubernetes-validate --strict $K8S_VERSION ($s)"
    else fail "kubernetes-validate --strict $K8S_VERSION ($s)"; fi
  done
}

run_checkov() {
  local s args=()
  for f in $DOCKERFILES; do args+=(-f "$f"); done
  for s in "${CHECKOV_SETS[@]}"; do
    [ -s "$OUT/$s.yaml" ] || render "$s" || { fail "helm template ($s)"; return; }
    args+=(-f "$OUT/$s.yaml")
  done
  # --skip-download: offline, no Prisma Cloud API; settings (none skipped globally) in .checkov.yaml
  if "$BIN/checkov" --config-file .checkov.yaml "${args[@]}"; then ok "checkov (Dockerfile, ${CHECKOV_SETS[*]})"
  else fail "checkov (Dockerfile, ${CHECKOV_SETS[*]})"; fi
}

for step in "${STEPS[@]}"; do
  case $step in
    hadolint|lint|validate|checkov) "run_$step" ;;
    *) echo "usage: tools/check_k8s.sh [hadolint|lint|validate|checkov ...]" >&2; exit 2 ;;
  esac
done

if ((${#failed[@]})); then
  echo "check_k8s: ${#failed[@]} check(s) failed in $((SECONDS - t0)) s:"; printf '  %s\n' "${failed[@]}"; exit 1
fi
echo "check_k8s: all passed in $((SECONDS - t0)) s"
