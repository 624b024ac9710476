"A real `mlflow server` on 127.0.0.1 for tests, stopped afterwards."
import os, signal, subprocess, sys, time, urllib.request
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def mlflow_server(tmp: Path, port: int, timeout: float = 90):
    "Start `mlflow server` with a SQLite backend and served artifacts under `tmp`; yield its URI."
    cmd = [str(Path(sys.executable).parent/'mlflow'), 'server', '--host', '127.0.0.1', '--port', str(port),
           '--backend-store-uri', f"sqlite:///{tmp/'server.db'}", '--artifacts-destination', str(tmp/'artifacts'),
           '--workers', '1']
    log = open(tmp/'server.log', 'w')
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while True:
            try:
                if urllib.request.urlopen(uri + '/health', timeout=2).status == 200: break
            except OSError: pass
            if p.poll() is not None or time.time() - t0 > timeout:
                raise RuntimeError(f'mlflow server did not start:\n{(tmp/"server.log").read_text()[-3000:]}')
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(15)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL)
        log.close()
