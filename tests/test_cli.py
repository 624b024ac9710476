"The `flexrl` console script, as a user runs it."
import os, subprocess
from pathlib import Path


def flexrl(python, *args, env=None):
    exe = Path(python).parent/'flexrl'
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_paths_follow_env(python, tmp_path):
    r = flexrl(python, 'paths', env={'FLEXRL_HOME': str(tmp_path), 'FLEXRL_SKILLS': str(tmp_path/'lib')})
    assert r.returncode == 0, r.stderr
    got = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert got['runs'] == str(tmp_path/'runs') and got['skills'] == str(tmp_path/'lib')


def test_unknown_command_is_a_usage_error(python):
    r = flexrl(python, 'fly')
    assert r.returncode == 2 and "invalid choice: 'fly'" in r.stderr


def test_bad_evaluate_params_name_the_key(python, tmp_path):
    r = flexrl(python, 'evaluate', 'episode=3', env={'FLEXRL_HOME': str(tmp_path)})
    assert r.returncode == 2 and "unknown key 'episode'" in r.stderr and "did you mean 'episodes'" in r.stderr, r.stderr
    assert not (tmp_path/'runs'/'skills').exists()  # stopped before training or evaluating anything
