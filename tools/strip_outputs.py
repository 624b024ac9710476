"""Remove outputs and execution counts from the notebooks in nbs/ (committed notebooks carry none: the docs build
and the tests execute them). `--check` only lists the notebooks that have some and exits 1 if any do."""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def strip(path: Path, check: bool) -> bool:
    "Does `path` carry outputs? Remove them unless `check`."
    nb = json.loads(path.read_text())
    cells = [c for c in nb['cells'] if c['cell_type'] == 'code' and (c.get('outputs') or c.get('execution_count') is not None)]
    if cells and not check:
        for c in cells: c['outputs'], c['execution_count'] = [], None
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return bool(cells)


if __name__ == '__main__':
    check = '--check' in sys.argv
    dirty = [p for p in sorted((ROOT/'nbs').rglob('*.ipynb')) if '.ipynb_checkpoints' not in p.parts and strip(p, check)]
    for p in dirty: print(f'{"has outputs" if check else "stripped"}: {p.relative_to(ROOT)}', file=sys.stderr)
    sys.exit(1 if check and dirty else 0)
