"Skill training as a user runs it: `flexrl train-skills`, killed and resumed; logging to a real MLflow server."
import json, os, signal, subprocess, time
from pathlib import Path
from mlflow_server import mlflow_server

TINY = ['total_timesteps=6144', 'n_envs=2', 'checkpoint_freq=1024', 'eval_freq=2048', 'eval_episodes=2',
        'final_eval_episodes=3', 'video_steps=0', 'progress=false', 'ppo.n_steps=64', 'ppo.batch_size=64', 'ppo.n_epochs=1']


def cmd(python, *args): return [str(Path(python).parent/'flexrl'), 'train-skills', *args]


def home_env(tmp, **extra):
    env = {**os.environ, 'FLEXRL_HOME': str(tmp), **extra}
    if 'MLFLOW_TRACKING_URI' not in extra: env.pop('MLFLOW_TRACKING_URI', None)
    return env


def runs(uri):
    from mlflow.tracking import MlflowClient
    c = MlflowClient(uri)
    return c, c.search_runs([c.get_experiment_by_name('train_skills').experiment_id])


def test_killed_training_resumes_from_its_last_checkpoint(python, tmp_path):
    from flexrl.skills import latest_checkpoint
    lib = tmp_path/'runs'/'skills'/'k'
    args, env = cmd(python, 'library=k', *TINY), home_env(tmp_path)
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not ((ck := latest_checkpoint(lib/'policies'/'all'/'checkpoints')) and ck[0] >= 2048):
        assert p.poll() is None and time.time() - t0 < 180, 'training ended or stalled before its second checkpoint'
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert not (lib/'manifest.json').exists()  # it really was cut short
    done = latest_checkpoint(lib/'policies'/'all'/'checkpoints')[0]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f'resuming from checkpoint at {done} steps' in r.stderr
    m = json.loads((lib/'manifest.json').read_text())
    pol = m['policies']['all']
    assert (pol['timesteps'], pol['resumed_from']) == (6144, done) and 2048 <= done < 6144
    assert set(m['skills']) == {'move_up', 'move_down', 'move_left', 'move_right', 'stay'}
    assert all(0 <= s['success_rate'] <= 1 and s['eval_episodes'] == 3 for s in m['skills'].values())
    _, rs = runs(f"sqlite:///{tmp_path/'runs'/'mlflow.db'}")
    by_status = sorted((r.info.status, r.data.tags.get('resumed')) for r in rs)
    assert by_status == [('FINISHED', 'true'), ('RUNNING', None)], by_status  # the killed run is not FINISHED


def test_training_logs_to_a_real_mlflow_server(python, tmp_path, port):
    with mlflow_server(tmp_path, port) as uri:
        env = home_env(tmp_path/'home', MLFLOW_TRACKING_URI=uri)
        r = subprocess.run(cmd(python, 'library=s', *TINY, 'total_timesteps=2048', 'video_steps=4'), env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        c, rs = runs(uri)
        assert len(rs) == 1 and rs[0].info.status == 'FINISHED'
        run = rs[0]
        assert {'success/min', 'eval/success_stay', 'train/loss'} <= set(run.data.metrics)
        assert run.data.params['ppo.n_steps'] == '64' and run.data.tags['params_hash']
        assert {'manifest.json', 'success_curves.png', 'videos', 'config.yaml'} <= {a.path for a in c.list_artifacts(run.info.run_id)}
        assert {a.path for a in c.list_artifacts(run.info.run_id, 'videos')} >= {'videos/stay.mp4', 'videos/stay.gif'}
        assert not (tmp_path/'home'/'runs'/'mlflow.db').exists()
