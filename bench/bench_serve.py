"""Inference server benchmark: the server against the machine's limit, and with micro-batching against without.

  python bench/bench_serve.py [--clients 64] [--seconds 30] [--workloads select generate] [--selector tiny|tuned]
                              [--hidden 64] [--threads 1] [--max-batch 32] [--engine process|thread] [--profile]

Starts `flexrl serve` (the tiny random model, or `--selector tuned`: SmolLM2 with its adapter) as a real uvicorn
process on 127.0.0.1 (a free port, a token) once per setting, one at a time, and runs a bounded asyncio load against
it: `--clients` concurrent closed-loop clients on keep-alive connections, each sending one request and waiting for
its answer, for `--seconds`. Two workloads: `select` (one decision per `POST /v1/select`, every skill scored) and
`generate` (`POST /v1/completions`, 16 greedy tokens).

The limit: in the same run, before and after the select server runs, the same selector scores the same decisions in
a process of its own (same torch threads), `--max-batch` decisions per `select` call as the server's full rounds, no
HTTP. The server's select throughput at `--clients` is reported as a fraction of it, on the `--engine` (the model in
a process of its own, `flexrl serve`'s default) and, in one more run, on the other (the model in a thread of the
server's process, sharing the interpreter lock with the event loop). Each server run also records where its CPU went
(/proc): the main thread (the event loop: HTTP, JSON, validation) and the model thread (or process); with
`--profile` a further run puts the event loop under cProfile and lists its costliest functions.
Prints a table (requests, errors, throughput, p50 and p99 latency, mean forward-pass batch, CPU split) and writes
bench/results/serve.json.
Goals (issue #17): 0 errors; select >= 85% of the in-process limit; generate with micro-batching >= 4x without.

What to expect on a CPU: scoring a prompt (`select`) costs about the same per row whatever the batch, so
micro-batching saves only the per-call overhead there; decoding (`generate`) pays a per-step overhead that a batch
shares, so it gains several times. torch with 2 threads on 2 busy cores spins: keep `--threads 1` unless the machine
is otherwise idle."""
import argparse, asyncio, json, os, platform, signal, socket, subprocess, sys, time
from pathlib import Path
import numpy as np
import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKEN = 'bench-token'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_ready(proc, port: int, tries: int = 3000):
    "(process, url, port) once the server on `port` answers `/ready`; an error if it exits or never gets ready."
    url = f'http://127.0.0.1:{port}'
    for _ in range(tries):
        if proc.poll() is not None: raise RuntimeError(f'the server exited with {proc.returncode}')
        try:
            if httpx.get(f'{url}/ready', timeout=2).status_code == 200: return proc, url, port
        except httpx.TransportError: pass
        time.sleep(0.2)
    proc.kill(); raise TimeoutError('the server did not get ready')


def start(a, max_batch: int, profile: Path | None = None, engine: str | None = None):
    "A `flexrl serve` process (the `--selector`, on `engine` or `--engine`) on a free loopback port, once ready: (process, url, port)."
    port = free_port()
    args = (['--tiny', '--hidden', str(a.hidden)] if a.selector == 'tiny' else ['--selector', a.selector]) + \
        ['--seed', '0', '--port', str(port), '--max-batch', str(max_batch), '--max-wait-ms', str(a.max_wait_ms),
         '--log-level', 'warning'] + (['--threads', str(a.threads)] if a.threads else []) + \
        ([] if a.gpu or a.tp > 1 else ['--engine', engine or a.engine])
    env = {**os.environ, 'FLEXRL_API_TOKEN': TOKEN, 'HF_HUB_OFFLINE': '1'}
    if a.threads: env['OMP_NUM_THREADS'] = str(a.threads)
    code = f'from flexrl.serve import main; main({args!r})'
    if a.gpu or a.tp > 1:   # flexrl.parallel's server: the model on the GPU (one per process), split over --tp of them
        from flexrl.parallel import tp_command
        cmd = ([sys.executable, '-m', 'flexrl.parallel', 'serve'] if a.tp == 1 else tp_command(a.tp, ['serve'])) + args
    elif profile is None: cmd = [sys.executable, '-c', code]
    else:   # cProfile of the main thread, the event loop: where a request's time goes outside the model
        # uvicorn re-raises the SIGTERM that stopped it, under the handler it found: one that exits, so the dump runs
        cmd = [sys.executable, '-c', 'import cProfile, signal, sys\n'
               'signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n'
               'pr = cProfile.Profile(); pr.enable()\n'
               f'try:\n    {code}\nfinally:\n    pr.disable(); pr.dump_stats({str(profile)!r})\n']
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    return wait_ready(proc, port)


