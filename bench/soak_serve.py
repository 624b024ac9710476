"""Soak test of the inference server: a long mixed load, and whether the server stays steady under it.

  python bench/soak_serve.py [--seconds 600] [--clients 64] [--window 60] [--max-queue 64] [--hidden 64] [--threads 1]
                             [--engine process|thread]

Starts `flexrl serve --tiny` as a real uvicorn process on 127.0.0.1 (a free port, a token) and runs `--clients`
closed-loop clients for `--seconds`, each on its own keep-alive connection, mixing: `/v1/select` with 1-4 decisions
(40%), `/v1/completions` (20%), `/v1/chat/completions` (20%), and streamed completions (20%), half of whose clients
leave after the second chunk (the connection closed mid-stream). The queue is small (`--max-queue`), so a burst of
rows is shed with 503 + Retry-After, which the client honours.

Every `--window` seconds (a minute by default) it records the requests, their outcomes, the p50/p99 latency of
the completed ones (a stream: to its last byte), and the server's RSS and open file descriptors (/proc, sampled every
2 s; the window's median), of its process and its engine process together. Prints a table, writes
bench/results/soak.json, and ends with four verdicts:
  - no 5xx but shed 503s (`busy`), and no connection errors;
  - RSS grows less than 10% after the first window;
  - the fd count is flat (the last window's median within 10 of the second window's);
  - the last window's p99 is within 1.5x of the second window's.
Exit status 0 when all four pass."""
import argparse, asyncio, collections, json, os, platform, random, signal, socket, subprocess, sys, time
from pathlib import Path
import numpy as np
import httpx
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import free_port, wait_ready, stop   # one way to start and stop a server for both benches

ROOT = Path(__file__).resolve().parent.parent
TOKEN = 'soak-token'
MIX = (('select', 0.4), ('complete', 0.2), ('chat', 0.2), ('stream', 0.2))


def start(a):
    "`flexrl serve --tiny` on a free loopback port, once ready: (process, url, port)."
    port = free_port()
    args = ['--tiny', '--seed', '0', '--hidden', str(a.hidden), '--port', str(port), '--max-queue', str(a.max_queue),
            '--log-level', 'warning', '--engine', a.engine] + (['--threads', str(a.threads)] if a.threads else [])
    env = {**os.environ, 'FLEXRL_API_TOKEN': TOKEN, 'HF_HUB_OFFLINE': '1',
           **({'OMP_NUM_THREADS': str(a.threads)} if a.threads else {})}
    proc = subprocess.Popen([sys.executable, '-c', f'from flexrl.serve import main; main({args!r})'], env=env, cwd=ROOT)
    return wait_ready(proc, port)


def rss_fds(pid: int) -> tuple[float, int]:
    "RSS (MiB) and open file descriptors of the server: its process and its children (the engine process), summed."
    pids = [pid] + [int(c) for t in Path(f'/proc/{pid}/task').glob('*') for c in (t/'children').read_text().split()]
    kb = sum(next(int(l.split()[1]) for l in Path(f'/proc/{p}/status').read_text().splitlines() if l.startswith('VmRSS:'))
             for p in pids)
    return kb / 1024, sum(len(os.listdir(f'/proc/{p}/fd')) for p in pids)


class Conn:
    "One keep-alive HTTP/1.1 connection on asyncio streams (cheap for the client, so the load measures the server)."
    def __init__(self, port: int): self.port, self.r, self.w = port, None, None

    async def send(self, path: str, body: bytes) -> bytes:
        if self.w is None: self.r, self.w = await asyncio.open_connection('127.0.0.1', self.port)
        self.w.write(b'POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nContent-Type: application/json'
                     b'\r\nContent-Length: %d\r\n\r\n%s' % (path.encode(), TOKEN.encode(), len(body), body))
        return await self.r.readuntil(b'\r\n\r\n')

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        "POST JSON: (status, body)."
        head = await self.send(path, body)
        n = next(int(l.split(b':')[1]) for l in head.lower().split(b'\r\n') if l.startswith(b'content-length:'))
        data = await self.r.readexactly(n)
        if b'connection: close' in head.lower(): self.close()
        return int(head[9:12]), data

    async def stream(self, path: str, body: bytes, leave_after: int | None) -> tuple[int, bytes]:
        "POST a streamed request and read its chunked events to `[DONE]`, or leave (close) after `leave_after` chunks."
        head = await self.send(path, body)
        status = int(head[9:12])
        if b'transfer-encoding: chunked' not in head.lower():
            n = next(int(l.split(b':')[1]) for l in head.lower().split(b'\r\n') if l.startswith(b'content-length:'))
            return status, await self.r.readexactly(n)
        got, k = b'', 0
        while True:
            size = int((await self.r.readuntil(b'\r\n')).strip().split(b';')[0], 16)
            data = await self.r.readexactly(size + 2)
            if size == 0: break
            got += data[:-2]; k += 1
            if leave_after is not None and k >= leave_after: self.close(); return -1, got   # the client leaves
        return status, got

    def close(self):
        if self.w is not None: self.w.close()
        self.r = self.w = None


