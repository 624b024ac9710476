"`flexrl submit` and `flexrl.jobs` with the real chart and helm, against kmock's Kubernetes API emulator on 127.0.0.1."
import asyncio, os, re, secrets, subprocess, sys, threading, time
from pathlib import Path
import kmock
import pytest
import yaml
from kubernetes import client as kube
from flexrl import jobs
from flexrl.cli import main

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT/'params'/'train_skills.yaml'
NS = 'flexrl-test'
URI = 'http://mlflow.example:5000'  # a tracking server for Jobs that never run a notebook here


class Emulator:
    "kmock's Kubernetes emulator served from a thread; `logs` maps pod names to their log text."
    def __init__(self):
        self.logs, self._ready = {}, threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(30): raise RuntimeError('the Kubernetes emulator did not start')

    async def _serve(self):
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with kmock.KubernetesEmulator() as emu, kmock.Server(emu) as server:
            for r in ('v1/pods', 'v1/configmaps', 'v1/services', 'batch/v1/jobs'): emu.resources[r] = {}
            emu[kmock.subresource('log')] << (lambda request: self.logs.get(request.name, '').encode())
            self.emu, self.url = emu, str(server.url).rstrip('/')
            self._ready.set()
            await self._stop.wait()

    def writes(self) -> list[str]:
        "The requests that could have changed something, as 'METHOD path'."
        return [f'{r.method.value} {r.url.path}' for r in list(self.emu) if r.method.value not in ('GET', 'HEAD')]

    def close(self): self._loop.call_soon_threadsafe(self._stop.set); self._thread.join(10)


class Controller(threading.Thread):
    "Plays the Job controller for the first Job in `namespace`: a pod with `log`, `active: 1`, then `outcome`."
    def __init__(self, emulator: Emulator, namespace: str, outcome: str = 'Complete', log: str = ''):
        super().__init__(daemon=True)
        self.emulator, self.namespace, self.outcome, self.log = emulator, namespace, outcome, log
        self.job, self.error = None, None
        self.start()

    def run(self):
        try:
            with jobs.kube_client(host=self.emulator.url) as api:
                batch, core = kube.BatchV1Api(api), kube.CoreV1Api(api)
                for _ in range(1200):
                    if found := batch.list_namespaced_job(self.namespace).items: break
                    time.sleep(0.05)
                self.job = found[0]
                name, pod = self.job.metadata.name, f'{self.job.metadata.name}-{secrets.token_hex(3)[:5]}'
                self.emulator.logs[pod] = self.log
                core.create_namespaced_pod(self.namespace, {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': pod, 'labels': {'job-name': name}},
                                                            'spec': {'containers': [{'name': 'notebook', 'image': 'flexrl'}]}})
                batch.patch_namespaced_job_status(name, self.namespace, {'status': {'active': 1}})
                time.sleep(0.5)
                done = {'succeeded': 1} if self.outcome == 'Complete' else {'failed': 1}
                batch.patch_namespaced_job_status(name, self.namespace, {'status': {'active': 0, **done, 'conditions': [{'type': self.outcome, 'status': 'True'}]}})
        except Exception as e: self.error = e

    def finish(self):
        self.join(60)
        assert self.error is None and self.job is not None, f'controller: {self.error!r}'
        return self.job


@pytest.fixture
def emulator():
    emu = Emulator()
    yield emu
    emu.close()


@pytest.fixture
def api(emulator):
    with jobs.kube_client(host=emulator.url) as api: yield api


@pytest.fixture
def kubeconfig(emulator, tmp_path) -> Path:
    path = tmp_path/'kubeconfig'
    path.write_text(yaml.safe_dump({'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'emulator',
        'clusters': [{'name': 'emulator', 'cluster': {'server': emulator.url}}],
        'users': [{'name': 'tester', 'user': {'token': 'test-token'}}],
        'contexts': [{'name': 'emulator', 'context': {'cluster': 'emulator', 'user': 'tester', 'namespace': NS}}]}))
    return path


def left(api, namespace: str = NS) -> list[str]:
    "The Jobs and ConfigMaps in `namespace`."
    return ([f'job/{j.metadata.name}' for j in kube.BatchV1Api(api).list_namespaced_job(namespace).items] +
            [f'configmap/{c.metadata.name}' for c in kube.CoreV1Api(api).list_namespaced_config_map(namespace).items])


def flexrl(*args, env=None) -> subprocess.CompletedProcess:
    "The `flexrl` console script of this environment, run as a user runs it."
    exe = Path(sys.executable).parent/'flexrl'
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=180, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def flag(cmd: list[str], name: str) -> str:
    "The value after `name` in a command line."
    return cmd[cmd.index(name) + 1]


