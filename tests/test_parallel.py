"""Tensor parallelism for real, on CPU: `torchrun --nproc-per-node 2` (gloo) splits a tiny Llama built here over two
processes. The split model gives the logits, scores and skills of the whole one; a model whose heads do not divide is
refused up front; and `flexrl serve --tiny --tp 2` answers like the single-process server, then shuts down cleanly."""
import json, os, signal, subprocess, sys, time
import httpx, pytest, torch
from conftest import free_port, wait_ready

TOKEN = 'tp-test-token'
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1', 'FLEXRL_API_TOKEN': TOKEN}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A tiny random Llama (4 attention heads, 2 KV heads) whose choices vary, saved once for every process to load."
    from flexrl.parallel import save_tiny
    return save_tiny(tmp_path_factory.mktemp('tiny')/'model', seed=0, hidden=64, heads=4, kv_heads=2, init_std=0.3)


def test_check_tp_names_the_heads_and_the_sizes_that_work():
    from transformers import LlamaConfig
    from flexrl.parallel import check_tp, tp_sizes
    smol = LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3)  # SmolLM2-135M
    assert check_tp(smol, 3) == 3 and check_tp(smol, 1) == 1 and tp_sizes(smol) == [1, 3]
    with pytest.raises(ValueError, match='over 2 processes: .* its 9 attention heads and 3 key-value heads .* valid sizes: 1, 3'):
        check_tp(smol, 2)


def test_two_processes_match_one(tiny, tmp_path):
    "TP=2 under torchrun (gloo): logits within 1e-4 of the single-process model, the same scores and skills."
    from flexrl.parallel import bench, run_tp
    one = bench(str(tiny), decisions=24, batch=8, repeats=1)
    run_tp(2, ['bench', '--model', tiny, '--decisions', 24, '--batch', 8, '--repeats', 1,
               '--out', tmp_path/'tp2.json', '--logits', tmp_path/'tp2.pt'], timeout=300, env=ENV)
    two = json.loads((tmp_path/'tp2.json').read_text())
    logits = torch.load(tmp_path/'tp2.pt')
    assert two['tp'] == 2 and one['tp'] == 1 and logits.shape == one['logits'].shape
    assert (logits - one['logits']).abs().max().item() < 1e-4
    assert len(set(one['skills'])) > 1, one['skills']   # the comparison means something: the model does not always say `stay`
    assert two['skills'] == one['skills']
    assert torch.allclose(torch.tensor(two['scores']), torch.tensor(one['scores']), atol=1e-4)
    assert two['decisions_per_s'] > 0 and two['latency_ms_p95'] >= two['latency_ms_p50'] > 0


def test_heads_that_do_not_divide_are_refused(tmp_path):
    "3 heads over 2 processes: every rank stops before loading, with the head counts and the valid sizes."
    from flexrl.parallel import run_tp, save_tiny
    three = save_tiny(tmp_path/'three', hidden=48, heads=3, kv_heads=3)
    with pytest.raises(RuntimeError) as e:
        run_tp(2, ['bench', '--model', three], timeout=300, env=ENV)
    assert 'cannot split this model over 2 processes' in str(e.value)
    assert '3 attention heads and 3 key-value heads to divide by the size; valid sizes: 1, 3' in str(e.value)


def test_tp_server_answers_like_one_process(python):
    "`flexrl serve --tiny --tp 2`: /v1/select and /v1/completions as the tiny model in one process; SIGTERM ends every rank."
    from flexrl.lm import HFSelector, tiny_lm
    from flexrl.serve import LM, lm_generate
    from flexrl.parallel import bench_decisions
    port = free_port()
    args = ['--tiny', '--seed', '0', '--tp', '2', '--port', str(port), '--log-level', 'warning', '--threads', '1', '--max-batch', '8']
    proc = subprocess.Popen([python, '-c', f'from flexrl.cli import main; main(["serve", *{args!r}])'], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, H = f'http://127.0.0.1:{port}', {'Authorization': f'Bearer {TOKEN}'}
    try:
        wait_ready(proc, url)
        local, ds = HFSelector(*tiny_lm(0)), bench_decisions(12, seed=7)
        want = local.select(ds)
        body = {'decisions': [{'obs': d.obs, 'instruction': d.instruction, 'feedback': d.feedback, 'history': d.history, 'progress': list(d.progress)} for d in ds]}
        r = httpx.post(f'{url}/v1/select', json=body, headers=H, timeout=120).json()
        assert [c['skill'] for c in r['choices']] == [c.skill for c in want]
        assert torch.allclose(torch.tensor([list(c['scores'].values()) for c in r['choices']]),
                              torch.tensor([list(c.scores.values()) for c in want]), atol=1e-4)
        prompts = ['The ball is', local.prompt(ds[0])]
        r = httpx.post(f'{url}/v1/completions', json={'prompt': prompts, 'max_tokens': 6}, headers=H, timeout=120).json()
        lm = LM(local)
        gen = lm_generate(lm, [lm.encode(p) for p in prompts], [6, 6])
        assert [c['text'] for c in r['choices']] == [local.tokenizer.decode(g.tokens, skip_special_tokens=True) for g in gen]
    finally:
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)   # torchrun passes it on; rank 0 drains, then releases rank 1
        try: out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired: proc.kill(); out, _ = proc.communicate(); pytest.fail(f'the TP server did not stop:\n{out}')
    # every rank ended by itself, before torchrun's 30 s grace period ran out (torchrun then reports the signal it got)
    assert time.time() - t0 < 25 and '[rank0]: Traceback' not in out and '[rank1]: Traceback' not in out, out