def thread_cpu(pid: int) -> dict[int, float]:
    "CPU seconds (user + system) of each thread of process `pid`, from /proc (empty where there is none)."
    out, tick = {}, os.sysconf('SC_CLK_TCK')
    for t in Path(f'/proc/{pid}/task').glob('*'):
        try: f = (t/'stat').read_text().rsplit(')', 1)[1].split()
        except OSError: continue
        out[int(t.name)] = (int(f[11]) + int(f[12])) / tick
    return out


def children(pid: int) -> list[int]:
    "The child processes of `pid` (the engine process of `--engine process`)."
    try: return [int(c) for t in Path(f'/proc/{pid}/task').glob('*') for c in (t/'children').read_text().split()]
    except OSError: return []


def server_cpu(pid: int) -> dict:
    "CPU seconds of every thread of the server process and of its children: {(pid, tid): seconds}."
    return {(p, t): v for p in [pid, *children(pid)] for t, v in thread_cpu(p).items()}


def cpu_split(pid: int, before: dict, after: dict) -> dict:
    """Where the server's CPU went during a run: its main thread (the event loop: HTTP, JSON, validation), its busiest
    other thread (the model thread; with `--engine process`, the engine process's), the rest of the engine process, and
    the other threads (torch's and uvicorn's helpers)."""
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    loop = d.pop((pid, pid), 0.0)
    eng = {k: v for k, v in d.items() if k[0] != pid}
    model = max((eng or d).values(), default=0.0)
    out = {'event_loop_cpu_s': round(loop, 2), 'model_thread_cpu_s': round(model, 2),
           'other_threads_cpu_s': round(sum(v for k, v in d.items() if k[0] == pid) - (0 if eng else model), 2)}
    if eng: out['engine_process_other_cpu_s'] = round(sum(eng.values()) - model, 2)
    return out


LIMIT = '''
import json, sys, time, numpy as np, torch
a = json.loads(sys.argv[1])
if a['threads']: torch.set_num_threads(a['threads'])
from flexrl.serve import selector_factory, Engine, ServeSettings
from flexrl.tune import make_examples
if a['gpu']:   # as `python -m flexrl.parallel serve` builds it: on the GPU
    from flexrl.parallel import tp_selector
    from flexrl.steering import SELECTORS
    sp = SELECTORS.get(a['selector'])
    sel = tp_selector('tiny' if a['selector'] == 'tiny' else sp.model, 'score', None if a['selector'] == 'tiny' else sp.adapter,
                      hidden=a['hidden'])
else: sel = selector_factory(a['selector'], 'score', 0, a['hidden'])()
Engine(sel, ServeSettings(max_batch=a['batch']))            # sizes the selector's batches as the server does
ds = [d for d, _ in make_examples(256, 0)]
calls = [ds[i:i + a['batch']] for i in range(0, len(ds), a['batch'])]
sel.select(calls[0])                                        # warm-up: the prefix cache, torch's first calls
lat, n, t0 = [], 0, time.perf_counter()
while time.perf_counter() - t0 < a['seconds']:
    for c in calls:
        t = time.perf_counter(); sel.select(c); lat.append(time.perf_counter() - t); n += len(c)
        if time.perf_counter() - t0 >= a['seconds']: break
wall = time.perf_counter() - t0
print(json.dumps({'decisions': n, 'wall_s': round(wall, 2), 'decisions_per_s': round(n / wall, 1),
                  'call_p50_ms': round(1000 * float(np.percentile(lat, 50)), 1),
                  'call_p99_ms': round(1000 * float(np.percentile(lat, 99)), 1)}))
'''


