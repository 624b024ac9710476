"""The inference server as a real uvicorn process on 127.0.0.1: RemoteSelector against it, the token on every route,
bad input, a bounded load, a graceful shutdown; and schemathesis against its own OpenAPI schema (in-process)."""
import asyncio, json, os, signal, socket, subprocess, sys, textwrap, time
import httpx, pytest
from conftest import free_port, wait_ready

TOKEN = 'serve-test-token'
AUTH = {'Authorization': f'Bearer {TOKEN}'}
ENV = {**os.environ, 'FLEXRL_API_TOKEN': TOKEN, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}


def start_server(python, port, *args, script=None):
    "A server subprocess: `flexrl.serve.main(args)` (or `script`), its output in a pipe."
    code = script or f'from flexrl.serve import main; main({["--port", str(port), "--log-level", "warning", *args]!r})'
    return subprocess.Popen([python, '-c', code], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc, timeout=30):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try: proc.wait(timeout)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
    return proc.returncode


@pytest.fixture(scope='module')
def server(python):
    "The tiny model (seed 0) served by a uvicorn process on a free loopback port."
    port = free_port()
    proc = start_server(python, port, '--tiny', '--seed', '0', '--max-batch', '32', '--threads', '1')
    url = f'http://127.0.0.1:{port}'
    try:
        wait_ready(proc, url)
        yield url
    finally:
        assert stop(proc) in (0, -signal.SIGTERM), proc.stdout.read()   # uvicorn re-raises SIGTERM once drained


def decisions(n=24, seed=7):
    from flexrl.tune import make_examples
    return [d for d, _ in make_examples(n, seed)]


def test_remote_selector_matches_local(server):
    "RemoteSelector against the server chooses what the local HFSelector chooses, with the same likelihoods."
    import torch
    from flexrl.steering import SKILLS
    from flexrl.lm import HFSelector, SkillTrie, tiny_lm, prefix_kv, trie_logprobs
    from flexrl.remote import RemoteSelector
    model, tok = tiny_lm(seed=0)
    local, ds = HFSelector(model, tok), decisions()
    want = local.select(ds)
    got = RemoteSelector(server, tokenizer=tok, api_key=TOKEN, timeout=180).select(ds)
    assert [c.skill for c in got] == [c.skill for c in want] and all(c.valid for c in got)
    # score mode: the echoed log-likelihood of each skill's text (the local likelihoods without the end token)
    scored = RemoteSelector(server, tokenizer=tok, api_key=TOKEN, mode='score', timeout=180).select(ds)
    no_end = SkillTrie([s[:-1] for s in SkillTrie.from_skills(tok, SKILLS).seqs])
    with torch.no_grad():
        ref = trie_logprobs(model, prefix_kv(model, local.prefix_ids(SKILLS)), [local.suffix_ids(d, SKILLS) for d in ds], no_end)
    assert torch.allclose(torch.tensor([list(c.scores.values()) for c in scored]), ref, atol=1e-3)
    # /v1/select: the local choices and scores
    body = {'decisions': [{'obs': d.obs, 'instruction': d.instruction, 'feedback': d.feedback, 'history': d.history, 'progress': list(d.progress)} for d in ds]}
    r = httpx.post(f'{server}/v1/select', json=body, headers=AUTH, timeout=60).json()
    assert [c['skill'] for c in r['choices']] == [c.skill for c in want]
    assert torch.allclose(torch.tensor([list(c['scores'].values()) for c in r['choices']]),
                          torch.tensor([list(c.scores.values()) for c in want]), atol=1e-3)


def test_every_route_needs_the_token(server):
    "Every route of the OpenAPI schema (and the docs, and unknown paths) answers 401 without the right token, but the probes."
    paths = httpx.get(f'{server}/openapi.json', headers=AUTH).json()['paths']
    routes = [(m.upper(), p) for p, ops in paths.items() for m in ops] + [('GET', '/openapi.json'), ('GET', '/docs'), ('POST', '/nope')]
    assert {p for _, p in routes} >= {'/v1/select', '/v1/completions', '/v1/chat/completions', '/v1/models', '/metrics', '/health', '/ready'}
    for method, path in routes:
        for headers in ({}, {'Authorization': 'Bearer nope'}, {'Authorization': f'Bearer {TOKEN}x'}, {'Authorization': TOKEN}):
            r = httpx.request(method, server + path, headers=headers, json={})
            assert r.status_code == (200 if path in ('/health', '/ready') else 401), (method, path, headers, r.text)
    assert httpx.get(f'{server}/metrics', headers=AUTH).status_code == 200


