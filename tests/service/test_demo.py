"""``lmtwin serve --demo`` as a user runs it: its own mosquitto, the service, a simulated
device over MQTT; the twin's observations and scored predictions grow; SIGINT (Ctrl-C)
or SIGTERM stops everything, exit code 0, no mosquitto left behind (not even after a
SIGKILL)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.service.support import free_port, mosquitto_binary, wait_for


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["ctrl-c", "sigterm", "sigkill"])
def test_serve_demo_runs_and_stops_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    mosquitto_binary()  # skips without the Debian package
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("LMTWIN_ADMIN_KEY", "LMTWIN_STORE", "LMTWIN_MQTT_HOST"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmtwin.service", "--demo", "--duration", "60",
         "--port", str(port), "--rate", "20"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        url, admin = None, None
        while url is None:
            line = lines.get(timeout=30)
            if line.startswith("Admin key (this run only): "):
                admin = line.rsplit(" ", 1)[1].strip()
            if line.startswith("Dashboard: "):
                url = line.split(" ", 1)[1].strip()
        # secure by default: the demo runs with its own admin key, shown once
        assert admin, output
        auth = {"Authorization": f"Bearer {admin}"}
        assert url.startswith(f"http://127.0.0.1:{port}/twins/cancer_demo/dashboard?")
        base = f"http://127.0.0.1:{port}"
        brokers = [p for p in children(proc.pid)
                   if "mosquitto" in Path(f"/proc/{p}/cmdline").read_bytes().decode()]
        assert len(brokers) == 1, output

        def observations() -> int:
            return int(httpx.get(f"{base}/health", timeout=5).json()["counters"]["observations"])

        first = wait_for(observations, timeout=10)
        wait_for(lambda: observations() >= first + 20, timeout=10)
        health = httpx.get(f"{base}/health", timeout=5).json()
        assert health["mqtt"]["connected"] and health["mqtt"]["stored"] >= first + 20
        # the device has the twin predict each next day: scored, with intervals
        assert httpx.get(f"{base}/twins/cancer_demo/performance", timeout=5).status_code == 401
        perf = wait_for(lambda: (p := httpx.get(f"{base}/twins/cancer_demo/performance",
                                                headers=auth, timeout=5).json())["n_intervals"]
                        and p,
                        timeout=10)
        assert perf["scored"] > 0 and perf["mse"]["combined"] is not None
        # the noisy scan of v is fused with the twin's forecast
        episode = httpx.get(f"{base}/twins/cancer_demo", headers=auth,
                            timeout=5).json()["episodes"][0]
        state = httpx.get(f"{base}/twins/cancer_demo/state", params={"episode": episode},
                          headers=auth, timeout=5).json()
        assert set(state["fused"]) == {"v"} and state["fused"]["v"]["sd"] < 5.0
        assert state["fused"]["v"]["source"] == "twin"
        page = httpx.get(url, timeout=5)
        assert page.status_code == 200 and "cancer_demo" in page.text

        proc.send_signal(signum)
        # stopped cleanly; killed, it cannot clean up, yet its broker dies with it
        expected = -signal.SIGKILL if signum == signal.SIGKILL else 0
        assert proc.wait(15) == expected, "".join(output)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    wait_for(lambda: not any(alive(p) for p in brokers), timeout=5)
    assert "Traceback" not in "".join(output), "".join(output)
