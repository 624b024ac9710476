"""OpenAI's own Python client (the `openai` package, no mocks) against the server: uvicorn on a loopback port, the
tiny model (seed 0) in-process, so answers can be checked against the same model run locally."""
import functools, json, threading, time
import httpx, openai, pytest, torch, uvicorn

TOKEN = 'openai-client-test-token'
AUTH = {'Authorization': f'Bearer {TOKEN}'}
CHOICES = ['move_up', 'stay', 'move_left']


def run_uvicorn(app):
    "Serve `app` with uvicorn in a thread on a free loopback port, once the model is ready: (server, thread, url)."
    uv = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=0, log_level='warning'))
    t = threading.Thread(target=uv.run, daemon=True); t.start()
    for _ in range(3000):
        if uv.started: break
        time.sleep(0.02)
    url = f'http://127.0.0.1:{uv.servers[0].sockets[0].getsockname()[1]}'
    for _ in range(3000):
        if httpx.get(f'{url}/ready').status_code == 200: return uv, t, url
        time.sleep(0.05)
    raise TimeoutError('the model did not load')


def stop_uvicorn(uv, t):
    uv.should_exit = True; t.join(60)


@pytest.fixture(scope='module', params=['thread', 'process'])
def server(request):
    "The server on each engine: the model in a thread of its process, or in a process of its own."
    from flexrl.serve import create_app, ServeSettings, tiny_selector
    torch.set_num_threads(1)
    app = create_app(functools.partial(tiny_selector, 0), ServeSettings(token=TOKEN, max_batch=8, engine=request.param))
    uv, t, url = run_uvicorn(app)
    yield url
    stop_uvicorn(uv, t)


@pytest.fixture(scope='module')
def client(server):
    return openai.OpenAI(base_url=f'{server}/v1', api_key=TOKEN, max_retries=0, timeout=120)


@pytest.fixture(scope='module')
def tiny():
    from flexrl.lm import tiny_lm
    return tiny_lm(seed=0)


def greedy(tiny, prompt: str, n: int) -> str:
    "The tiny model's own greedy continuation of `prompt` (`n` tokens at most, ending at its end token)."
    model, tok = tiny
    ids = tok(prompt, add_special_tokens=False).input_ids
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=0,
                         eos_token_id=tok.eos_token_id)
    return tok.decode(out[0, len(ids):], skip_special_tokens=True)


def decision_chat():
    "A decision as chat messages: the selector's system and user text."
    from flexrl.steering import PromptTemplate
    from flexrl.tune import make_examples
    d, t = make_examples(1, 5)[0][0], PromptTemplate()
    return [{'role': 'system', 'content': t.system_text(CHOICES)}, {'role': 'user', 'content': t.user_text(d)}]


def test_models_list(client):
    assert [m.id for m in client.models.list()] == ['flexrl-selector']


def test_completions_are_the_models_greedy_text(client, tiny):
    "Text, `max_tokens`, log-probabilities and usage of a two-prompt completion, checked against the local model."
    prompts = ['Stay where you are', 'The ball is']
    r = client.completions.create(model='flexrl-selector', prompt=prompts, max_tokens=5, logprobs=2)
    assert [c.index for c in r.choices] == [0, 1] and r.object == 'text_completion'
    assert [c.text for c in r.choices] == [greedy(tiny, p, 5) for p in prompts]
    assert r.usage.completion_tokens <= 10 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) <= 5
    assert all(len(t) == 2 and max(t.values()) >= l - 1e-5 for t, l in zip(lp.top_logprobs, lp.token_logprobs))
    one = client.completions.create(model='flexrl-selector', prompt=prompts[0], max_tokens=1)
    assert one.usage.completion_tokens <= 1 and one.choices[0].finish_reason in ('length', 'stop')


