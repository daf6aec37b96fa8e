"""Live updates over Server-Sent Events on a real uvicorn server, and a client that
disconnects mid-stream."""

from __future__ import annotations

import json
import socket
import threading

import httpx

from lmtwin.service import Settings
from tests.service.support import XU, linear_rows, live_server, wait_for


def _events(lines, wanted: str, limit: int = 50) -> dict:
    """The data of the next SSE event named ``wanted``."""
    kind = None
    for _, line in zip(range(limit), lines, strict=False):
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind == wanted:
            return json.loads(line[6:])
    raise AssertionError(f"no {wanted!r} event")


def test_sse_streams_observations_and_survives_disconnects(tmp_path):
    with live_server(Settings(store=str(tmp_path / "live.db"), insecure=True)) as url:
        http = httpx.Client(base_url=url, timeout=10)
        http.post("/twins", json={"name": "a", "variables": XU}).raise_for_status()
        http.post("/twins/a/observations/batch",
                  json={"observations": linear_rows(3)}).raise_for_status()
        with httpx.Client(base_url=url, timeout=httpx.Timeout(10)) as sse, sse.stream(
                "GET", "/twins/a/events", params={"episode": "e"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            first = _events(lines, "state")
            assert first["states"]["e"]["t"] == 2.0
            assert http.get("/twins/a").json()["subscribers"] == 1
            http.post("/twins/a/observations",
                      json={"episode": "e", "t": 3, "values": {"x": 7.5}}).raise_for_status()
            got = _events(lines, "observations")
            assert got["observations"] == [{"episode": "e", "t": 3.0, "values": {"x": 7.5}}]
            state = _events(lines, "state")
            assert state["states"]["e"]["values"]["x"] == 7.5
            http.post("/twins/a/knowledge", json={"text": "valve replaced"}).raise_for_status()
            assert _events(lines, "knowledge")["text"] == "valve replaced"
            # the client goes away in the middle of the stream
        wait_for(lambda: http.get("/twins/a").json()["subscribers"] == 0, timeout=10)
        # many clients that vanish at once leave nothing behind and ingest goes on
        clients = [httpx.Client(base_url=url, timeout=10) for _ in range(5)]
        streams = [c.stream("GET", "/twins/a/events") for c in clients]
        for s in streams:
            s.__enter__()
        wait_for(lambda: http.get("/twins/a").json()["subscribers"] == 5)
        for s, c in zip(streams, clients, strict=True):
            s.__exit__(None, None, None)
            c.close()
        wait_for(lambda: http.get("/twins/a").json()["subscribers"] == 0, timeout=10)
        r = http.post("/twins/a/observations", json={"episode": "e", "values": {"x": 1.0}})
        assert r.status_code == 201
        assert http.get("/twins/nope/events").status_code == 404
        # a client that sends half a request body and hangs up stores nothing
        port = int(url.rsplit(":", 1)[1])
        before = len(http.get("/twins/a/history").json())
        body = json.dumps({"observations": linear_rows(50, start=10)}).encode()
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"POST /twins/a/observations/batch HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:200])
        assert http.get("/health").status_code == 200
        assert len(http.get("/twins/a/history").json()) == before
        http.close()


def test_concurrent_duplicates_store_once(tmp_path):
    rows = linear_rows(20)
    with live_server(Settings(store=str(tmp_path / "dup.db"), insecure=True)) as url:
        httpx.post(f"{url}/twins", json={"name": "a", "variables": XU}).raise_for_status()
        results: list[dict] = []

        def deliver() -> None:
            r = httpx.post(f"{url}/twins/a/observations/batch", json={"observations": rows},
                           headers={"Idempotency-Key": "same"}, timeout=10)
            results.append({"status": r.status_code, **r.json()})

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
        assert [r["status"] for r in results] == [201] * 8
        assert sorted(r["replayed"] for r in results) == [False] + [True] * 7
        assert len(httpx.get(f"{url}/twins/a/history").json()) == 20