def bodies(seed: int = 0):
    "Request bodies of each kind, from labelled decisions of the arena."
    from flexrl.tune import make_examples
    from flexrl.steering import PromptTemplate
    ds, t, rng = [d for d, _ in make_examples(256, seed)], PromptTemplate(), random.Random(seed)
    dec = lambda d: {'obs': d.obs, 'instruction': d.instruction, 'feedback': d.feedback, 'history': d.history,
                     'progress': d.progress}
    out = {'select': [], 'complete': [], 'chat': [], 'stream': []}
    for i, d in enumerate(ds):
        out['select'].append(json.dumps({'decisions': [dec(x) for x in ds[i:i + rng.randint(1, 4)]]}).encode())
        out['complete'].append(json.dumps({'prompt': t.user_text(d), 'max_tokens': 16}).encode())
        out['chat'].append(json.dumps({'messages': [{'role': 'user', 'content': t.user_text(d)}], 'max_tokens': 8,
                                       'stop': ['\n\n']}).encode())
        out['stream'].append(json.dumps({'prompt': t.user_text(d), 'max_tokens': 24, 'stream': True,
                                         'stream_options': {'include_usage': True}}).encode())
    return out


PATHS = {'select': '/v1/select', 'complete': '/v1/completions', 'chat': '/v1/chat/completions',
         'stream': '/v1/completions'}


