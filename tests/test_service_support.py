"""Helpers for the service tests: free ports, a real uvicorn server in a thread, a real
mosquitto broker. (No tests here; the other test_service_* modules import these.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the service extra is not installed")

import uvicorn
from fastapi.testclient import TestClient

from lmtwin.service import Settings, create_app
from lmtwin.service import broker as lib_broker
from lmtwin.service.broker import free_port


def wait_for(check: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check}")
        time.sleep(every)


@contextmanager
def client(settings: Settings, **kwargs: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings, **kwargs)) as c:
        yield c


@contextmanager
def live_server(settings: Settings, **kwargs: Any) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 (free port) in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings, **kwargs), host="127.0.0.1", port=port,
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class Mosquitto(lib_broker.Mosquitto):
    """The library's broker (``lmtwin.service.broker``); skips when mosquitto is missing."""

    def __init__(self, folder: Path) -> None:
        mosquitto_binary()
        super().__init__(folder)


def mosquitto_binary() -> str:
    path = lib_broker.mosquitto_binary()
    if path is None:
        pytest.skip("Debian package mosquitto is not installed "
                    "(scripts/system-deps.sh installs it)")
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path)
    b.start()
    yield b
    b.stop()


def linear_rows(n: int, episode: str = "e", start: int = 0) -> list[dict[str, Any]]:
    """Observations of x' = 0.9 x + u (u = 0.5 every third step)."""
    rows, x = [], 1.0
    for t in range(n):
        u = 0.5 if t % 3 == 0 else 0.0
        if t >= start:
            rows.append({"episode": episode, "t": float(t), "values": {"x": x, "u": u}})
        x = 0.9 * x + u
    return rows


XU = [{"name": "x", "role": "state", "unit": "m", "description": "position"},
      {"name": "u", "role": "action", "unit": "m", "description": "push",
       "lower": -10, "upper": 10}]