def test_bad_input_is_a_4xx(server):
    "Malformed, oversized and hostile requests get a 4xx with a message; the server stays up."
    post = lambda path='/v1/select', **kw: httpx.post(server + path, headers={**AUTH, **kw.pop('headers', {})}, timeout=30, **kw)
    cases = [
        (post(content=b'{"decisions": ['), 422),
        (post(content=b'[' * 50_000 + b']' * 50_000, headers={'Content-Type': 'application/json'}), 400),   # deep nesting
        (post(json={'decisions': [{'obs': 1, 'instruction': None}]}), 422),
        (post(json={'decisions': [{'obs': 'x', 'instruction': 'y'}] * 300}), 413),
        (post(content=b'x' * 2_000_000), 413),
        (post(content=(b'x' * 65536 for _ in range(40))), 413),                                             # chunked, no length
        (post(json={'decisions': [{'obs': 'Agent: (1, 2) ' * 580, 'instruction': 'go'}]}), 400),
        (post(json={'decisions': [{'obs': 'x', 'instruction': 'y'}], 'skills': ['a\nb']}), 400),
        (post('/v1/completions', json={'prompt': 'x', 'max_tokens': 10_000}), 422),
        (post('/v1/completions', json={'prompt': 'x', 'guided_choice': []}), 400),
        (post('/v1/chat/completions', json={'messages': []}), 422),
        (post('/v1/chat/completions', json={'messages': [{'role': 'assistant', 'content': 'x'}], 'tools': [{'type': 'function'}]}), 400),
        (post('/v1/completions', json={'prompt': 'x', 'guided_json': {}, 'best_of': 2}), 400),
    ]
    for i, (r, status) in enumerate(cases):
        assert r.status_code == status, (i, r.status_code, r.text[:300])
        assert r.json()['error']['message'], (i, r.text)
    assert httpx.get(f'{server}/ready').status_code == 200


def test_bounded_load(server):
    "32 concurrent clients for 3 s: no errors, and rounds hold several requests."
    async def client(c, ds, end, lat):
        i = 0
        while time.monotonic() < end:
            d = ds[i % len(ds)]; i += 1; t0 = time.perf_counter()
            r = await c.post('/v1/select', json={'decisions': [{'obs': d.obs, 'instruction': d.instruction, 'feedback': d.feedback}]})
            lat.append((r.status_code, time.perf_counter() - t0))

    async def run():
        ds, lat = decisions(64, 3), []
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=server, headers=AUTH, limits=limits, timeout=30) as c:
            end = time.monotonic() + 3
            await asyncio.gather(*[client(c, ds, end, lat) for _ in range(32)])
        return lat

    lat = asyncio.run(run())
    assert len(lat) > 32 and all(s == 200 for s, _ in lat), {s for s, _ in lat}
    m = dict(l.rsplit(' ', 1) for l in httpx.get(f'{server}/metrics', headers=AUTH).text.splitlines() if l.startswith('flexrl_batch_rows_'))
    rows, rounds = float(m['flexrl_batch_rows_sum{op="select"}']), float(m['flexrl_batch_rows_count{op="select"}'])
    assert rows / rounds > 2, (rows, rounds)


SLOW_MODULE = textwrap.dedent('''
    import time
    from flexrl.steering import ScriptedSelector
    class Slow(ScriptedSelector):
        def _select(self, ds, skills):
            time.sleep(1.5); return super()._select(ds, skills)
''')
SLOW = textwrap.dedent('''
    import sys; sys.path.insert(0, {path!r})
    from slowsel import Slow          # a module, so that an engine process can unpickle it
    from flexrl.serve import serve, ServeSettings
    serve(port={port}, selector=Slow(), settings=ServeSettings(max_batch=64, max_wait_ms=50, engine={engine!r}),
          log_level='warning')
''')


