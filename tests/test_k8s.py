"""The image and Helm chart checks (tools/check_k8s.sh) run for real and can fail; what the chart renders."""
import os, sys, time, signal, shutil, subprocess, urllib.request, urllib.error
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT/'k8s'/'flexrl'
PARAMS = 'params/train_skills.yaml'


@pytest.fixture(scope='session')
def infra() -> Path:
    "The pinned infra tools' bin folder (`tools/infra.sh install` is idempotent: quick once installed)."
    subprocess.run([ROOT/'tools'/'infra.sh', 'install'], check=True, cwd=ROOT)
    return ROOT/'.venv-infra'/'bin'


def check(*steps, **env) -> subprocess.CompletedProcess:
    "Run tools/check_k8s.sh STEPS with extra environment variables; stdout and stderr together."
    return subprocess.run([ROOT/'tools'/'check_k8s.sh', *steps], cwd=ROOT, env={**os.environ, **env},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def render(infra, *args, release='flexrl', chart=CHART) -> list[dict]:
    "`helm template` in namespace flexrl, parsed into its objects."
    r = subprocess.run([infra/'helm', 'template', release, chart, '--namespace', 'flexrl', *args],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def find(objs, kind, name=None) -> dict:
    "The one object of `kind` (and `name`)."
    hits = [o for o in objs if o['kind'] == kind and (name is None or o['metadata']['name'] == name)]
    assert len(hits) == 1, f'{kind} {name}: {[o["metadata"]["name"] for o in hits]}'
    return hits[0]


def pod_spec(obj) -> dict: return obj['spec'] if obj['kind'] == 'Pod' else obj['spec']['template']['spec']


def env_of(container) -> dict: return {e['name']: e.get('value') for e in container.get('env', [])}


def chart_copy(tmp_path, **values) -> Path:
    "A copy of the chart whose values.yaml has dotted `values` set (the comments are lost)."
    dest = tmp_path/'flexrl'
    shutil.copytree(CHART, dest)
    v = yaml.safe_load((dest/'values.yaml').read_text())
    for key, value in values.items():
        *path, last = key.split('.')
        d = v
        for p in path: d = d[p]
        d[last] = value
    (dest/'values.yaml').write_text(yaml.safe_dump(v))
    return dest


GPU_JOB = ['-f', 'k8s/values-gpu.yaml', '--set', 'job.enabled=true', '--set', 'job.notebook=train_skills',
           '--set', 'job.gpus=1', '--set-file', f'job.paramsYaml={PARAMS}']
POINTS = 'k8s/sweep-points.example.json'  # a 2x2 sweep of train_skills, as `flexrl sweep --submit` writes it
SWEEP = ['--set', 'sweep.enabled=true', '--set', 'sweep.notebook=train_skills', '--set', 'sweep.parentRunId=p4r3nt',
         '--set-file', f'sweep.pointsJson={POINTS}']
VALUE_SETS = {'default': [], 'minikube': ['-f', 'k8s/values-minikube.yaml'], 'gpu+job': GPU_JOB, 'gpu+job+sweep': GPU_JOB + SWEEP}


# ---------------------------------------------------------------- the checks pass, and each can fail

def test_all_checks_pass(infra):
    r = check()
    assert r.returncode == 0, r.stdout
    ok = [l for l in r.stdout.splitlines() if l.startswith('check_k8s: ok')]
    sets = ('default', 'minikube', 'gpu', 'job', 'sweep')
    steps = ['hadolint Dockerfile'] + [f'helm lint --strict ({s})' for s in sets] \
        + [f'kubernetes-validate --strict 1.34.0 ({s})' for s in sets] + ['checkov']
    for s in steps: assert any(s in l for l in ok), f'{s} did not pass:\n{r.stdout}'
    assert 'Failed checks: 0' in r.stdout and 'check_k8s: all passed' in r.stdout


def test_hadolint_fails_on_a_bad_dockerfile(infra, tmp_path):
    bad = tmp_path/'Dockerfile'
    bad.write_text('FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD flexrl\n')
    r = check('hadolint', DOCKERFILES=str(bad))
    assert r.returncode == 1 and f'FAIL  hadolint {bad}' in r.stdout, r.stdout
    for rule in ('DL3007', 'DL3015', 'DL3025'): assert rule in r.stdout  # latest tag, recommends, shell-form CMD


@pytest.mark.parametrize('values, message', [
    ({'inference.tp': 'two'}, 'inference.tp: Invalid type. Expected: integer, given: string'),
    ({'job.gpus': -1}, 'job.gpus: Must be greater than or equal to 0'),
    ({'inference.tensorParallel': 2}, 'Additional property tensorParallel is not allowed'),
    ({'image.pullPolicy': 'Sometimes'}, 'image.pullPolicy must be one of'),
    ({'mlflow.artifactsDestination': 'mlartifacts'}, 'mlflow.artifactsDestination: Does not match pattern'),
])
def test_schema_rejects_bad_values(infra, tmp_path, values, message):
    r = check('lint', CHART=str(chart_copy(tmp_path, **values)))
    assert r.returncode == 1 and 'FAIL  helm lint --strict (default)' in r.stdout and message in r.stdout, r.stdout


def test_kubernetes_validate_catches_an_invalid_field(infra, tmp_path):
    chart = chart_copy(tmp_path)
    t = chart/'templates'/'inference-deployment.yaml'
    t.write_text(t.read_text().replace('replicas: {{ .Values.inference.replicas }}', 'replicas: "{{ .Values.inference.replicas }}"'))
    r = check('validate', CHART=str(chart))
    assert r.returncode == 1 and 'FAIL  kubernetes-validate --strict 1.34.0 (default)' in r.stdout, r.stdout
    assert "spec.replicas: '1' is not of type 'integer'" in r.stdout


def test_kubernetes_validate_rejects_unknown_fields(infra, tmp_path):
    chart = chart_copy(tmp_path)
    t = chart/'templates'/'mlflow-service.yaml'
    t.write_text(t.read_text().replace('  type: {{ .Values.mlflow.service.type }}', '  type: {{ .Values.mlflow.service.type }}\n  sessionAffinty: ClientIP'))
    r = check('validate', CHART=str(chart))
    assert r.returncode == 1 and "Additional properties are not allowed ('sessionAffinty' was unexpected)" in r.stdout, r.stdout


def test_checkov_catches_a_weakened_security_context(infra, tmp_path):
    chart = chart_copy(tmp_path, **{'securityContext.readOnlyRootFilesystem': False, 'securityContext.allowPrivilegeEscalation': True})
    r = check('checkov', CHART=str(chart))
    assert r.returncode == 1 and 'FAIL  checkov' in r.stdout, r.stdout
    assert 'CKV_K8S_22' in r.stdout and 'CKV_K8S_20' in r.stdout


def test_checkov_catches_an_unexplained_dockerfile_finding(infra, tmp_path):
    df = tmp_path/'Dockerfile'
    df.write_text(''.join(l for l in (ROOT/'Dockerfile').read_text().splitlines(True) if not l.startswith('#checkov:skip')))
    r = check('checkov', DOCKERFILES=str(df))
    assert r.returncode == 1 and 'CKV_DOCKER_2' in r.stdout, r.stdout


def test_checkov_sees_pods_without_a_network_policy(infra, tmp_path):
    r = check('checkov', CHART=str(chart_copy(tmp_path, **{'networkPolicy.enabled': False})))
    assert r.returncode == 1 and 'CKV2_K8S_6' in r.stdout, r.stdout


# ---------------------------------------------------------------- what the chart renders

def test_job_follows_the_submit_contract(infra, tmp_path):
    params = tmp_path/'params.yaml'
    params.write_text('# a comment: kept\nseed: 3\nppo: {n_steps: 64}\nname: "quoted \\"text\\""\n')
    objs = render(infra, '--set', 'job.enabled=true', '--set', 'inference.enabled=false', '--set', 'mlflow.enabled=false',
                  '--set', 'job.notebook=train_skills', '--set', 'job.gpus=2', '--set-file', f'job.paramsYaml={params}',
                  '--set', 'mlflow.trackingUri=http://mlflow.example:5000', '--set', 'image.repository=reg.example/flexrl',
                  '--set', 'image.tag=abc123', '--set', 'job.backoffLimit=2', '--set', 'job.activeDeadlineSeconds=600',
                  '--set', 'job.ttlSecondsAfterFinished=60', release='exp1')
    assert [o['kind'] for o in objs] == ['ConfigMap', 'Job']
    cm, job = find(objs, 'ConfigMap', 'exp1-flexrl-params'), find(objs, 'Job', 'exp1-flexrl-job')
    assert cm['data'] == {'params.yaml': params.read_text()}
    assert job['apiVersion'] == 'batch/v1'
    assert job['metadata']['labels']['app.kubernetes.io/instance'] == 'exp1'
    assert job['metadata']['labels']['app.kubernetes.io/component'] == 'job'
    assert (job['spec']['backoffLimit'], job['spec']['activeDeadlineSeconds'], job['spec']['ttlSecondsAfterFinished']) == (2, 600, 60)
    spec = pod_spec(job)
    assert spec['restartPolicy'] == 'Never'
    c, = spec['containers']
    assert c['command'] + c['args'] == ['flexrl', 'run', 'train_skills', '-f', '/etc/flexrl/params.yaml', '--name', 'exp1']
    assert c['image'] == 'reg.example/flexrl:abc123'
    assert env_of(c)['MLFLOW_TRACKING_URI'] == 'http://mlflow.example:5000'
    assert c['resources']['limits']['nvidia.com/gpu'] == 2
    assert {'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'} in spec['tolerations']
    mount, = [m for m in c['volumeMounts'] if m['mountPath'] == '/etc/flexrl']
    vol, = [v for v in spec['volumes'] if v['name'] == mount['name']]
    assert vol['configMap']['name'] == 'exp1-flexrl-params'


def test_release_without_services_or_job_is_its_service_account(infra):
    "What Terraform installs beside an external MLflow with inference off: the Jobs' ServiceAccount, nothing else."
    objs = render(infra, '--set', 'inference.enabled=false', '--set', 'mlflow.enabled=false', '--set', 'serviceAccount.name=runner',
                  '--set', 'serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account=wl@p.iam.gserviceaccount.com')
    assert [o['kind'] for o in objs] == ['ServiceAccount']
    sa = find(objs, 'ServiceAccount', 'runner')
    assert sa['metadata']['annotations'] == {'iam.gke.io/gcp-service-account': 'wl@p.iam.gserviceaccount.com'}
    assert sa['automountServiceAccountToken'] is False
    assert render(infra, '--set', 'inference.enabled=false', '--set', 'mlflow.enabled=false', '--set', 'serviceAccount.create=false') == []


def test_job_logs_to_the_chart_mlflow_and_needs_no_gpu(infra):
    objs = render(infra, '--set', 'job.enabled=true', '--set', 'job.notebook=evaluate_agent', release='exp2')
    job, svc = find(objs, 'Job'), find(objs, 'Service', 'exp2-flexrl-mlflow')
    c, = pod_spec(job)['containers']
    assert env_of(c)['MLFLOW_TRACKING_URI'] == f'http://exp2-flexrl-mlflow.flexrl.svc:{svc["spec"]["ports"][0]["port"]}'
    assert 'nvidia.com/gpu' not in c['resources']['limits'] and 'tolerations' not in pod_spec(job)
    assert find(objs, 'ConfigMap')['data'] == {'params.yaml': '{}'}  # no params file: the notebook's defaults


def test_job_needs_a_notebook(infra):
    r = subprocess.run([infra/'helm', 'template', 'x', CHART, '--set', 'job.enabled=true'], capture_output=True, text=True)
    assert r.returncode != 0 and 'job.notebook' in r.stderr


@pytest.mark.parametrize('tp', [1, 2, 4])
def test_inference_gpus_equal_tp(infra, tp):
    objs = render(infra, '--set', f'inference.tp={tp}', '--set', 'inference.gpu=true', '--set', 'inference.args={--mode,constrained}')
    spec = pod_spec(find(objs, 'Deployment', 'flexrl-inference'))
    c, = spec['containers']
    assert c['resources']['limits']['nvidia.com/gpu'] == tp
    assert {'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'} in spec['tolerations']
    server = ['--host', '0.0.0.0', '--port', '8000', '--mode', 'constrained']
    if tp == 1: assert c['command'] + c['args'] == ['flexrl', 'serve', *server]
    else: assert c['command'] + c['args'] == ['torchrun', '--standalone', '--nproc-per-node', str(tp), '-m', 'flexrl.parallel', 'serve', '--tp', str(tp), *server]


def get(url, token=None) -> int:
    "The HTTP status of GET `url`; 0 when nothing answers."
    req = urllib.request.Request(url, headers={'Authorization': f'Bearer {token}'} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r: return r.status
    except urllib.error.HTTPError as e: return e.code
    except urllib.error.URLError: return 0


@pytest.mark.parametrize('tp', [1, 2])
def test_the_rendered_server_command_serves(infra, tmp_path, port, tp):
    "Run the Deployment's command and env as rendered (--tiny model, CPU), the token file in place of the Secret."
    objs = render(infra, '--set', f'inference.tp={tp}', '--set', f'inference.port={port}', '--set', 'inference.args={--tiny}')
    c, = pod_spec(find(objs, 'Deployment', 'flexrl-inference'))['containers']
    env = env_of(c)
    token = tmp_path/'token'/Path(env['FLEXRL_API_TOKEN_FILE']).name
    token.parent.mkdir(); token.write_text('s3cret\n')
    env.update(FLEXRL_API_TOKEN_FILE=str(token), HOME=str(tmp_path), FLEXRL_HOME=str(tmp_path/'data'), OMP_NUM_THREADS='1')
    cmd = [str(Path(sys.executable).parent/c['command'][0]), *c['args']]
    p = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url, deadline = f'http://127.0.0.1:{port}', time.monotonic() + 120
        while p.poll() is None and get(f'{url}/ready') != 200:
            assert time.monotonic() < deadline, 'not ready in 120 s'
            time.sleep(1)
        assert p.poll() is None, f'{cmd} exited:\n{p.stdout.read()}'
        assert get(f'{url}/health') == 200 and get(f'{url}/v1/models') == 401 and get(f'{url}/v1/models', 's3cret') == 200
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(30)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()


def test_cpu_inference_asks_for_no_gpu(infra):
    c, = pod_spec(find(render(infra, '-f', 'k8s/values-minikube.yaml'), 'Deployment', 'flexrl-inference'))['containers']
    assert not any('gpu' in k for k in c['resources']['limits']) and c['command'] == ['flexrl']


def test_servers_are_probed_on_their_routes(infra):
    objs = render(infra)
    c, = pod_spec(find(objs, 'Deployment', 'flexrl-inference'))['containers']
    assert c['livenessProbe']['httpGet'] == {'path': '/health', 'port': 'http'}
    assert c['readinessProbe']['httpGet'] == {'path': '/ready', 'port': 'http'}
    assert [p['containerPort'] for p in c['ports'] if p['name'] == 'http'] == [8000]
    m, = pod_spec(find(objs, 'Deployment', 'flexrl-mlflow'))['containers']
    assert m['livenessProbe']['httpGet']['path'] == m['readinessProbe']['httpGet']['path'] == '/health'


def test_api_token_reaches_the_server_as_a_file_from_a_secret(infra):
    for args, secret in [([], 'flexrl-api-token'), (['--set', 'inference.apiToken.existingSecret=mine', '--set', 'inference.apiToken.key=t'], 'mine')]:
        objs = render(infra, *args)
        spec = pod_spec(find(objs, 'Deployment', 'flexrl-inference'))
        c, = spec['containers']
        path = Path(env_of(c)['FLEXRL_API_TOKEN_FILE'])
        mount, = [m for m in c['volumeMounts'] if m['mountPath'] == str(path.parent)]
        vol, = [v for v in spec['volumes'] if v['name'] == mount['name']]
        assert vol['secret']['secretName'] == secret
        if secret == 'flexrl-api-token': assert path.name in find(objs, 'Secret', secret)['data']
        else: assert path.name == 't' and not [o for o in objs if o['kind'] == 'Secret']


def test_mlflow_keeps_its_store_and_artifacts_on_the_claim(infra):
    objs = render(infra)
    spec = pod_spec(find(objs, 'Deployment', 'flexrl-mlflow'))
    c, = spec['containers']
    args = ' '.join(c['command'] + c['args'])
    for a in ('mlflow server --host 0.0.0.0', '--backend-store-uri sqlite:////mlflow/mlflow.db', '--artifacts-destination /mlflow/artifacts'):
        assert a in args
    mount, = [m for m in c['volumeMounts'] if m['mountPath'] == '/mlflow']
    vol, = [v for v in spec['volumes'] if v['name'] == mount['name']]
    assert find(objs, 'PersistentVolumeClaim', vol['persistentVolumeClaim']['claimName'])


@pytest.mark.parametrize('dest', ['gs://my-bucket/mlflow', 's3://my-bucket/mlflow'])
def test_mlflow_artifacts_can_go_to_object_storage(infra, dest):
    c, = pod_spec(find(render(infra, '--set', f'mlflow.artifactsDestination={dest}'), 'Deployment', 'flexrl-mlflow'))['containers']
    i = c['args'].index('--artifacts-destination')
    assert c['args'][i + 1] == dest and '/mlflow/artifacts' not in c['args']


@pytest.mark.parametrize('name', VALUE_SETS)
def test_every_pod_is_hardened(infra, name):
    pods = [o for o in render(infra, *VALUE_SETS[name]) if o['kind'] in ('Deployment', 'Job', 'Pod')]
    assert len(pods) == {'gpu+job': 4, 'gpu+job+sweep': 5}.get(name, 3)
    for o in pods:
        spec, what = pod_spec(o), f"{o['kind']} {o['metadata']['name']}"
        assert spec['automountServiceAccountToken'] is False, what
        assert spec['securityContext']['runAsNonRoot'] is True and spec['securityContext']['runAsUser'] >= 10000, what
        assert spec['securityContext']['seccompProfile'] == {'type': 'RuntimeDefault'}, what
        tmp = [v for v in spec['volumes'] if v['name'] == 'tmp']
        assert tmp and 'emptyDir' in tmp[0], what
        for c in spec['containers']:
            sc = c['securityContext']
            assert sc['readOnlyRootFilesystem'] is True and sc['allowPrivilegeEscalation'] is False, what
            assert sc['capabilities'] == {'drop': ['ALL']} and sc['runAsNonRoot'] is True, what
            assert {m['mountPath'] for m in c['volumeMounts']} >= {'/tmp'}, what
            assert {'cpu', 'memory'} <= set(c['resources']['limits']) and {'cpu', 'memory'} <= set(c['resources']['requests']), what


def test_digest_pins_the_image_and_drops_the_digest_skip(infra):
    digest = 'sha256:' + 'ab' * 32
    for name, args in VALUE_SETS.items():
        tag_pinned = [o for o in render(infra, *args) if o['kind'] in ('Deployment', 'Job', 'Pod')]
        assert all(any(v.startswith('CKV_K8S_43=') for v in o['metadata']['annotations'].values()) for o in tag_pinned), name
        pods = [o for o in render(infra, *args, '--set', f'image.digest={digest}') if o['kind'] in ('Deployment', 'Job', 'Pod')]
        for o in pods:
            assert pod_spec(o)['containers'][0]['image'].endswith(f'flexrl@{digest}'), name
            assert not any(v.startswith('CKV_K8S_43=') for v in o['metadata'].get('annotations', {}).values()), name


@pytest.mark.parametrize('name', VALUE_SETS)
def test_checkov_skips_carry_reasons(infra, name):
    skips = [(k, v) for o in render(infra, *VALUE_SETS[name]) for k, v in o['metadata'].get('annotations', {}).items() if k.startswith('checkov.io/skip')]
    assert skips
    for k, v in skips:
        check_id, _, reason = v.partition('=')
        assert check_id.startswith('CKV') and len(reason) > 20, (k, v)


# ---------------------------------------------------------------- the sweep's Indexed Job, and no Job without a tracking server

def test_sweep_follows_the_sweep_contract(infra):
    import json
    points = json.loads((ROOT/POINTS).read_text())
    objs = render(infra, '--set', 'inference.enabled=false', '--set', 'mlflow.enabled=false', *SWEEP, '--set', 'sweep.parallelism=3',
                  '--set', 'sweep.gpus=1', '--set', 'sweep.backoffLimitPerIndex=2', '--set', 'sweep.maxFailedIndexes=10',
                  '--set', 'sweep.runName=grid', '--set', 'sweep.experiment=abl', '--set', 'mlflow.trackingUri=http://m:5000', release='sw1')
    assert sorted(o['kind'] for o in objs) == ['ConfigMap', 'Job']
    cm, job = find(objs, 'ConfigMap', 'sw1-flexrl-points'), find(objs, 'Job', 'sw1-flexrl-sweep')
    assert json.loads(cm['data']['points.json']) == points and job['metadata']['labels']['app.kubernetes.io/component'] == 'sweep'
    spec = job['spec']
    assert (spec['completionMode'], spec['completions'], spec['parallelism']) == ('Indexed', len(points), 3)
    assert (spec['backoffLimitPerIndex'], spec['maxFailedIndexes']) == (2, len(points))  # at most the points
    assert 'backoffLimit' not in spec and job['metadata']['annotations']['flexrl.dev/parent-run-id'] == 'p4r3nt'
    c, = pod_spec(job)['containers']
    assert c['command'] + c['args'] == ['flexrl', 'run', 'train_skills', '--points', '/etc/flexrl/points.json', '--parent-run-id', 'p4r3nt',
                                        '--name', 'grid', '--experiment', 'abl']
    assert env_of(c)['MLFLOW_TRACKING_URI'] == 'http://m:5000' and c['resources']['limits']['nvidia.com/gpu'] == 1
    mount, = [m for m in c['volumeMounts'] if m['mountPath'] == '/etc/flexrl']
    assert next(v for v in pod_spec(job)['volumes'] if v['name'] == mount['name'])['configMap']['name'] == 'sw1-flexrl-points'
    spec = find(render(infra, '--set', 'inference.enabled=false', *SWEEP, release='sw2'), 'Job')['spec']
    assert spec['parallelism'] == len(points) and 'maxFailedIndexes' not in spec  # 4 pods at most, no limit by default


@pytest.mark.parametrize('args, message', [
    (['--set', 'sweep.maxPoints=3'], 'the sweep has 4 points, more than sweep.maxPoints (3)'),
    (['--set-file', 'sweep.pointsJson={empty}'], 'sweep.pointsJson holds no points'),
    (['--set-file', 'sweep.pointsJson={text}'], 'sweep.pointsJson: Does not match pattern'),
    (['--set', 'mlflow.enabled=false'], 'no tracking server: the runs would be lost with the pod'),
    (['--set', 'sweep.parentRunId='], 'sweep.parentRunId: String length must be greater than or equal to 1'),
])
def test_sweep_refuses_what_would_lose_or_overrun(infra, tmp_path, args, message):
    (tmp_path/'empty.json').write_text('[]\n'); (tmp_path/'text.json').write_text('seed: 1\n')
    args = [x.format(empty=tmp_path/'empty.json', text=tmp_path/'text.json') for x in args]
    r = subprocess.run([infra/'helm', 'template', 'x', CHART, *SWEEP, *args], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and message in r.stderr, r.stderr


def test_job_without_tracking_server_is_refused_unless_its_store_is_on_a_claim(infra):
    job = ['--set', 'job.enabled=true', '--set', 'job.notebook=train_skills', '--set', 'mlflow.enabled=false', '--set', 'inference.enabled=false']
    r = subprocess.run([infra/'helm', 'template', 'x', CHART, *job], capture_output=True, text=True)
    assert r.returncode != 0 and 'no tracking server' in r.stderr and 'data.existingClaim' in r.stderr, r.stderr
    spec = pod_spec(find(render(infra, *job, '--set', 'data.existingClaim=runs'), 'Job'))
    assert 'MLFLOW_TRACKING_URI' not in env_of(spec['containers'][0])
    assert next(v for v in spec['volumes'] if v['name'] == 'data')['persistentVolumeClaim'] == {'claimName': 'runs'}


def test_schema_rejects_bad_sweep_values(infra, tmp_path):
    r = check('lint', CHART=str(chart_copy(tmp_path, **{'sweep.parallelism': 0})))
    assert r.returncode == 1 and 'sweep.parallelism: Must be greater than or equal to 1' in r.stdout, r.stdout


def test_checks_catch_a_broken_sweep_template(infra, tmp_path):
    chart = chart_copy(tmp_path)
    t = chart/'templates'/'sweep-job.yaml'
    t.write_text(t.read_text().replace('  completions: {{ $n }}', '  completions: "{{ $n }}"'))
    r = check('validate', CHART=str(chart))
    assert r.returncode == 1 and 'FAIL  kubernetes-validate --strict 1.34.0 (sweep)' in r.stdout, r.stdout
    assert "spec.completions: '4' is not of type 'integer'" in r.stdout
    chart = chart_copy(tmp_path/'2')
    t = chart/'templates'/'sweep-job.yaml'
    t.write_text(t.read_text().replace('          securityContext:\n            {{- toYaml .Values.securityContext | nindent 12 }}\n', ''))
    r = check('checkov', CHART=str(chart))
    assert r.returncode == 1 and 'FAIL  checkov' in r.stdout and 'CKV_K8S_20' in r.stdout, r.stdout