def test_rendered_job_follows_the_chart_contract():
    ms = jobs.render_job('train_skills', PARAMS, gpus=2, release='contract', image='registry:5000/flexrl:1.0',
                         tracking_uri='http://mlflow.example:5000', namespace=NS)
    cm, job = jobs.job_objects(ms)
    assert (cm['apiVersion'], cm['metadata']['name'], cm['data']) == ('v1', 'contract-flexrl-params', {'params.yaml': PARAMS.read_text()})
    assert (job['apiVersion'], job['metadata']['name'], job['metadata']['namespace']) == ('batch/v1', 'contract-flexrl-job', NS)
    labels = job['metadata']['labels']
    assert (labels['app.kubernetes.io/instance'], labels['app.kubernetes.io/component']) == ('contract', 'job')
    spec = job['spec']
    assert all(isinstance(spec[k], int) for k in ('backoffLimit', 'activeDeadlineSeconds', 'ttlSecondsAfterFinished'))
    pod = spec['template']['spec']
    c = pod['containers'][0]
    cmd = c.get('command', []) + c.get('args', [])
    assert flag(cmd, 'run') == 'nbs/experiments/train_skills.ipynb' and cmd[cmd.index('run') - 1] == 'flexrl'
    assert (flag(cmd, '-f'), flag(cmd, '--name')) == ('/etc/flexrl/params.yaml', 'contract')
    assert {e['name']: e.get('value') for e in c['env']}['MLFLOW_TRACKING_URI'] == 'http://mlflow.example:5000'
    assert (c['image'], pod['restartPolicy'], c['resources']['limits']['nvidia.com/gpu']) == ('registry:5000/flexrl:1.0', 'Never', 2)
    assert any(t.get('key') == 'nvidia.com/gpu' for t in pod.get('tolerations', []))
    mount = next(m for m in c['volumeMounts'] if m['mountPath'] == '/etc/flexrl')
    assert next(v for v in pod['volumes'] if v['name'] == mount['name'])['configMap']['name'] == cm['metadata']['name']
    cpu_pod = jobs.job_objects(jobs.render_job('train_skills', PARAMS, gpus=0, release='cpu', tracking_uri=URI))[1]['spec']['template']['spec']
    assert 'nvidia.com/gpu' not in cpu_pod['containers'][0]['resources'].get('limits', {})
    assert not any(t.get('key') == 'nvidia.com/gpu' for t in cpu_pod.get('tolerations', []))


# A cluster's job values as `terraform output -raw job_values_yaml` writes them (terraform/locals.tf `job_values`),
# plus a digest and servers turned on, which the Job's own values must override.
CLUSTER_VALUES = {
    'image': {'repository': 'europe-docker.pkg.dev/proj/flexrl/flexrl', 'tag': '0.1.0-cuda', 'digest': 'sha256:' + 'b' * 64},
    'serviceAccount': {'create': False, 'name': 'flexrl-workload'},
    'gpu': {'nodeSelector': {'cloud.google.com/gke-accelerator': 'nvidia-l4'},
            'tolerations': [{'key': 'nvidia.com/gpu', 'operator': 'Equal', 'value': 'present', 'effect': 'NoSchedule'}]},
    'inference': {'enabled': True},
    'mlflow': {'enabled': True, 'trackingUri': 'http://flexrl-mlflow.flexrl.svc:5000'},
}


@pytest.fixture
def cluster_values(tmp_path) -> Path:
    path = tmp_path/'gke-job-values.yaml'
    path.write_text(yaml.safe_dump(CLUSTER_VALUES))
    return path


def env_of(container: dict) -> dict:
    return {e['name']: e.get('value') for e in container['env']}


def test_values_files_give_the_cluster_settings(cluster_values, tmp_path):
    second = tmp_path/'second.yaml'
    second.write_text('serviceAccount:\n  name: team-runner\n')
    cm, job = jobs.job_objects(jobs.render_job('train_skills', PARAMS, gpus=1, release='gke', namespace=NS,
                                               values_files=[cluster_values, second]))  # only the ConfigMap and the Job
    pod = job['spec']['template']['spec']
    assert pod['serviceAccountName'] == 'team-runner'  # the later file wins
    assert pod['nodeSelector'] == CLUSTER_VALUES['gpu']['nodeSelector'] and pod['tolerations'] == CLUSTER_VALUES['gpu']['tolerations']
    c = pod['containers'][0]
    assert c['image'] == 'europe-docker.pkg.dev/proj/flexrl/flexrl@sha256:' + 'b' * 64
    assert env_of(c)['MLFLOW_TRACKING_URI'] == 'http://flexrl-mlflow.flexrl.svc:5000'
    assert (c['resources']['limits']['nvidia.com/gpu'], cm['data']['params.yaml']) == (1, PARAMS.read_text())
    cpu_pod = jobs.job_objects(jobs.render_job('train_skills', PARAMS, release='gke', values_files=[cluster_values]))[1]['spec']['template']['spec']
    assert cpu_pod['serviceAccountName'] == 'flexrl-workload' and 'nodeSelector' not in cpu_pod and 'tolerations' not in cpu_pod


