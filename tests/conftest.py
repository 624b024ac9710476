"Shared fixtures: the repo root, a free loopback port, an artifacts folder tests leave screenshots in."
import socket, sys
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
