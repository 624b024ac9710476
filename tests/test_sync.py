"CI's sync check fails when a notebook is edited without re-export or flexrl/*.py is edited by hand."
import shutil, subprocess
import pytest

COPY = ['nbs', 'flexrl', 'tools', 'settings.ini', 'README.md', 'setup.py']


@pytest.fixture
def repo(root, tmp_path):
    "A copy of the parts of the checkout the sync check reads."
    for p in COPY:
        (shutil.copytree if (root/p).is_dir() else shutil.copy)(root/p, tmp_path/p)
    return tmp_path


def check(repo, python):
    from pathlib import Path
    env = {'BIN': str(Path(python).parent), 'PATH': '/usr/bin:/bin'}
    return subprocess.run(['bash', 'tools/check_sync.sh', str(repo)], cwd=repo, env=env, capture_output=True, text=True)


def test_clean_checkout_passes(repo, python):
    r = check(repo, python)
    assert r.returncode == 0, r.stderr
    assert 'ok: nbdev_export (library in sync) made no change' in r.stdout


def test_hand_edited_library_fails(repo, python):
    core = repo/'flexrl'/'core.py'
    core.write_text(core.read_text().replace('def seed_everything', 'def seed_everything_edited'))
    r = check(repo, python)
    assert r.returncode == 1 and 'flexrl/core.py' in r.stderr and 'edit the notebook' in r.stderr, r.stderr


def test_hand_written_module_fails(repo, python):
    (repo/'flexrl'/'extra.py').write_text('x = 1\n')
    r = check(repo, python)
    assert r.returncode == 1 and 'not exported from a notebook: flexrl/extra.py' in r.stderr, r.stderr


def test_notebook_edited_without_export_fails(repo, python):
    nb = repo/'nbs'/'00_core.ipynb'
    nb.write_text(nb.read_text().replace('def seed_everything', 'def seed_all'))
    r = check(repo, python)
    assert r.returncode == 1 and 'flexrl/core.py' in r.stderr, r.stderr


def test_notebook_with_outputs_fails(repo, python):
    import json
    nb = repo/'nbs'/'90_cli.ipynb'
    d = json.loads(nb.read_text())
    cell = next(c for c in d['cells'] if c['cell_type'] == 'code')
    cell['execution_count'] = 3
    cell['outputs'] = [{'output_type': 'stream', 'name': 'stdout', 'text': ['hi\n']}]
    nb.write_text(json.dumps(d, indent=1))
    r = check(repo, python)
    assert r.returncode == 1 and 'nbdev_clean' in r.stderr and '90_cli.ipynb' in r.stderr, r.stderr


def test_papermill_parameters_tag_survives_the_clean(repo, python):
    import json
    r = check(repo, python)
    assert r.returncode == 0, r.stderr
    for nb in (repo/'nbs'/'experiments').glob('*.ipynb'):
        tags = [c['metadata'].get('tags', []) for c in json.loads(nb.read_text())['cells']]
        assert ['parameters'] in tags, f'{nb.name} lost its parameters tag'


def test_cleaned_outputs_still_fail(repo, python):
    import json
    nb = repo/'nbs'/'00_core.ipynb'
    d = json.loads(nb.read_text())
    next(c for c in d['cells'] if c['cell_type'] == 'code')['outputs'] = [{'output_type': 'stream', 'name': 'stdout', 'text': ['hi\n']}]
    nb.write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n')
    r = check(repo, python)
    assert r.returncode == 1 and '00_core.ipynb' in r.stderr, r.stderr
