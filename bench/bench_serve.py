"""Inference server benchmark: the same server, with micro-batching and without (max batch 1), under the same load.

  python bench/bench_serve.py [--clients 64] [--seconds 30] [--workloads select generate] [--hidden 64] [--threads 1]

Starts `flexrl serve --tiny` as a real uvicorn process on 127.0.0.1 (a free port, a token) once per setting, one at
a time, and runs a bounded asyncio load against it: `--clients` concurrent closed-loop clients on keep-alive
connections, each sending one request and waiting for its answer, for `--seconds`. Two workloads: `select` (one
decision per `POST /v1/select`, every skill scored) and `generate` (`POST /v1/completions`, 16 greedy tokens).
Prints a table (requests, errors, throughput, p50 and p99 latency, mean forward-pass batch) and writes
bench/results/serve.json.
Goals (issue): 0 errors, throughput with micro-batching >= 4x without.

What to expect on a CPU: scoring a prompt (`select`) costs about the same per row whatever the batch (the work is
the row's own tokens attending to the cached prefix), so micro-batching saves only the per-call overhead there
(~1.3x on 2 cores); decoding (`generate`) pays a per-step overhead that a batch shares, so it gains several times.
On a GPU both gain, the per-call cost dominating there. torch with 2 threads on 2 busy cores spins: keep
`--threads 1` unless the machine is otherwise idle."""
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


def start(a, max_batch: int):
    "A `flexrl serve --tiny` process on a free loopback port, once ready: (process, url, port)."
    port = free_port()
    args = ['--tiny', '--seed', '0', '--hidden', str(a.hidden), '--port', str(port), '--max-batch', str(max_batch),
            '--max-wait-ms', str(a.max_wait_ms), '--log-level', 'warning'] + (['--threads', str(a.threads)] if a.threads else [])
    env = {**os.environ, 'FLEXRL_API_TOKEN': TOKEN, 'HF_HUB_OFFLINE': '1'}
    if a.threads: env['OMP_NUM_THREADS'] = str(a.threads)
    proc = subprocess.Popen([sys.executable, '-c', f'from flexrl.serve import main; main({args!r})'], env=env, cwd=ROOT)
    url = f'http://127.0.0.1:{port}'
    for _ in range(600):
        if proc.poll() is not None: raise RuntimeError(f'the server exited with {proc.returncode}')
        try:
            if httpx.get(f'{url}/ready', timeout=2).status_code == 200: return proc, url, port
        except httpx.TransportError: pass
        time.sleep(0.2)
    proc.kill(); raise TimeoutError('the server did not get ready')


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--clients', type=int, default=64)
    p.add_argument('--seconds', type=float, default=30)
    p.add_argument('--workloads', nargs='+', default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument('--hidden', type=int, default=64, help='hidden size of the tiny Llama served (2 layers)')
    p.add_argument('--threads', type=int, default=1, help='torch threads of the server (0: torch default)')
    p.add_argument('--max-batch', type=int, default=64, help='max batch of the micro-batching server')
    p.add_argument('--max-wait-ms', type=float, default=5)
    p.add_argument('--out', type=Path, default=ROOT/'bench'/'results'/'serve.json')
    a = p.parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from flexrl.lm import tiny_lm
    n_params = sum(p.numel() for p in tiny_lm(0, hidden=a.hidden)[0].parameters())
    load0, results = os.getloadavg(), {}
    for w in a.workloads:
        path, op, what = WORKLOADS[w]
        bodies, runs = request_bodies(w, a.hidden), {}
        for name, mb in (('micro-batching', a.max_batch), ('no batching', 1)):
            proc, url, port = start(a, mb)
            try:
                print(f'{w}: {name} (max batch {mb}), {a.clients} clients for {a.seconds:.0f} s against {url} ...', flush=True)
                runs[name] = {'max_batch': mb, **asyncio.run(load(port, path, bodies, a.clients, a.seconds)), **batch_stats(url, op)}
            finally: stop(proc)
        b, u = runs['micro-batching'], runs['no batching']
        speedup = round(b['throughput_rps'] / u['throughput_rps'], 2) if u['throughput_rps'] else None
        results[w] = {'what': what, 'runs': runs, 'speedup': speedup, 'errors': b['errors'] + u['errors'],
                      'passed': b['errors'] == 0 and u['errors'] == 0 and (speedup or 0) >= 4.0}
    result = {'machine': f'{os.cpu_count()} cpus, {platform.processor() or platform.machine()}',
              'load_avg_1_5_15min': {'before': [round(x, 2) for x in load0], 'after': [round(x, 2) for x in os.getloadavg()]},
              'model': f'tiny Llama (tiny_lm): 2 layers, hidden {a.hidden}, {n_params:,} parameters, seed 0',
              'server_threads': a.threads or 'torch default', 'clients': a.clients, 'seconds': a.seconds,
              'max_wait_ms': a.max_wait_ms, 'goal': '0 errors, micro-batching >= 4x the throughput without', 'workloads': results}
    print(f"\n{result['model']}; {a.clients} clients x {a.seconds:.0f} s per run; server torch threads {result['server_threads']}; "
          f"load average {result['load_avg_1_5_15min']['before'][0]} before, {result['load_avg_1_5_15min']['after'][0]} after (2 cores)\n")
    print(f"{'workload':<10}{'server':<16}{'max batch':>10}{'requests':>10}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'batch':>7}{'speedup':>9}")
    for w, r in results.items():
        for name, x in r['runs'].items():
            sp = f"{r['speedup']}x" if name == 'no batching' else ''
            print(f"{w:<10}{name:<16}{x['max_batch']:>10}{x['requests']:>10}{x['errors']:>8}{x['throughput_rps']:>9}{x['p50_ms']:>9}{x['p99_ms']:>9}{x['mean_batch']:>7}{sp:>9}")
    for w, r in results.items(): print(f"{w}: {r['what']}: {r['speedup']}x, {r['errors']} errors: {'PASS' if r['passed'] else 'FAIL'}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f'written {a.out}')
    return 0 if all(r['passed'] for r in results.values()) else 1


if __name__ == '__main__': sys.exit(main())
