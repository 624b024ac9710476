"""The package's shape: no import cycle between flexrl modules, no module importing another's private name, one
meaning per public name, and the layering the steering stack was split into (`steering` needs no language model,
`lm` needs no tuning, `serve` knows nothing of torchrun). Read from the source with `ast`: lazy imports count too."""
import ast, re
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parent.parent/'flexrl'
MODULES = sorted(p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_'))


def imports(mod: str) -> list[tuple[str, list[str]]]:
    "Every `(flexrl module, names)` that `mod` imports, at any depth of its code (lazy imports included)."
    tree, out = ast.parse((PKG/f'{mod}.py').read_text()), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = node.module or ''
            if node.level: target = 'flexrl' + ('.' + target if target else '')
            if target == 'flexrl': out += [(a.name, []) for a in node.names if a.name in MODULES]
            elif target.startswith('flexrl.'): out.append((target.split('.')[1], [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name.split('.')[1], []) for a in node.names if a.name.startswith('flexrl.')]
    return out


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in imports(m) if t != m and t in MODULES} for m in MODULES}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    "The import cycles of `g` (one path per strongly connected group of several modules, or a self-loop)."
    found, state, stack = [], {}, []
    def visit(m):
        state[m] = 'open'; stack.append(m)
        for t in sorted(g.get(m, ())):
            if state.get(t) == 'open': found.append(stack[stack.index(t):] + [t])
            elif t not in state: visit(t)
        state[m] = 'done'; stack.pop()
    for m in sorted(g):
        if m not in state: visit(m)
    return found


def test_the_walker_finds_cycles_and_private_names():
    "The checks can fail: a made-up cycle and a private import are found."
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c', 'a']]
    assert cycles({'a': {'b'}, 'b': set()}) == []
    src = 'def f():\n    from flexrl.steering import _by_score, Decision\n'
    found = [(t, n) for node in ast.walk(ast.parse(src)) if isinstance(node, ast.ImportFrom)
             for t, n in [(node.module, [a.name for a in node.names])]]
    assert found == [('flexrl.steering', ['_by_score', 'Decision'])]


def test_no_import_cycle():
    assert cycles(graph()) == [], cycles(graph())


@pytest.mark.parametrize('mod', MODULES)
def test_no_private_name_crosses_modules(mod):
    bad = [(t, n) for t, names in imports(mod) if t != mod for n in names if n.startswith('_')]
    assert not bad, f'flexrl.{mod} imports private names {bad}'


def test_layers_of_the_steering_stack():
    g = graph()
    assert not {'lm', 'tune', 'remote', 'serve', 'parallel'} & g['steering'], g['steering']
    assert 'tune' not in g['lm'] and not {'serve', 'parallel'} & g['lm'], g['lm']
    assert 'parallel' not in g['serve'], g['serve']
    assert 'torchrun' not in (PKG/'serve.py').read_text().replace('flexrl serve --tp', '')


def test_one_meaning_per_public_name():
    "No two modules export the same public function or class name (constants like `log` aside)."
    owners = {}
    for m in MODULES:
        tree = ast.parse((PKG/f'{m}.py').read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith('_'):
                if any(isinstance(d, ast.Name) and d.id == 'patch' or isinstance(d, ast.Call) and getattr(d.func, 'id', '') == 'patch'
                       for d in node.decorator_list): continue  # a method of a class, attached with fastcore's patch
                owners.setdefault(node.name, []).append(m)
    dup = {k: v for k, v in owners.items() if len(v) > 1 and k != 'main'}  # every command module has its `main`
    assert not dup, dup


def test_methods_attached_with_patch_only():
    "Methods defined outside their class are attached with fastcore's `patch`, never by assignment."
    pat = re.compile(r'^[A-Z]\w*\.\w+(\s*,\s*[A-Z]\w*\.\w+)*\s*=', re.M)
    bad = {m: pat.findall((PKG/f'{m}.py').read_text()) for m in MODULES}
    assert not any(bad.values()), {k: v for k, v in bad.items() if v}


def recipes(makefile: str) -> dict[str, tuple[list[str], list[str]]]:
    "target -> (prerequisites, recipe lines) of a Makefile's rules."
    out, cur = {}, None
    for line in makefile.splitlines():
        if line.startswith('\t') and cur: out[cur][1].append(line.strip())
        elif (m := re.match(r'^([$()A-Za-z_.-]+):(?!=)\s*([^#]*)', line)):
            cur = m[1]; out[cur] = (m[2].split(), [])
        elif line.strip() and not line.startswith('#'): cur = None
    return out


def test_every_make_target_in_help_has_a_recipe():
    mk = (PKG.parent/'Makefile').read_text()
    rules, listed = recipes(mk), re.findall(r'^([a-z-]+):.*## ', mk, re.M)
    assert {'test', 'test-fast', 'clean-nbs', 'demo'} <= set(listed)
    empty = [t for t in listed if not rules[t][1] and not any(rules.get(p, ([], []))[1] for p in rules[t][0])]
    assert not empty, f'targets in `make help` without a recipe: {empty}'
    broken = recipes('a: ## listed\nb: a ## listed too\n')
    assert [t for t in broken if not broken[t][1] and not any(broken.get(p, ([], []))[1] for p in broken[t][0])] == ['a', 'b']