@pytest.mark.parametrize('engine', ['thread', 'process'])
def test_graceful_shutdown(python, tmp_path, engine):
    "SIGTERM while requests are in flight: they all get their answer, then the process ends (by SIGTERM, as uvicorn re-raises it)."
    (tmp_path/'slowsel.py').write_text(SLOW_MODULE)
    port = free_port()
    proc = start_server(python, port, script=SLOW.format(port=port, path=str(tmp_path), engine=engine))
    url = f'http://127.0.0.1:{port}'
    try:
        wait_ready(proc, url)
        async def run():
            async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as c:
                body = {'decisions': [{'obs': 'Agent: (15, 30), Ball: (20, 25), Goal: (5, 5)', 'instruction': 'Go to the goal'}]}
                reqs = [asyncio.create_task(c.post('/v1/select', json=body)) for _ in range(8)]
                await asyncio.sleep(0.5)              # all sent, the model busy with them
                proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*reqs)
        t0 = time.time()
        rs = asyncio.run(run())
        assert [r.status_code for r in rs] == [200] * 8, [r.text for r in rs]
        assert {r.json()['choices'][0]['skill'] for r in rs} == {'move_down'}
        assert proc.wait(30) in (0, -signal.SIGTERM) and time.time() - t0 < 20, proc.stdout.read()
        with pytest.raises(httpx.ConnectError): httpx.get(f'{url}/health')
    finally: stop(proc)


# schemathesis against the app's own OpenAPI schema, in-process (the tiny model, a bounded number of examples)
import schemathesis
from hypothesis import settings, HealthCheck
from schemathesis.checks import not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, \
    response_headers_conformance, negative_data_rejection

def _app():
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from flexrl.serve import create_app, ServeSettings, tiny_selector
    # one selector for all: schemathesis ends the app's lifespan after each test, and the next one starts it again
    return create_app(tiny_selector(seed=0), ServeSettings(token=TOKEN, max_tokens=32, max_rows=8, max_batch=8, timeout_s=20))

APP = _app()
# a request the schema forbids must be refused: 400, 401 (token), 404 (model), 413 (too large) or 422
CONFIG = schemathesis.Config.from_dict({'checks': {'negative_data_rejection': {'expected-statuses': ['400', '401', '404', '413', '422']}}})
schema = schemathesis.openapi.from_asgi('/openapi.json', APP, config=CONFIG, headers=AUTH)


@pytest.fixture
def loaded():
    "The app's lifespan started and its model thread ready."
    from schemathesis.python import asgi
    with asgi.get_client(APP) as c: c.get('/health')
    b = APP.state.serve.batcher
    assert b.loaded.wait(60) and b.ready, b.error


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_openapi_schema(case, loaded):
    "No 5xx, no answer outside the schema, bad data refused, on every operation."
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                                 response_schema_conformance, response_headers_conformance, negative_data_rejection])


def test_agent_loop_through_remote_selector(server, tmp_path, monkeypatch):
    "The closed loop driven by RemoteSelector against the live server makes exactly the local selector's decisions."
    from flexrl.agent import run_episodes, default_tasks
    from flexrl.skills import default_library
    from flexrl.lm import HFSelector, tiny_lm
    from flexrl.remote import RemoteSelector
    monkeypatch.setenv('FLEXRL_HOME', str(tmp_path)); monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)
    lib = default_library(overrides=['library=t', 'total_timesteps=1024', 'n_envs=2', 'eval_freq=100000', 'final_eval_episodes=1',
                                     'video_steps=0', 'progress=false', 'ppo.n_steps=64', 'ppo.batch_size=64', 'ppo.n_epochs=1'])
    model, tok = tiny_lm(0)
    tasks = [default_tasks(60)[t] for t in ('goal_then_avoid', 'touch_then_stay')]
    remote = run_episodes(lib, RemoteSelector(server, tokenizer=tok, api_key=TOKEN), tasks, [1, 2])
    local = run_episodes(lib, HFSelector(model, tok), tasks, [1, 2])
    for r, l in zip(remote.episodes, local.episodes):
        assert len(r.decisions) >= 6 and r.decisions.valid.all()
        assert list(r.decisions.skill) == list(l.decisions.skill)
        assert list(r.decisions.instruction) == list(l.decisions.instruction)
        assert (r.trace[['agent_x', 'agent_y']].to_numpy() == l.trace[['agent_x', 'agent_y']].to_numpy()).all()
