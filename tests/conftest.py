"Shared fixtures: the repo root, a free loopback port, an artifacts folder tests leave screenshots in."
import socket, sys, time
import httpx
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT/'runs'/'test-artifacts'


@pytest.fixture(scope='session')
def root() -> Path: return ROOT


@pytest.fixture(scope='session')
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int: return free_port()


@pytest.fixture(scope='session')
def python() -> str: return sys.executable


def wait_ready(proc, url: str, timeout: float = 180):
    "Wait until the server process `proc` answers 200 on `url`/ready; fail with its output if it exits first."
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: raise RuntimeError(f'the server exited with {proc.returncode}:\n{proc.stdout.read()}')
        try:
            if httpx.get(f'{url}/ready', timeout=2).status_code == 200: return
        except httpx.TransportError: pass
        time.sleep(0.2)
    raise TimeoutError(f'{url} not ready within {timeout} s')
