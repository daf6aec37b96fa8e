"""A server SIGKILLed during batch ingest: after a restart, every acknowledged
observation is there, and every batch is there whole or not at all."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.service.support import XU, free_port, wait_for


def start_server(store: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LMTWIN_STORE": str(store), "LMTWIN_LOG_LEVEL": "warning"}
    env.pop("LMTWIN_ADMIN_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "lmtwin.service", "--port", str(port),
                             "--insecure"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=30, every=0.1)
    return proc


def rows(episode: str, lo: int, hi: int) -> list[dict]:
    return [{"episode": episode, "t": float(t), "values": {"x": t * 0.1, "u": 0.0}}
            for t in range(lo, hi)]


def writer(url: str, episode: str, sent: list[tuple[int, int]], acked: list[tuple[int, int]],
           stop: threading.Event, batch: int = 50) -> None:
    """Send consecutive batches until the server dies; record each sent and acknowledged."""
    with httpx.Client(base_url=url, timeout=5) as http:
        n = 0
        while not stop.is_set():
            sent.append((n, n + batch))
            try:
                r = http.post("/twins/k/observations/batch",
                              json={"observations": rows(episode, n, n + batch)},
                              headers={"Idempotency-Key": f"{episode}-{n}"})
            except httpx.HTTPError:
                return
            if r.status_code == 201:
                acked.append((n, n + batch))
            n += batch


def test_sigkill_during_batch_ingest_loses_no_acknowledged_observation(tmp_path):
    store, port = tmp_path / "kill.db", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(store, port)
    try:
        httpx.post(f"{url}/twins", json={"name": "k", "variables": XU}).raise_for_status()
        stop = threading.Event()
        acked: dict[str, list[tuple[int, int]]] = {f"w{i}": [] for i in range(3)}
        sent: dict[str, list[tuple[int, int]]] = {ep: [] for ep in acked}
        threads = [threading.Thread(target=writer, args=(url, ep, sent[ep], acked[ep], stop))
                   for ep in acked]
        for th in threads:
            th.start()
        wait_for(lambda: sum(len(a) for a in acked.values()) >= 20, timeout=30)
        proc.send_signal(signal.SIGKILL)  # mid-ingest: writers are sending right now
        proc.wait(10)
        stop.set()
        for th in threads:
            th.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = start_server(store, port)
    try:
        for episode, batches in acked.items():
            # the first request loads the twin (it scores its recent history): give it time
            hist = httpx.get(f"{url}/twins/k/history", timeout=120,
                             params={"episode": episode, "limit": 100_000}).json()
            stored = {int(o["t"]) for o in hist}
            for lo, hi in batches:  # every acknowledged observation survived
                assert set(range(lo, hi)) <= stored, (episode, lo, hi)
            # all or none: what is stored is whole batches, consecutive from 0
            assert stored == set(range(len(stored))) and len(stored) % 50 == 0
            # exactly once: a retry of every batch sent, the one in flight at the kill
            # included, is either recognised (it was committed) or stored now, never twice
            replayed = []
            for lo, hi in sent[episode]:
                r = httpx.post(f"{url}/twins/k/observations/batch", timeout=60,
                               json={"observations": rows(episode, lo, hi)},
                               headers={"Idempotency-Key": f"{episode}-{lo}"})
                assert r.status_code == 201, r.text
                replayed.append(r.json()["replayed"])
            assert all(replayed[:len(batches)]) and not any(replayed[len(stored) // 50:])
            with sqlite3.connect(store) as db:
                n_rows, n_distinct = db.execute(
                    "SELECT COUNT(*), COUNT(DISTINCT t) FROM observations WHERE twin = 'k'"
                    " AND episode = ?", (episode,)).fetchone()
            assert n_distinct == 50 * len(sent[episode]) and n_rows == 2 * n_distinct
        # the restarted service takes new data where each episode left off
        r = httpx.post(f"{url}/twins/k/observations", json={"episode": "w0", "values": {"x": 1}})
        assert r.status_code == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