def test_stop_and_n(client, tiny):
    "`stop` cuts the text before the stop string; `n` gives that many (alike) choices, in completions and chat."
    full = greedy(tiny, 'Stay where you are', 8)
    assert len(full) > 4, full
    stop = full[3:5]
    r = client.completions.create(model='flexrl-selector', prompt='Stay where you are', max_tokens=8, stop=[stop], n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert {c.text for c in r.choices} == {full[:full.find(stop)]} and r.choices[0].finish_reason == 'stop'
    c = client.chat.completions.create(model='flexrl-selector', messages=[{'role': 'user', 'content': 'Which skill?'}],
                                       max_tokens=4, n=2, logprobs=True, top_logprobs=2)
    assert len(c.choices) == 2 and c.choices[0].message.content == c.choices[1].message.content
    assert c.choices[0].message.role == 'assistant' and len(c.choices[0].logprobs.content) <= 4
    assert all(len(t.top_logprobs) == 2 for t in c.choices[0].logprobs.content)
    assert c.usage.completion_tokens == 2 * len(c.choices[0].logprobs.content)


def test_streaming_completions(client, server):
    "A stream's chunks add up to the plain answer; with `include_usage` the last chunk has the usage; `[DONE]` ends it."
    kw = dict(model='flexrl-selector', prompt=['Stay where you are', 'Go'], max_tokens=6, n=2, logprobs=1)
    plain = client.completions.create(**kw)
    chunks = list(client.completions.create(**kw, stream=True, stream_options={'include_usage': True}))
    texts = {k: ''.join(c.text for ch in chunks for c in ch.choices if c.index == k) for k in range(4)}
    assert texts == {c.index: c.text for c in plain.choices}
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    assert all(ch.usage is None for ch in chunks[:-1])
    ends = {c.index: c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason}
    assert ends == {c.index: c.finish_reason for c in plain.choices}
    assert sum(len(c.logprobs.tokens) for ch in chunks for c in ch.choices if c.index == 0 and c.logprobs) == \
        len(plain.choices[0].logprobs.tokens)
    with httpx.stream('POST', f'{server}/v1/completions', headers=AUTH, timeout=60,
                      json={'prompt': 'Go', 'max_tokens': 3, 'stream': True}) as r:
        lines = [l for l in r.iter_lines() if l]
    assert r.headers['content-type'].startswith('text/event-stream') and lines[-1] == 'data: [DONE]'
    assert all(l.startswith('data: {') for l in lines[:-1]) and len(lines) >= 2


def test_streaming_chat(client):
    "A chat stream: deltas adding up to the plain answer (a stop string held back until sure), usage at the end."
    msgs = [{'role': 'user', 'content': 'Which skill now?'}]
    full = client.chat.completions.create(model='flexrl-selector', messages=msgs, max_tokens=10).choices[0].message.content
    assert len(full) > 4, full
    stop = full[2:4]
    plain = client.chat.completions.create(model='flexrl-selector', messages=msgs, max_tokens=10, stop=stop)
    chunks = list(client.chat.completions.create(model='flexrl-selector', messages=msgs, max_tokens=10, stop=stop,
                                                 stream=True, stream_options={'include_usage': True}))
    assert ''.join(c.delta.content or '' for ch in chunks for c in ch.choices) == plain.choices[0].message.content \
        == full[:full.find(stop)]
    assert [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason] == ['stop']
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens and chunks[0].object == 'chat.completion.chunk'


@pytest.mark.parametrize('api,kw,names', [
    ('chat', {'tools': [{'type': 'function', 'function': {'name': 'f', 'parameters': {}}}]}, ['tools']),
    ('chat', {'response_format': {'type': 'json_object'}}, ['response_format']),
    ('chat', {'extra_body': {'guided_json': {'type': 'object'}, 'guided_regex': 'a+'}}, ['guided_json', 'guided_regex']),
    ('chat', {'extra_body': {'functions': [{'name': 'f'}], 'structured_outputs': {'regex': 'a+'}}},
     ['functions', 'structured_outputs.regex']),
    ('completions', {'best_of': 2, 'logit_bias': {'5': 10}}, ['best_of', 'logit_bias']),
    ('completions', {'echo': True, 'stream': True}, ['echo (with stream)']),
    ('completions', {'extra_body': {'response_format': {'type': 'json_schema',
                                                        'json_schema': {'name': 'x', 'schema': {'type': 'integer'}}}}},
     ['response_format']),
])
def test_unsupported_options_are_refused_by_name(client, api, kw, names):
    "An option the server cannot honour is a 400 naming every one of them, not an answer that ignores it."
    with pytest.raises(openai.BadRequestError) as e:
        if api == 'chat':
            client.chat.completions.create(model='flexrl-selector', messages=[{'role': 'user', 'content': 'x'}], **kw)
        else: client.completions.create(model='flexrl-selector', prompt='x', **kw)
    assert e.value.status_code == 400
    msg = e.value.body['message']
    assert msg.startswith('unsupported option') and all(n in msg for n in names), msg
    # harmless options are taken
    client.completions.create(model='flexrl-selector', prompt='x', max_tokens=1, top_p=0.9, seed=3, presence_penalty=0,
                              user='me')


def test_choice_restriction_three_ways(client):
    """vLLM's `structured_outputs.choice` and `guided_choice`, and OpenAI's `response_format` json_schema enum: each
    one answers one of the choices, the same one; an empty list is a 400."""
    msgs = decision_chat()
    schema = {'type': 'json_schema', 'json_schema': {'name': 'skill', 'schema': {'type': 'string', 'enum': CHOICES}}}
    obj = {'type': 'json_schema', 'json_schema': {'name': 'pick', 'schema': {
        'type': 'object', 'properties': {'skill': {'type': 'string', 'enum': CHOICES}}, 'required': ['skill']}}}
    chat = lambda **kw: client.chat.completions.create(model='flexrl-selector', messages=msgs, **kw).choices[0].message.content
    got = [chat(extra_body={'structured_outputs': {'choice': CHOICES}}), chat(extra_body={'guided_choice': CHOICES}),
           json.loads(chat(response_format=schema)), json.loads(chat(response_format=obj))['skill']]
    assert got[0] in CHOICES and got == [got[0]] * 4, got
    prompt = msgs[0]['content'] + '\n' + msgs[1]['content'] + '\nSkill:'
    comp = lambda **kw: client.completions.create(model='flexrl-selector', prompt=prompt, **kw).choices[0].text
    cs = [comp(extra_body={'structured_outputs': {'choice': CHOICES}}), comp(extra_body={'guided_choice': CHOICES}),
          json.loads(comp(extra_body={'response_format': schema}))]
    assert cs[0] in CHOICES and cs == [cs[0]] * 3, cs
    for body in ({'structured_outputs': {'choice': []}}, {'guided_choice': []}):
        with pytest.raises(openai.BadRequestError, match='empty'):
            client.chat.completions.create(model='flexrl-selector', messages=msgs, extra_body=body)


def slow_tiny():
    "The tiny model, 50 ms a forward pass: >= 10 s for 200 tokens (module-level, so an engine process can build it)."
    from flexrl.serve import tiny_selector
    sel = tiny_selector(0)
    sel.model.get_decoder().register_forward_hook(lambda *a: time.sleep(0.05))
    return sel


@pytest.mark.parametrize('engine', ['thread', 'process'])
def test_disconnect_mid_stream_frees_its_slot(engine):
    """With room for one row, a stream holds it (another request is shed: 503 with Retry-After); the client leaving
    mid-stream ends its row at the next token, and the next request is answered long before the stream would end."""
    from flexrl.serve import create_app, ServeSettings
    app = create_app(slow_tiny, ServeSettings(token=TOKEN, max_batch=1, max_queue=1, max_tokens=256, engine=engine))
    uv, t, url = run_uvicorn(app)
    try:
        body = {'prompt': 'Go', 'max_tokens': 200, 'stream': True}
        with httpx.stream('POST', f'{url}/v1/completions', headers=AUTH, json=body, timeout=60) as r:
            lines = r.iter_lines()
            assert next(l for l in lines if l).startswith('data: {')
            shed = httpx.post(f'{url}/v1/completions', headers=AUTH, json={'prompt': 'Go', 'max_tokens': 1})
            assert shed.status_code == 503 and shed.headers['retry-after'] == '1', shed.text
        t0, status = time.monotonic(), None
        while time.monotonic() - t0 < 8:
            status = httpx.post(f'{url}/v1/completions', headers=AUTH, json={'prompt': 'Go', 'max_tokens': 1},
                                timeout=30).status_code
            if status == 200: break
            time.sleep(0.05)
        assert status == 200 and time.monotonic() - t0 < 5, (status, time.monotonic() - t0)
        m = httpx.get(f'{url}/metrics', headers=AUTH).text
        assert 'flexrl_cancelled_streams_total 1.0' in m and 'flexrl_queue_rows 0.0' in m
    finally: stop_uvicorn(uv, t)