async def soak(a, port: int, pid: int, bodies: dict) -> dict:
    "The load, and the per-window records."
    events, samples, t0 = [], [], time.monotonic()   # events: (t, kind, outcome, latency)
    end = t0 + a.seconds

    async def client(k: int):
        rng, c, i = random.Random(k), Conn(port), k
        kinds, weights = zip(*MIX)
        while time.monotonic() < end:
            kind = rng.choices(kinds, weights)[0]
            body = bodies[kind][i % len(bodies[kind])]; i += 7
            ts = time.perf_counter()
            try:
                if kind == 'stream':
                    status, data = await asyncio.wait_for(c.stream(PATHS[kind], body, 2 if rng.random() < 0.5 else None), 180)
                    if status == 200 and not data.rstrip().endswith(b'data: [DONE]'): status = 'unterminated'
                else: status, data = await asyncio.wait_for(c.post(PATHS[kind], body), 180)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, StopIteration) as e:
                events.append((time.monotonic() - t0, kind, type(e).__name__, None)); c.close(); await asyncio.sleep(0.2)
                continue
            lat = time.perf_counter() - ts
            if status == 200: events.append((time.monotonic() - t0, kind, 'ok', lat))
            elif status == -1: events.append((time.monotonic() - t0, kind, 'left', None))
            elif status == 503 and b'"busy"' in data:
                events.append((time.monotonic() - t0, kind, 'shed', None)); await asyncio.sleep(1.0)   # Retry-After: 1
            else: events.append((time.monotonic() - t0, kind, str(status), None))

    async def sampler():
        while time.monotonic() < end:
            rss, fds = rss_fds(pid); samples.append((time.monotonic() - t0, rss, fds))
            await asyncio.sleep(2)

    async def reporter():
        w = 1
        while time.monotonic() < end:
            await asyncio.sleep(max(0.0, t0 + w * a.window - time.monotonic()))
            r = window(events, samples, (w - 1) * a.window, w * a.window)
            print(f"  window {w}: {r['requests']} requests, {r['outcomes']}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                  f"RSS {r['rss_mib']} MiB, fds {r['fds']}", flush=True); w += 1

    await asyncio.gather(sampler(), reporter(), *[client(k) for k in range(a.clients)])
    n = int(np.ceil(a.seconds / a.window))
    return {'windows': [window(events, samples, w * a.window, (w + 1) * a.window) for w in range(n)],
            'outcomes': dict(sorted(collections.Counter(e[2] for e in events).items()))}


def window(events, samples, t0: float, t1: float) -> dict:
    "The records of the events and samples in [t0, t1)."
    ev = [e for e in events if t0 <= e[0] < t1]
    lat = [e[3] for e in ev if e[3] is not None]
    sm = [s for s in samples if t0 <= s[0] < t1]
    outcomes = {}
    for e in ev: outcomes[e[2]] = outcomes.get(e[2], 0) + 1
    return {'from_s': t0, 'to_s': t1, 'requests': len(ev), 'outcomes': dict(sorted(outcomes.items())),
            'by_kind': {k: sum(e[1] == k for e in ev) for k, _ in MIX},
            'p50_ms': round(1000 * float(np.percentile(lat, 50)), 1) if lat else None,
            'p99_ms': round(1000 * float(np.percentile(lat, 99)), 1) if lat else None,
            'rss_mib': round(float(np.median([s[1] for s in sm])), 1) if sm else None,
            'fds': int(np.median([s[2] for s in sm])) if sm else None}


def verdicts(ws: list[dict], outcomes: dict) -> list[tuple[str, bool]]:
    "The four verdicts of a soak."
    bad = {k: v for k, v in outcomes.items() if k not in ('ok', 'shed', 'left')}
    first, second, last = ws[0], ws[min(1, len(ws) - 1)], ws[-1]
    growth = (last['rss_mib'] - first['rss_mib']) / first['rss_mib'] if first['rss_mib'] else None
    ratio = last['p99_ms'] / second['p99_ms'] if second['p99_ms'] and last['p99_ms'] else None
    return [(f"no 5xx but shed 503s, no connection errors: {sum(bad.values())} others {bad}, "
             f"{outcomes.get('shed', 0)} shed", not bad),
            (f"RSS after the first window: {first['rss_mib']} -> {last['rss_mib']} MiB "
             f"({100 * growth:+.1f}%, < 10%)" if growth is not None else 'RSS: no samples', growth is not None and growth < 0.10),
            (f"open fds: {second['fds']} (second window) -> {last['fds']} (last), within 10",
             second['fds'] is not None and last['fds'] is not None and last['fds'] - second['fds'] <= 10),
            (f"p99: {second['p99_ms']} ms (second window) -> {last['p99_ms']} ms (last), "
             f"{ratio:.2f}x (<= 1.5x)" if ratio else 'p99: missing', ratio is not None and ratio <= 1.5)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seconds', type=float, default=600)
    p.add_argument('--clients', type=int, default=64)
    p.add_argument('--window', type=float, default=60, help='seconds per record (the verdicts compare windows)')
    p.add_argument('--max-queue', type=int, default=64, help="the server's queue: rows beyond are shed (503)")
    p.add_argument('--hidden', type=int, default=64)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--engine', default='process', choices=['process', 'thread'], help="where the server's model runs")
    p.add_argument('--out', type=Path, default=ROOT/'bench'/'results'/'soak.json')
    a = p.parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    bs, load0 = bodies(), os.getloadavg()
    proc, url, port = start(a)
    try:
        rss0 = rss_fds(proc.pid)
        print(f'soak: {a.clients} clients for {a.seconds:.0f} s against {url} (pid {proc.pid}, RSS {rss0[0]:.0f} MiB, '
              f'{rss0[1]} fds at start), windows of {a.window:.0f} s ...', flush=True)
        res = asyncio.run(soak(a, port, proc.pid, bs))
        m = httpx.get(f'{url}/metrics', headers={'Authorization': f'Bearer {TOKEN}'}).text
        res['cancelled_streams'] = next((float(l.split()[-1]) for l in m.splitlines()
                                         if l.startswith('flexrl_cancelled_streams_total')), None)
    finally: stop(proc)
    ws = res['windows']
    vs = verdicts(ws, res['outcomes'])
    result = {'machine': f'{os.cpu_count()} cpus, {platform.processor() or platform.machine()}',
              'load_avg_1_5_15min': {'before': [round(x, 2) for x in load0], 'after': [round(x, 2) for x in os.getloadavg()]},
              'model': f'tiny Llama (tiny_lm): 2 layers, hidden {a.hidden}, seed 0', 'clients': a.clients,
              'seconds': a.seconds, 'window_s': a.window, 'max_queue': a.max_queue, 'mix': dict(MIX), **res,
              'verdicts': [{'what': w, 'passed': ok} for w, ok in vs]}
    print(f"\n{result['model']}; {a.clients} clients x {a.seconds:.0f} s; load average {result['load_avg_1_5_15min']['before'][0]}"
          f" before, {result['load_avg_1_5_15min']['after'][0]} after ({os.cpu_count()} cores)\n")
    print(f"{'window':>7}{'from s':>8}{'requests':>10}{'ok':>6}{'shed':>6}{'left':>6}{'other':>7}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'RSS MiB':>9}{'fds':>6}")
    for k, w in enumerate(ws):
        o = w['outcomes']; other = sum(v for x, v in o.items() if x not in ('ok', 'shed', 'left'))
        print(f"{k + 1:>7}{w['from_s']:>8.0f}{w['requests']:>10}{o.get('ok', 0):>6}{o.get('shed', 0):>6}{o.get('left', 0):>6}"
              f"{other:>7}{w['p50_ms']!s:>9}{w['p99_ms']!s:>9}{w['rss_mib']!s:>9}{w['fds']!s:>6}")
    print(f"\nstreams cancelled (server's count): {res['cancelled_streams']}")
    for w, ok in vs: print(f"{'PASS' if ok else 'FAIL'}: {w}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f'written {a.out}')
    return 0 if all(ok for _, ok in vs) else 1


if __name__ == '__main__': sys.exit(main())