def test_cli_values_are_overridden_by_its_options(api, kubeconfig, cluster_values, capsys):
    assert main(['submit', 'train_skills', '-f', str(PARAMS), '--gpus', '1', '--kubeconfig', str(kubeconfig), '--no-follow',
                 '--name', 'gke', '-v', str(cluster_values), '--image', 'registry:5000/flexrl:dev', '--tracking-uri', 'http://mine:5000']) == 0
    assert 'job gke-flexrl-job created' in capsys.readouterr().out
    assert sorted(left(api)) == ['configmap/gke-flexrl-params', 'job/gke-flexrl-job']
    pod = kube.BatchV1Api(api).read_namespaced_job('gke-flexrl-job', NS).spec.template.spec
    assert (pod.service_account_name, pod.node_selector) == ('flexrl-workload', {'cloud.google.com/gke-accelerator': 'nvidia-l4'})
    assert [(t.key, t.value, t.effect) for t in pod.tolerations] == [('nvidia.com/gpu', 'present', 'NoSchedule')]
    c = pod.containers[0]
    assert (c.image, {e.name: e.value for e in c.env}['MLFLOW_TRACKING_URI']) == ('registry:5000/flexrl:dev', 'http://mine:5000')
    assert (c.resources.limits['nvidia.com/gpu'], flag(c.command + c.args, 'run')) == ('1', 'nbs/experiments/train_skills.ipynb')

def test_release_names_are_dns_labels_and_unique():
    names = [jobs.release_name(stem) for stem in ['train_skills', 'My Notebook.v2', '__', 'x' * 90, 'Ünï-côde'] * 20]
    assert all(re.fullmatch(r'[a-z0-9]([-a-z0-9]*[a-z0-9])?', n) and len(n) <= 45 for n in names), names
    assert len(set(names)) == len(names)
    with pytest.raises(ValueError, match='invalid release name'): jobs.check_release('under_score')


def test_submit_follow_cleanup(emulator, api, capsys):
    sub = jobs.submit(jobs.render_job('train_skills', PARAMS, gpus=1, namespace=NS, tracking_uri=URI), api, NS)
    assert sorted(left(api)) == [f'configmap/{sub.configmap}', f'job/{sub.job}']
    controller = Controller(emulator, NS, 'Complete', 'executing cell 1\nexecuting cell 2\nrun: FINISHED\n')
    assert jobs.follow(sub, api, timeout=60, interval=0.1) == 'Succeeded'
    created = controller.finish()
    assert created.spec.template.spec.containers[0].resources.limits['nvidia.com/gpu'] == '1'
    out = capsys.readouterr().out
    assert 'executing cell 1\nexecuting cell 2\nrun: FINISHED\n' in out and out.rstrip().endswith(f'job {sub.job}: Succeeded')
    assert jobs.cleanup(sub, api) == [f'job/{sub.job}', f'configmap/{sub.configmap}']
    assert left(api) == []
    delete = [w for w in emulator.writes() if w.startswith('DELETE')]
    assert delete == [f'DELETE /apis/batch/v1/namespaces/{NS}/jobs/{sub.job}', f'DELETE /api/v1/namespaces/{NS}/configmaps/{sub.configmap}']
    job_delete = next(r for r in list(emulator.emu) if r.method.value == 'DELETE' and r.name == sub.job)
    assert job_delete.params.get('propagationPolicy') == 'Background'


def test_refused_job_leaves_no_configmap(api):
    ms = jobs.render_job('train_skills', PARAMS, release='taken', namespace=NS, tracking_uri=URI)
    kube.BatchV1Api(api).create_namespaced_job(NS, {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': 'taken-flexrl-job'},
                                                    'spec': {'template': {'spec': {'restartPolicy': 'Never', 'containers': [{'name': 'c', 'image': 'i'}]}}}})
    with pytest.raises(jobs.JobError, match='creating job taken-flexrl-job in flexrl-test: 409'): jobs.submit(ms, api, NS)
    assert left(api) == ['job/taken-flexrl-job']