def limit(a, batch: int) -> dict:
    """The physical limit: the same selector scoring the same decisions in one process, `batch` decisions per
    `select` call (the server's rounds), no HTTP; in a process of its own with the server's torch threads."""
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', **({'OMP_NUM_THREADS': str(a.threads)} if a.threads else {})}
    arg = json.dumps({'selector': a.selector, 'hidden': a.hidden, 'threads': a.threads, 'batch': batch, 'gpu': a.gpu,
                      'seconds': a.limit_seconds})
    r = subprocess.run([sys.executable, '-c', LIMIT, arg], env=env, cwd=ROOT, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f'the in-process limit failed:\n{r.stderr[-3000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


def top_functions(profile: Path, n: int = 25) -> list[dict]:
    "The event loop's costliest functions of a cProfile dump, by their own time."
    import pstats
    st = pstats.Stats(str(profile)).stats
    rows = sorted(((v[2], v[3], v[1], f'{Path(k[0]).name}:{k[1]}({k[2]})') for k, v in st.items()), reverse=True)[:n]
    return [{'function': f, 'own_s': round(tt, 3), 'cumulative_s': round(ct, 3), 'calls': nc} for tt, ct, nc, f in rows]


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try: proc.wait(60)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait()


class Conn:
    """One keep-alive HTTP/1.1 connection on asyncio streams: the load generator's client. It costs ~0.1 ms of CPU a
    request where httpx costs ~5 ms on this machine, so the load measures the server, not the client."""
    def __init__(self, port: int): self.port, self.r, self.w = port, None, None

    async def post(self, path: str, body: bytes) -> int:
        "POST JSON `body`; the status (the answer is read and dropped)."
        if self.w is None: self.r, self.w = await asyncio.open_connection('127.0.0.1', self.port)
        self.w.write(b'POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n'
                     b'Content-Length: %d\r\n\r\n%s' % (path.encode(), TOKEN.encode(), len(body), body))
        head = await self.r.readuntil(b'\r\n\r\n')
        n = next(int(l.split(b':')[1]) for l in head.lower().split(b'\r\n') if l.startswith(b'content-length:'))
        await self.r.readexactly(n)
        if b'connection: close' in head.lower(): self.close()
        return int(head[9:12])

    def close(self):
        if self.w is not None: self.w.close()
        self.r = self.w = None


async def load(port: int, path: str, bodies: list[bytes], clients: int, seconds: float) -> dict:
    "`clients` closed-loop clients (one connection each) for `seconds`: every request's latency and status."
    lat, errors = [], []
    async def client(k, end):
        c, i = Conn(port), k
        try:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                try: status = await asyncio.wait_for(c.post(path, bodies[i % len(bodies)]), 120)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, StopIteration, ValueError) as e:
                    errors.append(type(e).__name__); c.close(); continue
                if status == 200: lat.append(time.perf_counter() - t0)
                else: errors.append(status)
                i += clients
        finally: c.close()
    await asyncio.gather(*[client(k, time.monotonic() + 2) for k in range(clients)])   # warm-up: connections, caches
    lat.clear(); errors.clear()
    t0 = time.monotonic()
    await asyncio.gather(*[client(k, t0 + seconds) for k in range(clients)])
    wall = time.monotonic() - t0
    return {'requests': len(lat) + len(errors), 'errors': len(errors), 'error_kinds': sorted({str(e) for e in errors}),
            'wall_s': round(wall, 2), 'throughput_rps': round(len(lat) / wall, 1),
            'p50_ms': round(1000 * float(np.percentile(lat, 50)), 1) if lat else None,
            'p99_ms': round(1000 * float(np.percentile(lat, 99)), 1) if lat else None}


def batch_stats(url: str, op: str) -> dict:
    "How many model calls there were and their mean batch (rows), from `/metrics`."
    m = {}
    for line in httpx.get(f'{url}/metrics', headers={'Authorization': f'Bearer {TOKEN}'}).text.splitlines():
        if line.startswith('flexrl_batch_rows_') and f'op="{op}"' in line: k, v = line.rsplit(' ', 1); m[k.split('{')[0]] = float(v)
    n, s = m.get('flexrl_batch_rows_count', 0), m.get('flexrl_batch_rows_sum', 0)
    return {'forward_passes': int(n), 'mean_batch': round(s / n, 1) if n else None}


WORKLOADS = {  # name -> (path, op, what)
    'select': ('/v1/select', 'select', 'POST /v1/select, one decision: every skill scored (score mode, prompt processing only)'),
    'generate': ('/v1/completions', 'complete', 'POST /v1/completions, one decision prompt, 16 greedy tokens (token-by-token decoding)'),
}


