"""Helpers for the service tests: free ports, a real uvicorn server in a thread, a real
mosquitto broker, a real headless Chromium. (No tests here; the other test_service_*
modules import these.)"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

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


TEST_ADMIN = "test-admin-key-0123456789abcdef"


@contextmanager
def client(settings: Settings, raise_server_exceptions: bool = True,
           **kwargs: Any) -> Iterator[TestClient]:
    """The app in-process. Settings with neither an admin key nor ``insecure`` get
    ``TEST_ADMIN``, sent by default (tests of authentication set their own key)."""
    headers = {}
    if settings.admin_key is None and not settings.insecure:
        settings = settings.model_copy(update={"admin_key": SecretStr(TEST_ADMIN)})
        headers = {"Authorization": f"Bearer {TEST_ADMIN}"}
    with TestClient(create_app(settings, **kwargs), headers=headers,
                    raise_server_exceptions=raise_server_exceptions) as c:
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


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Chromium:
    """Headless Chromium spoken to over the DevTools pipe (``--remote-debugging-pipe``: fd 3
    in, fd 4 out, so no extra library); skips when chromium is missing. ``flags`` are
    added to ``FLAGS``."""

    def __init__(self, profile: Path, flags: Sequence[str] = ()) -> None:
        path = shutil.which("chromium") or shutil.which("chromium-browser")
        if path is None:
            pytest.skip("Debian package chromium is not installed "
                        "(scripts/system-deps.sh installs it)")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends become fds 3 and 4
            # via copies above 9: a pipe end may itself be fd 3 or 4 (a fresh process),
            # and dup2 onto itself would neither move it nor make it inheritable
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [path, *FLAGS, *flags, f"--user-data-dir={profile}", "--window-size=1280,900",
             "--remote-debugging-pipe", "about:blank"],
            # close_fds would close fds 3 and 4 after wire() ran; os.pipe() ends are
            # non-inheritable, so only the two dup2 copies reach chromium
            preexec_fn=wire, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise AssertionError(f"{method}: {reply['error']}")
                    result: dict[str, Any] = reply["result"]
                    return result
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise AssertionError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raise AssertionError(f"no answer to {method}")

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, session=self.session, **params)

    def eval(self, expression: str) -> Any:
        out = self.page("Runtime.evaluate", expression=expression, returnByValue=True)
        return out["result"].get("value")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


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