def test_cli_submit_creates_follows_and_cleans_up(emulator, api, kubeconfig):
    controller = Controller(emulator, NS, 'Complete', 'papermill: executing train_skills\nrun: abc123 FINISHED\n')
    r = flexrl('submit', 'train_skills', '-f', PARAMS, '--gpus', '1', '--kubeconfig', kubeconfig, '--interval', '0.1', '--timeout', '90',
               '--tracking-uri', 'http://mlflow:5000')
    assert r.returncode == 0, r.stdout + r.stderr
    job = controller.finish()
    name = job.metadata.name
    assert re.fullmatch(r'train-skills-\d{10}-[0-9a-f]{6}-flexrl-job', name), name
    assert f'flexrl submit: job {name} created in namespace {NS}' in r.stdout
    assert 'papermill: executing train_skills\nrun: abc123 FINISHED\n' in r.stdout and f'job {name}: Succeeded' in r.stdout
    assert f'flexrl submit: deleted job/{name}, configmap/' in r.stdout
    c = job.spec.template.spec.containers[0]
    assert (c.resources.limits['nvidia.com/gpu'], flag(c.command + c.args, 'run')) == ('1', 'nbs/experiments/train_skills.ipynb')
    assert {e.name: e.value for e in c.env}['MLFLOW_TRACKING_URI'] == 'http://mlflow:5000'
    assert left(api) == []


def test_cli_failed_job_exits_1_and_is_cleaned_up(emulator, api, kubeconfig):
    controller = Controller(emulator, NS, 'Failed', 'NotebookError: cell 4 raised ValueError\n')
    r = flexrl('submit', 'train_skills', '-f', PARAMS, '--kubeconfig', kubeconfig, '--interval', '0.1', '--timeout', '90', '--tracking-uri', URI)
    name = controller.finish().metadata.name
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'NotebookError: cell 4 raised ValueError' in r.stdout and f'job {name}: Failed' in r.stdout
    assert left(api) == []


def test_cli_timeout_exits_1_and_deletes_the_job(api, kubeconfig):
    r = flexrl('submit', 'train_skills', '-f', PARAMS, '--kubeconfig', kubeconfig, '--interval', '0.1', '--timeout', '1', '--tracking-uri', URI)
    assert r.returncode == 1 and ': Timeout' in r.stdout, r.stdout + r.stderr
    assert left(api) == []


def test_cli_no_follow_and_keep_leave_the_job(emulator, api, kubeconfig):
    r = flexrl('submit', 'train_skills', '-f', PARAMS, '--kubeconfig', kubeconfig, '--no-follow', '--name', 'nofollow', '--tracking-uri', URI)
    assert r.returncode == 0 and 'job nofollow-flexrl-job created' in r.stdout, r.stdout + r.stderr
    assert sorted(left(api)) == ['configmap/nofollow-flexrl-params', 'job/nofollow-flexrl-job']
    jobs.cleanup(jobs.Submission('nofollow', NS, 'nofollow-flexrl-job', 'nofollow-flexrl-params'), api)
    controller = Controller(emulator, NS, 'Complete', 'done\n')
    r = flexrl('submit', 'train_skills', '-f', PARAMS, '--kubeconfig', kubeconfig, '--keep', '--name', 'kept', '--interval', '0.1', '--timeout', '90',
               '--tracking-uri', URI)
    controller.finish()
    assert r.returncode == 0 and 'kept job/kept-flexrl-job and configmap/kept-flexrl-params' in r.stdout, r.stdout + r.stderr
    assert sorted(left(api)) == ['configmap/kept-flexrl-params', 'job/kept-flexrl-job']


def test_cli_dry_run_prints_the_manifests_and_creates_nothing(emulator, kubeconfig):
    r = flexrl('submit', 'train_skills', '-f', PARAMS, '--gpus', '2', '--kubeconfig', kubeconfig, '--dry-run', '--name', 'dry', '--tracking-uri', URI)
    assert r.returncode == 0, r.stderr
    cm, job = sorted(yaml.safe_load_all(r.stdout), key=lambda m: m['kind'])
    assert (cm['metadata']['name'], job['metadata']['name'], job['metadata']['namespace']) == ('dry-flexrl-params', 'dry-flexrl-job', NS)
    assert job['spec']['template']['spec']['containers'][0]['resources']['limits']['nvidia.com/gpu'] == 2
    assert list(emulator.emu) == []  # not even a read


BAD_INPUT = {
    'bad yaml': (['train_skills', '-f', '{bad}'], {}, 'is not valid YAML'),
    'unknown key': (['train_skills', '-f', '{typo}'], {}, "unknown key 'sed'"),
    'unknown notebook': (['no_such_notebook', '-f', '{params}'], {}, 'notebook not found: no_such_notebook'),
    'missing params': (['train_skills', '-f', 'nope.yaml'], {}, 'params file not found: nope.yaml'),
    'bad release name': (['train_skills', '-f', '{params}', '--name', 'Bad_Name'], {}, "invalid release name 'Bad_Name'"),
    'missing helm': (['train_skills', '-f', '{params}'], {'FLEXRL_HELM': '/no/helm'}, 'tools/infra.sh install'),
    'missing values file': (['train_skills', '-f', '{params}', '--values', 'nope-values.yaml'], {}, 'values file not found: nope-values.yaml'),
    'bad values file': (['train_skills', '-f', '{params}', '-v', '{badvalues}'], {}, 'badvalues.yaml is not valid YAML'),
    'values file not a mapping': (['train_skills', '-f', '{params}', '-v', '{listvalues}'], {}, 'must be a mapping of Helm values, not a list'),
    'no tracking server': (['train_skills', '-f', '{params}', '--no-tracking'], {}, 'no tracking server for the Job: its runs would be lost'),
    'local store without a claim': (['train_skills', '-f', '{params}', '--no-tracking', '--local-store'], {}, '--local-store needs data.existingClaim'),
}


