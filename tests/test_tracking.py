"flexrl.tracking against real stores: the embedded SQLite default under concurrent writers, and a real server."
import os, subprocess, sys, textwrap
import pytest
from mlflow_server import mlflow_server

WRITER = textwrap.dedent('''
    import sys, mlflow
    from flexrl.tracking import start_run
    i = int(sys.argv[1])
    with start_run('concurrent', f'writer-{i}', params={'writer': i, 'nested': {'lr': 0.1 * i}}):
        for step in range(40): mlflow.log_metric('loss', 1.0 / (step + 1), step=step)
        mlflow.log_text(f'writer {i}', 'note.txt')
''')


def run_writers(n, env):
    procs = [subprocess.Popen([sys.executable, '-c', WRITER, str(i)], env=env, stderr=subprocess.PIPE, text=True) for i in range(n)]
    errs = [(p.wait(180), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in errs), [e for rc, e in errs if rc]


def check_runs(uri, n):
    from mlflow.tracking import MlflowClient
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name('concurrent')
    runs = c.search_runs([exp.experiment_id], max_results=100)
    assert sorted(r.data.params['writer'] for r in runs) == sorted(str(i) for i in range(n))
    for r in runs:
        assert r.info.status == 'FINISHED'
        assert len(c.get_metric_history(r.info.run_id, 'loss')) == 40
        assert r.data.params['nested.lr'] == str(0.1 * int(r.data.params['writer']))
        assert {a.path for a in c.list_artifacts(r.info.run_id)} == {'config.yaml', 'note.txt'}
        assert len(r.data.tags['git_sha'].split('-')[0]) in (40, 7) and r.data.tags['params_hash']


def test_concurrent_writers_on_fresh_sqlite_store(tmp_path):
    "Six processes create the store and log at once: no 'database is locked' loss."
    env = {**os.environ, 'FLEXRL_HOME': str(tmp_path)}
    env.pop('MLFLOW_TRACKING_URI', None)
    run_writers(6, env)
    check_runs(f"sqlite:///{tmp_path/'runs'/'mlflow.db'}", 6)


def test_real_mlflow_server_over_http(tmp_path, port):
    with mlflow_server(tmp_path, port) as uri:
        env = {**os.environ, 'FLEXRL_HOME': str(tmp_path/'home'), 'MLFLOW_TRACKING_URI': uri}
        run_writers(3, env)
        check_runs(uri, 3)
        assert not (tmp_path/'home'/'runs'/'mlflow.db').exists()  # nothing went to the embedded store
        assert any((tmp_path/'artifacts').rglob('note.txt'))       # artifacts were served by the server
