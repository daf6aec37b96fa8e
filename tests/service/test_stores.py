"""One storage layer for the service: the twins' data and the service's tables in one
store, with explicit transactions (``store.transaction()``), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from lmtwin.service import Settings
from tests.service.support import XU, client, linear_rows
from tests.service.test_postgres import pg_url  # noqa: F401 (a real PostgreSQL server)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "t.db")
    return request.getfixturevalue("pg_url")


def test_ingest_rows_and_idempotency_record_commit_together(store_url):
    with client(Settings(store=store_url)) as c:
        name = f"k{time.time_ns() % 10**9}"
        c.post("/twins", json={"name": name, "variables": XU}).raise_for_status()
        c.post(f"/twins/{name}/observations/batch",
               json={"observations": linear_rows(3)}).raise_for_status()
        db = c.app.state.service.db
        db.execute("ALTER TABLE service_idempotency RENAME TO service_idempotency_gone")
        try:
            # the key's record cannot be written: the rows are not stored either
            r = c.post(f"/twins/{name}/observations/batch", headers={"Idempotency-Key": "a"},
                       json={"observations": linear_rows(6, start=3)})
            assert r.status_code == 503 and r.json()["error"] == "StoreError", r.text
            assert len(c.get(f"/twins/{name}/history").json()) == 3
        finally:
            db.execute("ALTER TABLE service_idempotency_gone RENAME TO service_idempotency")
        # the twin was reloaded from the store: the same rows are accepted now
        r = c.post(f"/twins/{name}/observations/batch", headers={"Idempotency-Key": "a"},
                   json={"observations": linear_rows(6, start=3)})
        assert r.status_code == 201 and r.json()["stored"] == 3
        assert c.get(f"/twins/{name}/state", params={"episode": "e"}).json()["t"] == 5.0


def test_concurrent_writers_and_readers_never_deadlock(tmp_path):
    """Ingest (a store transaction around the twin's write) beside every other kind of
    write and read on the same twins, from many threads at once."""
    import httpx

    from tests.service.support import live_server

    with live_server(Settings(store=str(tmp_path / "c.db"), insecure=True)) as url:
        for name in ("a", "b"):
            httpx.post(f"{url}/twins", json={"name": name, "variables": XU},
                       timeout=30).raise_for_status()
        failures: list[str] = []
        stop = time.monotonic() + 3.0

        def work(kind: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                i = 0
                while time.monotonic() < stop:
                    twin = "ab"[i % 2]
                    if kind == 0:
                        r = http.post(f"/twins/{twin}/observations/batch",
                                      json={"observations": [{"episode": f"w{i}", "t": t,
                                                              "values": {"x": t, "u": 0.0}}
                                                             for t in range(20)]},
                                      headers={"Idempotency-Key": f"k{i}"})
                    elif kind == 1:
                        r = http.post(f"/twins/{twin}/knowledge", json={"text": f"note {i}"})
                    elif kind == 2:
                        r = http.post(f"/twins/{twin}/variables", json={"name": f"v{i}"})
                    elif kind == 3:
                        r = http.get(f"/twins/{twin}/history", params={"limit": 10})
                    else:
                        r = http.post("/twins", json={"name": f"n{i}_{kind}", "variables": XU})
                    if r.status_code >= 400:
                        failures.append(f"{kind}: {r.status_code} {r.text[:200]}")
                    i += 1

        threads = [threading.Thread(target=work, args=(k,)) for k in (0, 0, 1, 2, 3, 4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not any(th.is_alive() for th in threads), "a request never finished"
        assert failures == []