@pytest.mark.parametrize('case', BAD_INPUT)
def test_cli_bad_input_is_exit_2_and_creates_nothing(emulator, kubeconfig, tmp_path, monkeypatch, capsys, case):
    args, env, message = BAD_INPUT[case]
    (tmp_path/'bad.yaml').write_text('seed: [1\n'); (tmp_path/'typo.yaml').write_text('sed: 1\n')
    (tmp_path/'badvalues.yaml').write_text('image: {repository: [x\n'); (tmp_path/'listvalues.yaml').write_text('- image\n')
    args = [a.format(bad=tmp_path/'bad.yaml', typo=tmp_path/'typo.yaml', params=PARAMS, badvalues=tmp_path/'badvalues.yaml',
                     listvalues=tmp_path/'listvalues.yaml') for a in args]
    for k, v in env.items(): monkeypatch.setenv(k, v)
    args = [x for x in args if x != '--no-tracking'] + ([] if '--no-tracking' in args else ['--tracking-uri', URI])
    assert main(['submit', *args, '--kubeconfig', str(kubeconfig)]) == 2  # in-process: the subprocess runs are above
    err = capsys.readouterr().err
    assert err.startswith('flexrl submit: ') and message in err, err
    assert emulator.writes() == []


def test_helm_missing_everywhere_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.delenv('FLEXRL_HELM', raising=False)
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r'helm not found: run `tools/infra.sh install`'): jobs.find_helm(tmp_path)


def test_cli_unreachable_cluster_is_exit_1(tmp_path, port):
    path = tmp_path/'kubeconfig'
    path.write_text(yaml.safe_dump({'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'gone',
        'clusters': [{'name': 'gone', 'cluster': {'server': f'http://127.0.0.1:{port}'}}], 'users': [{'name': 'u', 'user': {'token': 't'}}],
        'contexts': [{'name': 'gone', 'context': {'cluster': 'gone', 'user': 'u'}}]}))
    r = flexrl('submit', 'train_skills', '-f', PARAMS, '--kubeconfig', path)
    assert r.returncode == 1 and 'cannot reach the Kubernetes API' in r.stderr, r.stdout + r.stderr


# ---------------------------------------------------------------- never lose a result

def test_cli_submit_finds_the_namespace_mlflow(api, kubeconfig, capsys):
    "No --tracking-uri: the chart's MLflow Service in the namespace is found and the pod logs to it."
    svc = next(m for m in jobs.helm_template('flexrl', {'inference': {'enabled': False}}, namespace=NS) if m['kind'] == 'Service')
    kube.CoreV1Api(api).create_namespaced_service(NS, svc)
    assert main(['submit', 'train_skills', '-f', str(PARAMS), '--kubeconfig', str(kubeconfig), '--no-follow', '--name', 'found']) == 0
    c = kube.BatchV1Api(api).read_namespaced_job('found-flexrl-job', NS).spec.template.spec.containers[0]
    assert {e.name: e.value for e in c.env}['MLFLOW_TRACKING_URI'] == f'http://flexrl-mlflow.{NS}.svc:5000'


def test_cli_local_store_is_the_pods_store_on_a_claim(emulator, kubeconfig, tmp_path, capsys):
    claim = tmp_path/'claim.yaml'
    claim.write_text('data:\n  existingClaim: flexrl-data\n')
    assert main(['submit', 'train_skills', '-f', str(PARAMS), '--kubeconfig', str(kubeconfig), '--local-store', '-v', str(claim), '--dry-run']) == 0
    job = next(m for m in yaml.safe_load_all(capsys.readouterr().out) if m['kind'] == 'Job')
    pod = job['spec']['template']['spec']
    assert 'MLFLOW_TRACKING_URI' not in env_of(pod['containers'][0])
    assert next(v for v in pod['volumes'] if v['name'] == 'data')['persistentVolumeClaim'] == {'claimName': 'flexrl-data'}
    assert emulator.writes() == []


# ---------------------------------------------------------------- sweeps: one Indexed Job, a child run per point