def request_bodies(workload: str, hidden: int, n: int = 256) -> list[bytes]:
    "`n` different request bodies of a workload, from labelled decisions of the arena."
    from flexrl.tune import make_examples
    from flexrl.lm import tiny_lm, HFSelector
    ds = [d for d, _ in make_examples(n, 0)]
    if workload == 'select':
        return [json.dumps({'decisions': [{'obs': d.obs, 'instruction': d.instruction, 'feedback': d.feedback, 'history': d.history, 'progress': d.progress}]}).encode() for d in ds]
    sel = HFSelector(*tiny_lm(0, hidden=hidden))
    return [json.dumps({'prompt': sel.prompt(d), 'max_tokens': 16, 'temperature': 0}).encode() for d in ds]


def run_server(a, w: str, mb: int, bodies, profile: Path | None = None, engine: str | None = None) -> dict:
    "One server run of workload `w` at max batch `mb`: the load's numbers, the batches, where the CPU went."
    path, op, _ = WORKLOADS[w]
    proc, url, port = start(a, mb, profile, engine)
    try:
        print(f'{w}: max batch {mb}, {engine or a.engine} engine, {a.clients} clients for {a.seconds:.0f} s against {url}'
              f'{" (profiled)" if profile else ""} ...', flush=True)
        t0 = server_cpu(proc.pid)
        r = asyncio.run(load(port, path, bodies, a.clients, a.seconds))
        return {'max_batch': mb, 'engine': engine or a.engine, **r, **batch_stats(url, op),
                **cpu_split(proc.pid, t0, server_cpu(proc.pid))}
    finally: stop(proc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--clients', type=int, default=64)
    p.add_argument('--seconds', type=float, default=30)
    p.add_argument('--limit-seconds', type=float, default=None, help='how long each in-process limit run (default --seconds)')
    p.add_argument('--workloads', nargs='+', default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument('--selector', default='tiny', help="the served selector: 'tiny' (random tiny Llama) or a language-model "
                                                     "selector of flexrl.steering.SELECTORS ('tuned': SmolLM2 + adapter)")
    p.add_argument('--hidden', type=int, default=64, help='hidden size of the tiny Llama served (2 layers)')
    p.add_argument('--threads', type=int, default=1, help='torch threads of the server (0: torch default)')
    p.add_argument('--max-batch', type=int, default=32, help='max batch of the micro-batching server (its default: 32)')
    p.add_argument('--max-wait-ms', type=float, default=5)
    p.add_argument('--no-unbatched', action='store_true', help='skip the max-batch-1 runs')
    p.add_argument('--engine', default='process', choices=['process', 'thread'],
                   help="where the server's model runs (flexrl serve --engine): 'process' (its own) or 'thread'")
    p.add_argument('--compare-engines', action=argparse.BooleanOptionalAction, default=True,
                   help='select: one more micro-batching run on the other engine')
    p.add_argument('--profile', action='store_true', help="one more select run with the server's event loop under cProfile")
    p.add_argument('--gpu', action='store_true', help='serve (and measure the limit) on the GPU, through flexrl.parallel')
    p.add_argument('--tp', type=int, default=1, help='split the served model over this many GPUs (torchrun); no limit run')
    p.add_argument('--out', type=Path, default=ROOT/'bench'/'results'/'serve.json')
    a = p.parse_args(argv)
    a.limit_seconds = a.limit_seconds or a.seconds
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    if a.selector == 'tiny':
        from flexrl.lm import tiny_lm
        n_params = sum(p.numel() for p in tiny_lm(0, hidden=a.hidden)[0].parameters())
        model = f'tiny Llama (tiny_lm): 2 layers, hidden {a.hidden}, {n_params:,} parameters, seed 0'
    else: model = f'selector {a.selector!r} (SmolLM2-135M-Instruct; flexrl.steering.SELECTORS), score mode'
    load0, results = os.getloadavg(), {}
    for w in a.workloads:
        bodies, runs = request_bodies(w, a.hidden), {}
        if w == 'select' and a.tp == 1:
            print(f'select: the in-process limit, batch {a.max_batch}, {a.limit_seconds:.0f} s ...', flush=True)
            lim = [limit(a, a.max_batch)]
        runs['micro-batching'] = run_server(a, w, a.max_batch, bodies)
        if not a.no_unbatched: runs['no batching'] = run_server(a, w, 1, bodies)
        if w == 'select' and a.compare_engines and not (a.gpu or a.tp > 1):   # the other engine, same load, same run
            other = 'thread' if a.engine == 'process' else 'process'
            runs[f'{other} engine'] = run_server(a, w, a.max_batch, bodies, engine=other)
        res = {'what': WORKLOADS[w][2], 'runs': runs, 'errors': sum(r['errors'] for r in runs.values())}
        b, u = runs['micro-batching'], runs.get('no batching')
        res['speedup'] = round(b['throughput_rps'] / u['throughput_rps'], 2) if u and u['throughput_rps'] else None
        goals = [res['errors'] == 0] + ([(res['speedup'] or 0) >= 4.0] if w == 'generate' and u else [])
        if w == 'select' and a.tp == 1:
            print(f'select: the in-process limit again ...', flush=True)
            lim.append(limit(a, a.max_batch))
            mean = sum(x['decisions_per_s'] for x in lim) / len(lim)
            res['limit'] = {'runs': lim, 'decisions_per_s': round(mean, 1),
                            'spread': [min(x['decisions_per_s'] for x in lim), max(x['decisions_per_s'] for x in lim)]}
            res['fraction_of_limit'] = round(b['throughput_rps'] / mean, 3) if mean else None
            goals.append((res['fraction_of_limit'] or 0) >= 0.85)
            res['fraction_of_limit_by_engine'] = {x['engine']: round(x['throughput_rps'] / mean, 3) for n, x in runs.items()
                                                  if n == 'micro-batching' or n.endswith(' engine')} if mean else {}
            if a.profile:
                prof = a.out.parent/'serve_select.prof'; a.out.parent.mkdir(parents=True, exist_ok=True)
                res['profiled_run'] = run_server(a, w, a.max_batch, bodies, prof)
                res['event_loop_top'] = top_functions(prof) if prof.exists() else []
        res['passed'] = all(goals)
        results[w] = res
    result = {'machine': f'{os.cpu_count()} cpus, {platform.processor() or platform.machine()}',
              'load_avg_1_5_15min': {'before': [round(x, 2) for x in load0], 'after': [round(x, 2) for x in os.getloadavg()]},
              'model': model, 'selector': a.selector, 'gpu': a.gpu, 'tp': a.tp,
              'server_threads': a.threads or 'torch default', 'clients': a.clients, 'seconds': a.seconds,
              'max_wait_ms': a.max_wait_ms,
              'goals': 'select: 0 errors, >= 85% of the in-process limit; generate: 0 errors, micro-batching >= 4x without',
              'workloads': results}
    print(f"\n{model}; {a.clients} clients x {a.seconds:.0f} s per run; server torch threads {result['server_threads']}; "
          f"load average {result['load_avg_1_5_15min']['before'][0]} before, {result['load_avg_1_5_15min']['after'][0]} after "
          f"({os.cpu_count()} cores)\n")
    print(f"{'workload':<10}{'server':<16}{'max batch':>10}{'requests':>10}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'batch':>7}{'loop cpu':>9}{'model cpu':>10}")
    for w, r in results.items():
        for name, x in r['runs'].items():
            print(f"{w:<10}{name:<16}{x['max_batch']:>10}{x['requests']:>10}{x['errors']:>8}{x['throughput_rps']:>9}"
                  f"{x['p50_ms']:>9}{x['p99_ms']:>9}{x['mean_batch']:>7}{x['event_loop_cpu_s']:>9}{x['model_thread_cpu_s']:>10}")
        if 'limit' in r:
            for k, x in enumerate(r['limit']['runs']):
                print(f"{w:<10}{'in-process #' + str(k + 1):<16}{a.max_batch:>10}{x['decisions']:>10}{0:>8}{x['decisions_per_s']:>9}"
                      f"{x['call_p50_ms']:>9}{x['call_p99_ms']:>9}{a.max_batch:>7}")
    for w, r in results.items():
        line = f"{w}: {r['what']}: {r['errors']} errors"
        if r.get('speedup') is not None: line += f", micro-batching {r['speedup']}x without"
        if 'limit' in r: line += (f", {r['runs']['micro-batching']['throughput_rps']} req/s = {100 * r['fraction_of_limit']:.1f}% "
                                  f"of the in-process {r['limit']['decisions_per_s']} decisions/s (spread {r['limit']['spread']}; "
                                  f"by engine {r['fraction_of_limit_by_engine']})")
        print(f"{line}: {'PASS' if r['passed'] else 'FAIL'}")
        for f in r.get('event_loop_top', [])[:12]:
            print(f"  event loop: {f['own_s']:>7} s own, {f['cumulative_s']:>7} s cum, {f['calls']:>8} calls  {f['function']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f'written {a.out}')
    return 0 if all(r['passed'] for r in results.values()) else 1


if __name__ == '__main__': sys.exit(main())
