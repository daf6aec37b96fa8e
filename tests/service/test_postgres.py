"""The PostgreSQL store and the service on it, against a real server started from
Debian's postgresql package on 127.0.0.1 (free port, throw-away data folder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lmtwin.service import Settings
from lmtwin.store import check_store
from tests.service.support import XU, client, free_port, linear_rows


def _bin() -> Path:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists():
            return folder
    pytest.skip("Debian package postgresql is not installed (scripts/system-deps.sh installs it)")
    raise AssertionError  # unreachable


# url -> ctl("stop") / ctl("start") of the server behind it
CONTROLS: dict[str, Callable[[str], None]] = {}


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server's URL (``CONTROLS[url]`` stops and starts it); other test
    modules import this fixture alone."""
    pg = _bin()
    folder = Path(tempfile.mkdtemp(prefix="lmtwin-pg-"))
    data, port = folder / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        shutil.chown(folder, "postgres")
        folder.chmod(0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True,  # noqa: E731
                                      capture_output=True, timeout=120)
    run(str(pg / "initdb"), "-D", str(data), "-U", "lmtwin", "--auth=trust", "-E", "UTF8")

    def ctl(action: str) -> None:
        options = ["-m", "fast"] if action == "stop" else [
            "-l", str(folder / "log"),
            "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=on"]
        run(str(pg / "pg_ctl"), "-D", str(data), "-w", "-t", "60", *options, action)

    ctl("start")
    try:
        run(str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "lmtwin", "twins")
        url = f"postgresql://lmtwin@127.0.0.1:{port}/twins"
        CONTROLS[url] = ctl
        yield url
    finally:
        run(str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_postgres_store_conforms(pg_url):
    from lmtwin.store.postgres import PostgresStore

    store = PostgresStore(pg_url)
    check_store(store)
    store.close()


def test_service_on_postgres_survives_restart(pg_url):
    settings = Settings(store=pg_url)
    with client(settings) as c:
        assert c.post("/twins", json={"name": "pg", "variables": XU}).status_code == 201
        r = c.post("/twins/pg/observations/batch", json={"observations": linear_rows(20)},
                   headers={"Idempotency-Key": "pg-1"})
        assert r.status_code == 201 and r.json()["stored"] == 20
        c.post("/twins/pg/knowledge", json={"text": "stored in PostgreSQL"})
    with client(settings) as c:  # a new process would see the same: all state is in PG
        assert "pg" in c.get("/twins").json()
        assert c.get("/twins/pg/state", params={"episode": "e"}).json()["t"] == 19.0
        again = c.post("/twins/pg/observations/batch", json={"observations": linear_rows(20)},
                       headers={"Idempotency-Key": "pg-1"})
        assert again.json()["replayed"] is True
        assert len(c.get("/twins/pg/history").json()) == 20
        p = c.post("/twins/pg/predict", json={"state": {"x": 1.0}, "action": {"u": 0.5}})
        assert p.status_code == 200 and abs(p.json()["mean"]["x"] - 1.4) < 0.2
        assert c.get("/twins/pg/knowledge").json()[0]["text"] == "stored in PostgreSQL"


def test_a_lost_postgres_connection_is_a_store_error_then_recovers(pg_url):
    from lmtwin.errors import StoreError
    from lmtwin.service.stores import open_store

    url, ctl = pg_url, CONTROLS[pg_url]
    with pytest.raises(StoreError, match="cannot connect"):
        open_store(f"postgresql://lmtwin@127.0.0.1:{free_port()}/twins")
    with client(Settings(store=url)) as c:
        c.post("/twins", json={"name": "lost", "variables": XU}).raise_for_status()
        ctl("stop")
        try:
            r = c.post("/twins/lost/observations", json={"values": {"x": 1.0}})
            assert r.status_code == 503 and r.json()["error"] == "StoreError", r.text
            assert c.get("/twins/lost/history").json()["error"] == "StoreError"
        finally:
            ctl("start")
        # the server is back: the next requests open new connections and work
        r = c.post("/twins/lost/observations", json={"values": {"x": 1.0}})
        if r.status_code == 503:  # the first call may still see the old, dead connection
            r = c.post("/twins/lost/observations", json={"values": {"x": 1.0}})
        assert r.status_code == 201, r.text
        assert len(c.get("/twins/lost/history").json()) == 1