@pytest.fixture(scope='module')
def tracking(tmp_path_factory):
    "A real `mlflow server` on loopback, shared by the sweep tests (each uses its own experiment)."
    from conftest import free_port
    from mlflow_server import mlflow_server
    with mlflow_server(tmp_path_factory.mktemp('mlflow'), free_port()) as uri: yield uri


class IndexedController(threading.Thread):
    """Plays the Job controller and the pods for the next Indexed Job in `namespace`: for each index a pod (with a
    log) that records the point's child run in MLflow as `flexrl run --points` does (FAILED for the points in
    `fail`), then completedIndexes / failedIndexes and the final condition."""
    def __init__(self, emulator: Emulator, namespace: str, uri: str, fail=(), skip=()):
        super().__init__(daemon=True)
        self.emulator, self.namespace, self.uri, self.fail, self.skip = emulator, namespace, uri, set(fail), set(skip)
        self.job, self.entries, self.error = None, None, None
        self.start()

    def run(self):
        from mlflow.tracking import MlflowClient
        from flexrl.runner import point_tags
        try:
            with jobs.kube_client(host=self.emulator.url) as api:
                batch, core = kube.BatchV1Api(api), kube.CoreV1Api(api)
                for _ in range(1200):
                    found = [j for j in batch.list_namespaced_job(self.namespace).items
                             if j.spec.completion_mode == 'Indexed' and j.metadata.name not in self.skip]
                    if found: break
                    time.sleep(0.05)
                self.job = job = found[0]
                name, c = job.metadata.name, job.spec.template.spec.containers[0]
                cm = job.spec.template.spec.volumes[0].config_map.name
                self.entries = entries = __import__('json').loads(core.read_namespaced_config_map(cm, self.namespace).data['points.json'])
                args, env = c.command + c.args, {e.name: e.value for e in c.env}
                client = MlflowClient(env['MLFLOW_TRACKING_URI'])
                parent = client.get_run(flag(args, '--parent-run-id'))
                batch.patch_namespaced_job_status(name, self.namespace, {'status': {'active': len(entries)}})
                for k, e in enumerate(entries):
                    pod, failed = f'{name}-{k}-{secrets.token_hex(3)[:5]}', e['index'] in self.fail
                    self.emulator.logs[pod] = f'executing point {e["index"]}\n' + ('ValueError: diverged\n' if failed else 'done\n')
                    core.create_namespaced_pod(self.namespace, {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': pod,
                        'labels': {'job-name': name, 'batch.kubernetes.io/job-completion-index': str(k)}},
                        'spec': {'containers': [{'name': 'notebook', 'image': c.image}]}})
                    run = client.create_run(parent.info.experiment_id, run_name=f"{flag(args, '--name')}-{e['index']:02d}",
                                            tags={'mlflow.parentRunId': parent.info.run_id, **point_tags(e['index'], e['point'])})
                    for key, v in e['point'].items(): client.log_param(run.info.run_id, key, v)
                    client.log_metric(run.info.run_id, 'score', float(e['index']))
                    client.set_terminated(run.info.run_id, 'FAILED' if failed else 'FINISHED')
                ok = [k for k, e in enumerate(entries) if e['index'] not in self.fail]
                bad = [k for k, e in enumerate(entries) if e['index'] in self.fail]
                fmt = lambda ks: ','.join(map(str, ks))
                batch.patch_namespaced_job_status(name, self.namespace, {'status': {'active': 0, 'succeeded': len(ok), 'failed': len(bad),
                    'completedIndexes': fmt(ok), 'failedIndexes': fmt(bad), 'conditions': [{'type': 'Failed' if bad else 'Complete', 'status': 'True'}]}})
        except Exception as e: self.error = e

    def finish(self):
        self.join(60)
        assert self.error is None and self.job is not None, f'controller: {self.error!r}'
        return self.job


