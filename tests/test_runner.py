"`flexrl run/sweep/runs/ui` as a user runs them: real processes, kernels, SQLite store, mlflow server, Chromium."
import os, signal, subprocess, sys, time, urllib.request
from pathlib import Path
import nbformat
import nbformat.v4 as nbf
import pytest
from mlflow_server import mlflow_server

# A tiny experiment: logs through flexrl.tracking.start_run (the documented way), which resumes the kernel's child run.
TRACKED = ('x: int = 1  # input\nseed: int = 0\nppo: dict = dict(n_steps=8)',
           'import mlflow\nfrom flexrl.tracking import start_run, retry_locked',
           "with start_run('ignored-experiment', f'score-{x}-{seed}', params={'x': x, 'seed': seed}):\n"
           "    for step in range(3): retry_locked(mlflow.log_metric)('score', x * 10 + seed + step, step=step)")
# The same with plain mlflow (faster to import): the first log call resumes the kernel's run from MLFLOW_RUN_ID.
PLAIN = ('x: int = 1\nseed: int = 0', 'import mlflow', "mlflow.log_metric('score', x * 10 + seed)")


def notebook(folder: Path, name: str, params: str, *cells: str) -> Path:
    nb = nbf.new_notebook(metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    nb.cells = [nbf.new_code_cell(params, metadata={'tags': ['parameters']}), *map(nbf.new_code_cell, cells)]
    nbformat.write(nb, folder/f'{name}.ipynb')
    return folder/f'{name}.ipynb'


def cli(python, *args, env, **kw):
    "Start the `flexrl` console script."
    return subprocess.Popen([str(Path(python).parent/'flexrl'), *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def done(p, timeout=240):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def home_env(home: Path, uri: str | None = None) -> dict:
    env = {**os.environ, 'FLEXRL_HOME': str(home), 'FLEXRL_LOG_LEVEL': 'WARNING'}
    env.pop('MLFLOW_TRACKING_URI', None)
    if uri: env['MLFLOW_TRACKING_URI'] = uri
    return env


def client(uri):
    from mlflow.tracking import MlflowClient
    return MlflowClient(uri)


def sqlite_uri(home: Path) -> str: return f"sqlite:///{home/'runs'/'mlflow.db'}"


def check_sweep(c, experiment: str, sweep_name: str, expected: dict[str, tuple[int, int]], tracked: bool):
    "Every child of the sweep: FINISHED, params, metric, notebook artifacts; summary and plot on the parent."
    exp = c.get_experiment_by_name(experiment)
    parent = c.search_runs([exp.experiment_id], f"attributes.run_name = '{sweep_name}'")[0]
    assert parent.info.status == 'FINISHED' and parent.data.tags['flexrl.kind'] == 'sweep'
    assert {a.path for a in c.list_artifacts(parent.info.run_id)} >= {'summary.csv', 'summary.md', 'comparison.png'}
    kids = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in kids) == sorted(expected)
    stem = parent.data.tags['notebook'].rsplit('/', 1)[-1].removesuffix('.ipynb')
    for r in kids:
        x, seed = expected[r.info.run_name]
        assert r.info.status == 'FINISHED', r.info
        assert (r.data.params['x'], r.data.params['seed']) == (str(x), str(seed))
        final = x * 10 + seed + (2 if tracked else 0)
        assert r.data.metrics['score'] == final  # copied from the kernel's run
        assert {a.path for a in c.list_artifacts(r.info.run_id, 'notebook')} == {f'notebook/{stem}.ipynb', f'notebook/{stem}.html'}
        executed = nbformat.read(c.download_artifacts(r.info.run_id, f'notebook/{stem}.ipynb'), as_version=4)
        if (x, seed) != (1, 0):  # values that differ from the notebook's defaults are injected
            injected = executed.cells[1]
            assert injected.metadata['tags'] == ['injected-parameters'], injected
            assert (f'x = {x}' in injected.source) == (x != 1) and (f'seed = {seed}' in injected.source) == (seed != 0)
        kernel = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{r.info.run_id}'")
        assert len(kernel) == 1 and kernel[0].data.tags['flexrl.kind'] == 'kernel' and kernel[0].info.status == 'FINISHED'
        if tracked:  # flexrl.tracking.start_run inside the notebook resumed (named, gave params to) the kernel's run
            assert kernel[0].info.run_name == f'score-{x}-{seed}' and kernel[0].data.params['x'] == str(x)
            assert [m.value for m in c.get_metric_history(kernel[0].info.run_id, 'score')] == [final - 2, final - 1, final]
    lines = Path(c.download_artifacts(parent.info.run_id, 'summary.csv')).read_text().splitlines()
    assert lines[0].startswith('run,status,start,duration_s,') and 'score' in lines[0] and len(lines) == 1 + len(expected)


@pytest.fixture(scope='module')
def sqlite_sweep(tmp_path_factory, python):
    "A sweep of 4 runs, 2 at a time, on the embedded SQLite store (shared with the UI test)."
    home = tmp_path_factory.mktemp('home')
    nb = notebook(home, 'tracked', *TRACKED)
    t0 = time.time()
    r = done(cli(python, 'sweep', nb, 'x=1,2', 'seed=0,1', '-j', '2', '--name', 'grid', '--no-progress', env=home_env(home)))
    return home, r, time.time() - t0


def test_sweep_on_sqlite(sqlite_sweep, python):
    home, (rc, out, err), took = sqlite_sweep
    assert rc == 0, err[-3000:]
    expected = {'grid-00': (1, 0), 'grid-01': (1, 1), 'grid-02': (2, 0), 'grid-03': (2, 1)}
    check_sweep(client(sqlite_uri(home)), 'tracked', 'grid', expected, tracked=True)
    assert 'locked' not in err.lower()
    folder = home/'runs'/'sweeps'/'tracked'/'grid'
    assert sorted(p.name for p in folder.glob('*.log')) == [f'{k}.log' for k in expected]
    assert len(list((home/'runs'/'notebooks'/'tracked').glob('*.ipynb'))) == 4
    assert len(list((home/'runs'/'notebooks'/'tracked').glob('*.html'))) == 4
    # `flexrl runs` reads them back without the UI
    rc, out, err = done(cli(python, 'runs', 'tracked', '--csv', env=home_env(home)))
    assert rc == 0, err
    rows = out.splitlines()
    assert rows[0].split(',')[:4] == ['run', 'status', 'start', 'duration_s'] and 'score' in rows[0]
    assert sorted(r.split(',')[0] for r in rows[1:]) == ['grid', *expected]


def test_sweep_on_mlflow_server(tmp_path, port, python):
    "The same against a real `mlflow server`: runs from a sweep file's `runs:` list, 2 at a time."
    nb = notebook(tmp_path, 'plain', *PLAIN)
    (tmp_path/'four.yaml').write_text('fixed: {x: 3}\nruns:\n  - {seed: 0}\n  - {seed: 1}\n  - {seed: 2}\n  - {seed: 3, x: 4}\n')
    with mlflow_server(tmp_path, port) as uri:
        env = home_env(tmp_path/'home', uri)
        rc, out, err = done(cli(python, 'sweep', nb, '-f', tmp_path/'four.yaml', '-j', '2', '--name', 'listed',
                                '--experiment', 'server-sweep', '--no-progress', env=env))
        assert rc == 0, err[-3000:]
        expected = {'listed-00': (3, 0), 'listed-01': (3, 1), 'listed-02': (3, 2), 'listed-03': (4, 3)}
        check_sweep(client(uri), 'server-sweep', 'listed', expected, tracked=False)
        assert 'listed-03' in out  # the summary table is printed
    assert not (tmp_path/'home'/'runs'/'mlflow.db').exists()  # nothing went to the embedded store
    assert len(list((tmp_path/'artifacts').rglob('plain.ipynb'))) == 4  # artifacts were served by the server


def test_failures_are_recorded_and_a_kill_loses_nothing(tmp_path, python):
    home = tmp_path/'home'
    env = home_env(home)
    ok = notebook(tmp_path, 'fine', *PLAIN)
    raises = notebook(tmp_path, 'raises', 'seed = 0', 'y = seed + 1', "raise ValueError(f'diverged at seed {seed}')")
    dies = notebook(tmp_path, 'dies', 'x = 1', 'import os\nos.kill(os.getpid(), 9)  # like the OOM killer', 'never = 1')
    hangs = notebook(tmp_path, 'hangs', 'x = 1', 'import time\ntime.sleep(60)')
    procs = {name: cli(python, 'run', nb, '--no-progress', *extra, env=env) for name, nb, extra in
             [('fine', ok, ['x=2']), ('raises', raises, ['seed=7']), ('dies', dies, []), ('hangs', hangs, ['--timeout', '3'])]}
    res = {k: done(p, 180) for k, p in procs.items()}
    assert res['fine'][0] == 0, res['fine'][2][-2000:]
    assert res['raises'][0] == 1 and "raises.ipynb failed in cell 2 `raise ValueError(f'diverged at seed {seed}')`: ValueError: diverged at seed 7" in res['raises'][2]
    assert res['dies'][0] == 1 and 'dies.ipynb failed in cell 1 `import os`: the kernel died' in res['dies'][2]
    assert res['hangs'][0] == 1 and 'hangs.ipynb failed in cell 1 `import time`: timed out' in res['hangs'][2]
    c = client(sqlite_uri(home))

    def run_of(experiment):
        runs = c.search_runs([c.get_experiment_by_name(experiment).experiment_id], "tags.`flexrl.kind` = 'notebook'")
        assert len(runs) == 1
        return runs[0]

    def artifacts(r): return {a.path for a in c.list_artifacts(r.info.run_id, 'notebook')}
    for name, status in [('fine', 'FINISHED'), ('raises', 'FAILED'), ('dies', 'FAILED'), ('hangs', 'FAILED')]:
        r = run_of(name)
        assert r.info.status == status, (name, r.info.status)
        assert artifacts(r) == {f'notebook/{name}.ipynb', f'notebook/{name}.html'}, name
    failed_nb = nbformat.read(c.download_artifacts(run_of('raises').info.run_id, 'notebook/raises.ipynb'), as_version=4)
    assert 'diverged at seed 7' in str(failed_nb.cells[-1].outputs)

    # SIGKILL the whole `flexrl run` process group while a cell sleeps
    marker = tmp_path/'kernel.pid'
    sleeps = notebook(tmp_path, 'sleeps', f'marker = {str(marker)!r}',
                      'import os, time, pathlib\npathlib.Path(marker).write_text(str(os.getpid()))\ntime.sleep(120)')
    p = cli(python, 'run', sleeps, '--name', 'killed', env=env, start_new_session=True)
    t0 = time.time()
    while not marker.exists():
        assert p.poll() is None and time.time() - t0 < 120, p.communicate()
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(10)
    try: os.kill(int(marker.read_text()), signal.SIGKILL)  # the kernel runs in a session of its own
    except ProcessLookupError: pass
    killed = run_of('sleeps')
    assert killed.info.run_name == 'killed' and killed.info.status != 'FINISHED'
    for name, status in [('fine', 'FINISHED'), ('raises', 'FAILED')]:  # earlier runs are all there
        r = run_of(name)
        assert r.info.status == status and artifacts(r) == {f'notebook/{name}.ipynb', f'notebook/{name}.html'}
    assert run_of('fine').data.metrics['score'] == 20


def test_bad_params_name_the_key_and_start_nothing(tmp_path, python):
    home = tmp_path/'home'
    env = home_env(home)
    nb = notebook(tmp_path, 'typed', 'lr: float = 0.1\nppo: dict = dict(n_steps=64)', 'import mlflow')
    (tmp_path/'bad.yaml').write_text('lr: 0.2\nlearning_rate: 0.3\n')
    (tmp_path/'sweep.yaml').write_text('grid:\n  lr: [0.1, 0.2]\n  ppo.n_steps: [32, many]\n')
    cases = [(['run', nb, '-f', tmp_path/'bad.yaml', 'lr=0.5'], "unknown key 'learning_rate'"),
             (['sweep', nb, '-f', tmp_path/'sweep.yaml'], "key 'ppo.n_steps'"),
             (['run', 'train_skills', 'total_timestep=10'], "did you mean 'total_timesteps'"),
             (['run', 'train_skills', '-f', 'params/train_skills.yaml', 'body=antt'],
              "unknown option 'antt' for config group 'body' in override 'body=antt' (did you mean 'ant'?); valid options: ant, pointmass"),
             (['sweep', 'train_skills', '-p', 'params/train_skills.yaml', 'body=ant,legs'], "unknown option 'legs' for config group 'body'")]
    procs = [(cli(python, *args, env=env), msg) for args, msg in cases]
    for p, msg in procs:
        rc, out, err = done(p, 120)
        assert rc == 2 and msg in err, (rc, err[-2000:])
        assert 'Executing' not in err and 'IPKernelApp' not in err  # no kernel started
    assert not (home/'runs'/'notebooks').exists() and not (home/'runs'/'sweeps').exists()


def wait_http(url, proc, timeout=90):
    t0 = time.time()
    while True:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200: return
        except OSError: pass
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, f'{url} did not come up'
        time.sleep(0.5)


def test_ui_lists_the_runs(sqlite_sweep, python, port, artifacts):
    "`flexrl ui` serves the embedded store: headless Chromium finds the sweep's runs on the experiment page."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from browser import chromium
    home = sqlite_sweep[0]
    exp_id = client(sqlite_uri(home)).get_experiment_by_name('tracked').experiment_id
    p = subprocess.Popen([str(Path(python).parent/'flexrl'), 'ui', '--port', str(port)], env=home_env(home),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        base = f'http://127.0.0.1:{port}'
        wait_http(base + '/health', p)
        with chromium() as d:
            d.get(f'{base}/#/experiments/{exp_id}/runs')
            # the SPA renders the runs table after its API calls: wait for the sweep's run (children fold under it)
            WebDriverWait(d, 60).until(lambda d: 'grid' in d.find_element(By.TAG_NAME, 'body').text.split())
            d.save_screenshot(str(artifacts/'mlflow-ui-runs.png'))
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(15)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL)
    assert (artifacts/'mlflow-ui-runs.png').stat().st_size > 10_000


@pytest.mark.slow
def test_train_skills_sweep_file_at_tiny_size(tmp_path, python, root):
    "The shipped sweep file on the real experiment notebook, cut down further by overrides (`make test-slow`)."
    env = home_env(tmp_path)
    tiny = ['total_timesteps=256', 'eval_freq=256', 'checkpoint_freq=256', 'eval_episodes=1', 'final_eval_episodes=1']
    rc, out, err = done(cli(python, 'sweep', 'train_skills', '-f', root/'params'/'sweeps'/'train_skills_seeds.yaml', *tiny,
                            '-j', '2', '--name', 'seeds', '--no-progress', env=env, cwd=root), 600)
    assert rc == 0, err[-3000:]
    c = client(sqlite_uri(tmp_path))
    exp = c.get_experiment_by_name('train_skills')
    parent = c.search_runs([exp.experiment_id], "attributes.run_name = 'seeds'")[0]
    kids = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((r.data.params['seed'], r.data.params['ppo.n_steps'], r.data.params['library']) for r in kids) == \
        [('0', '32', 'sweep-s0-n32'), ('0', '64', 'sweep-s0-n64'), ('1', '32', 'sweep-s1-n32'), ('1', '64', 'sweep-s1-n64')]
    for r in kids:
        assert r.info.status == 'FINISHED' and 'eval/success_stay' in r.data.metrics
        assert {a.path for a in c.list_artifacts(r.info.run_id, 'notebook')} == {'notebook/train_skills.ipynb', 'notebook/train_skills.html'}
        skills = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{r.info.run_id}'")  # train_skills' own run
        assert [s.info.run_name for s in skills] == [f"skills-{r.data.params['library']}"]
    assert sorted(p.name for p in (tmp_path/'runs'/'skills').iterdir()) == ['sweep-s0-n32', 'sweep-s0-n64', 'sweep-s1-n32', 'sweep-s1-n64']


def test_cluster_pods_make_the_child_runs_a_local_sweep_makes(tmp_path, port, python, monkeypatch):
    """The sweep Job's container as the chart renders it, run here once per JOB_COMPLETION_INDEX against a real
    `mlflow server`, makes exactly the child runs `flexrl sweep` (local) makes for the same grid."""
    import json
    from flexrl import jobs, runner
    nb = notebook(tmp_path, 'plain', *PLAIN)
    grid = ['x=1,2', 'seed=0,3']
    with mlflow_server(tmp_path, port) as uri:
        env = home_env(tmp_path/'home', uri)
        rc, out, err = done(cli(python, 'sweep', nb, *grid, '-j', '2', '--name', 'grid', '--experiment', 'local', '--no-progress', env=env))
        assert rc == 0, err[-3000:]
        monkeypatch.setenv('MLFLOW_TRACKING_URI', uri); monkeypatch.setenv('FLEXRL_HOME', str(tmp_path/'home'))
        path, params, entries = runner.sweep_plan(nb, None, grid)
        parent = runner.open_sweep(path, entries, 'pods', 'grid', params, 2)
        cm, job = jobs.job_objects(jobs.helm_template('grid', jobs.sweep_values(str(nb), json.dumps(entries), parent, 'grid', 2,
                                                                            tracking_uri=uri, experiment='pods')))
        mount = tmp_path/'etc-flexrl'; mount.mkdir()
        for k, v in cm['data'].items(): (mount/k).write_text(v)
        c, = job['spec']['template']['spec']['containers']
        cmd = [str(Path(python).parent/c['command'][0]), *[a.replace('/etc/flexrl', str(mount)) for a in c['args']], '--no-progress']
        pod_env = {**env, **{e['name']: e['value'] for e in c['env']}, 'HOME': str(tmp_path/'pod'), 'FLEXRL_HOME': str(tmp_path/'pod')}
        assert pod_env['MLFLOW_TRACKING_URI'] == uri and job['spec']['completions'] == len(entries) == 4
        for ks in ((0, 1), (2, 3)):  # two pods at a time, as parallelism 2
            ps = [cli(python, *cmd[1:], env={**pod_env, 'JOB_COMPLETION_INDEX': str(k)}) for k in ks]
            for p in ps: assert done(p)[0] == 0
        status, bad, table = runner.close_sweep(parent)
        assert (status, bad, len(table)) == ('FINISHED', [], 4)
        c = client(uri)
        def children(experiment):
            exp = c.get_experiment_by_name(experiment)
            top = c.search_runs([exp.experiment_id], "attributes.run_name = 'grid'")[0]
            kids = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{top.info.run_id}'")
            keep = lambda tags: {k: v for k, v in tags.items() if k.startswith('flexrl.') or k in ('notebook', 'params_hash', 'mlflow.source.name')}
            return top, sorted((r.info.run_name, r.info.status, r.data.params, r.data.metrics, keep(r.data.tags)) for r in kids)
        local_top, local = children('local')
        pod_top, pods = children('pods')
        assert len(local) == 4 and pods == local
        assert {r[0] for r in local} == {'grid-00', 'grid-01', 'grid-02', 'grid-03'}
        assert [r[4]['flexrl.sweep.point'] for r in local] == [json.dumps(e['point'], sort_keys=True) for e in entries]
        assert pod_top.data.params == local_top.data.params | {'jobs': '2'} and pod_top.info.status == local_top.info.status == 'FINISHED'