def runs_of(uri: str, parent: str):
    from mlflow.tracking import MlflowClient
    c = MlflowClient(uri)
    p = c.get_run(parent)
    kids = c.search_runs([p.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'", order_by=['attributes.start_time ASC'])
    return p, kids


def test_cluster_sweep_is_one_indexed_job_and_reruns_only_the_failed_points(emulator, api, kubeconfig, tracking, tmp_path):
    env = {'FLEXRL_HOME': str(tmp_path)}
    controller = IndexedController(emulator, NS, tracking, fail={1, 4})
    r = flexrl('sweep', 'train_skills', 'seed=0,1', 'ppo.n_steps=32,64,128', '--submit', '--parallelism', '3', '--kubeconfig', kubeconfig,
               '--tracking-uri', tracking, '--name', 'grid', '--experiment', 'k8s-grid', '--interval', '0.1', '--follow-timeout', '90', '--cleanup', env=env)
    job = controller.finish()
    assert r.returncode == 1, r.stdout + r.stderr
    assert (job.metadata.name, job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == ('grid-flexrl-sweep', 'Indexed', 6, 3)
    assert job.spec.backoff_limit_per_index == 0 and job.spec.template.spec.containers[0].env[0].value == tracking
    assert [e['point'] for e in controller.entries] == [{'seed': s, 'ppo.n_steps': n} for s in (0, 1) for n in (32, 64, 128)]
    assert all(e['params']['total_timesteps'] == 2048 and e['params']['ppo']['n_steps'] == e['point']['ppo.n_steps'] for e in controller.entries)
    assert 'sweep grid-flexrl-sweep: Failed: 4/6 succeeded, 2 failed (1,4), 0 running' in r.stdout, r.stdout
    assert '--- point 4 failed; the last lines of pod grid-flexrl-sweep-4-' in r.stdout and 'ValueError: diverged' in r.stdout
    parent_id = re.search(r'parent run ([0-9a-f]{32})', r.stdout)[1]
    assert f'flexrl sweep --rerun-failed {parent_id}' in r.stderr and '2 of 6 points failed (1, 4)' in r.stderr, r.stderr
    assert left(api) == []  # --cleanup
    parent, kids = runs_of(tracking, parent_id)
    assert (parent.info.status, parent.info.run_name, parent.data.tags['flexrl.kind']) == ('FAILED', 'grid', 'sweep')
    assert parent.data.tags['flexrl.sweep.job'] == 'grid-flexrl-sweep' and parent.data.tags['flexrl.image'] == 'ghcr.io/flex-rl/flexrl:0.1.0'
    assert parent.data.tags['git_sha'] and parent.data.params['n_runs'] == '6' and parent.data.tags['flexrl.sweep.failed'] == '1,4'
    assert {(k.info.run_name, k.info.status) for k in kids} == {(f'grid-{i:02d}', 'FAILED' if i in (1, 4) else 'FINISHED') for i in range(6)}
    from mlflow.tracking import MlflowClient
    summary = Path(MlflowClient(tracking).download_artifacts(parent_id, 'summary.csv', str(tmp_path))).read_text().splitlines()
    assert len(summary) == 7 and sum('FAILED' in l for l in summary) == 2

    controller = IndexedController(emulator, NS, tracking)
    r = flexrl('sweep', '--rerun-failed', parent_id, '--kubeconfig', kubeconfig, '--tracking-uri', tracking, '--interval', '0.1',
               '--follow-timeout', '90', env=env)
    job = controller.finish()
    assert r.returncode == 0, r.stdout + r.stderr
    assert (job.spec.completions, [e['index'] for e in controller.entries]) == (2, [1, 4])
    assert 'rerunning 2 failed point(s) of 6: 1, 4' in r.stdout and f'parent run {parent_id} FINISHED' in r.stdout
    parent, kids = runs_of(tracking, parent_id)
    assert parent.info.status == 'FINISHED' and parent.data.tags['flexrl.sweep.jobs'].count(',') == 1
    assert sorted(k.info.run_name for k in kids) == sorted([f'grid-{i:02d}' for i in range(6)] + ['grid-01', 'grid-04'])
    assert sorted(l.split(',')[1] for l in Path(MlflowClient(tracking).download_artifacts(parent_id, 'summary.csv', str(tmp_path/'2'))).read_text().splitlines()[1:]) == ['FINISHED'] * 6
    r = flexrl('sweep', '--rerun-failed', parent_id, '--kubeconfig', kubeconfig, '--tracking-uri', tracking, env=env)
    assert r.returncode == 0 and 'nothing to rerun' in r.stdout, r.stdout + r.stderr


def test_cluster_sweep_attach_follows_a_detached_sweep(emulator, api, kubeconfig, tracking, tmp_path):
    r = flexrl('sweep', 'train_skills', 'seed=0,1', '--submit', '--kubeconfig', kubeconfig, '--tracking-uri', tracking,
               '--name', 'detached', '--experiment', 'k8s-attach', '--no-follow', env={'FLEXRL_HOME': str(tmp_path)})
    assert r.returncode == 0 and 'flexrl sweep --attach' in r.stdout, r.stdout + r.stderr
    parent_id = re.search(r'parent run ([0-9a-f]{32})', r.stdout)[1]
    assert runs_of(tracking, parent_id)[0].info.status == 'RUNNING'
    controller = IndexedController(emulator, NS, tracking)
    r = flexrl('sweep', '--attach', parent_id, '--kubeconfig', kubeconfig, '--tracking-uri', tracking, '--interval', '0.1', env={'FLEXRL_HOME': str(tmp_path)})
    controller.finish()
    assert r.returncode == 0 and 'Succeeded: 2/2 succeeded' in r.stdout, r.stdout + r.stderr
    assert runs_of(tracking, parent_id)[0].info.status == 'FINISHED'


def test_cluster_sweep_dry_run_prints_the_manifests_and_creates_nothing(emulator, kubeconfig, capsys):
    assert main(['sweep', 'train_skills', 'seed=0,1', 'ppo.n_steps=32,64,128', '--dry-run', '--kubeconfig', str(kubeconfig),
                 '--tracking-uri', URI, '--name', 'dry', '--gpus', '1']) == 0
    cm, job = sorted(yaml.safe_load_all(capsys.readouterr().out), key=lambda m: m['kind'])
    assert (cm['metadata']['name'], len(__import__('json').loads(cm['data']['points.json']))) == ('dry-flexrl-points', 6)
    assert (job['spec']['completionMode'], job['spec']['completions'], job['metadata']['namespace']) == ('Indexed', 6, NS)
    assert job['spec']['template']['spec']['containers'][0]['resources']['limits']['nvidia.com/gpu'] == 1
    assert list(emulator.emu) == []


SWEEP_BAD_INPUT = {
    'unknown key': (['train_skills', 'sed=0,1'], "unknown key 'sed'"),
    'empty grid': (['train_skills', '-f', '{empty}'], "key 'seed': the grid has no values"),
    'over sweep.maxPoints': (['train_skills', 'seed=0,1,2', 'ppo.n_steps=32,64', '-v', '{max5}'], 'the sweep has 6 points, more than sweep.maxPoints (5)'),
    'missing cluster': (['train_skills', 'seed=0,1', '--kubeconfig', '/nonexistent/kubeconfig'], 'no Kubernetes configuration'),
    'no tracking server': (['train_skills', 'seed=0,1', '--no-tracking'], 'no tracking server for the Job'),
    'unreachable tracking server': (['train_skills', 'seed=0,1', '--tracking-uri', 'http://127.0.0.1:9'], 'cannot reach the tracking server http://127.0.0.1:9'),
    'no notebook': (['seed=0,1'], 'notebook not found: seed=0,1'),
    'unknown parent run': (['--rerun-failed', '0' * 32], f"no run {'0' * 32}"),
}


@pytest.mark.parametrize('case', SWEEP_BAD_INPUT)
def test_cluster_sweep_bad_input_is_exit_2_and_creates_nothing(emulator, kubeconfig, tracking, tmp_path, monkeypatch, capsys, case):
    from mlflow.tracking import MlflowClient
    args, message = SWEEP_BAD_INPUT[case]
    (tmp_path/'empty.yaml').write_text('grid:\n  seed: []\n'); (tmp_path/'max5.yaml').write_text('sweep:\n  maxPoints: 5\n')
    args = [a.format(empty=tmp_path/'empty.yaml', max5=tmp_path/'max5.yaml') for a in args]
    if '--kubeconfig' not in args: args += ['--kubeconfig', str(kubeconfig)]
    if '--no-tracking' in args: args.remove('--no-tracking')
    elif '--tracking-uri' not in args: args += ['--tracking-uri', tracking]
    monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False); monkeypatch.setenv('FLEXRL_HOME', str(tmp_path))
    before = [r.info.run_id for r in MlflowClient(tracking).search_runs([e.experiment_id for e in MlflowClient(tracking).search_experiments()])]
    assert main(['sweep', *args, '--submit']) == 2
    err = capsys.readouterr().err
    assert err.startswith('flexrl sweep: ') and message in err, err
    assert emulator.writes() == []
    after = [r.info.run_id for r in MlflowClient(tracking).search_runs([e.experiment_id for e in MlflowClient(tracking).search_experiments()])]
    assert after == before  # no parent run


def test_cluster_sweep_ctrl_c_detaches_and_deletes_nothing(api, kubeconfig, tracking, tmp_path):
    import signal
    p = subprocess.Popen([str(Path(sys.executable).parent/'flexrl'), 'sweep', 'train_skills', 'seed=0,1', '--submit', '--kubeconfig', str(kubeconfig),
                          '--tracking-uri', tracking, '--name', 'detach', '--experiment', 'k8s-detach', '--interval', '0.1'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, 'FLEXRL_HOME': str(tmp_path)})
    try:
        lines = []
        while not any('job detach-flexrl-sweep created' in l for l in lines):
            line = p.stdout.readline()
            assert line, (lines, p.stderr.read())
            lines.append(line)
        time.sleep(0.5)  # following
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 130 and 'detached' in err and 'flexrl sweep --attach' in err, err
    assert sorted(left(api)) == ['configmap/detach-flexrl-points', 'job/detach-flexrl-sweep']
    parent_id = re.search(r'parent run ([0-9a-f]{32})', ''.join(lines))[1]
    assert runs_of(tracking, parent_id)[0].info.status == 'RUNNING'
