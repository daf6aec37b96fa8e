"""API keys: read/write scopes per twin, hashed at rest, 401/403, no secrets in logs."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from lmtwin.service import Settings
from tests.service.support import XU, client, linear_rows

ADMIN = "admin-secret-for-tests-0123456789"


@pytest.fixture
def secured(tmp_path):
    with client(Settings(store=str(tmp_path / "s.db"), admin_key=ADMIN)) as c:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        for name in ("a", "b"):
            assert c.post("/twins", json={"name": name, "variables": XU},
                          headers=admin).status_code == 201
        yield c, admin, tmp_path / "s.db"


def _key(c, admin, twins, scopes):
    r = c.post("/keys", json={"name": "k", "twins": twins, "scopes": scopes}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


def test_missing_and_unknown_keys_are_401(secured):
    c, _, _ = secured
    r = c.get("/twins/a")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.get("/twins/a", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.get("/twins/a", headers={"X-API-Key": "x" * 500}).status_code == 401
    assert c.post("/twins", json={"name": "c"}).status_code == 401


def test_scopes_per_twin_are_403(secured):
    c, admin, _ = secured
    reader = {"X-API-Key": _key(c, admin, ["a"], ["read"])["key"]}
    writer = {"Authorization": "Bearer " + _key(c, admin, ["a"], ["write"])["key"]}
    both = {"Authorization": "Bearer " + _key(c, admin, ["*"], ["read", "write"])["key"]}
    obs = {"observations": linear_rows(3)}
    assert c.post("/twins/a/observations/batch", json=obs, headers=writer).status_code == 201
    assert c.post("/twins/a/observations/batch", json=obs, headers=reader).status_code == 403
    assert c.post("/twins/b/observations/batch", json=obs, headers=writer).status_code == 403
    assert c.get("/twins/a/state", params={"episode": "e"}, headers=reader).status_code == 200
    assert c.get("/twins/b/state", headers=reader).status_code == 403
    assert c.get("/twins/a/history", headers=writer).status_code == 403
    assert c.post("/twins/b/observations/batch", json=obs, headers=both).status_code == 201
    assert c.get("/twins", headers=reader).json() == ["a"]
    assert c.get("/twins", headers=both).json() == ["a", "b"]
    # managing twins and keys needs the admin key
    assert c.post("/twins", json={"name": "c"}, headers=both).status_code == 403
    assert c.post("/keys", json={"name": "x", "twins": ["*"], "scopes": ["read"]},
                  headers=both).status_code == 403
    assert c.delete("/twins/a", headers=writer).status_code == 403
    # the events stream and dashboard accept the key as a query parameter (EventSource)
    key = reader["X-API-Key"]
    assert c.get("/twins/a/dashboard", params={"key": key}).status_code == 200
    assert c.get("/twins/b/dashboard", params={"key": key}).status_code == 403
    assert c.get("/twins/a/state", params={"key": key}).status_code == 401


def test_revoked_key_is_refused(secured):
    c, admin, _ = secured
    created = _key(c, admin, ["a"], ["read"])
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert c.get("/twins/a", headers=headers).status_code == 200
    assert c.delete(f"/keys/{created['id']}", headers=admin).status_code == 204
    assert c.get("/twins/a", headers=headers).status_code == 401
    assert c.delete(f"/keys/{created['id']}", headers=admin).status_code == 404
    listed = c.get("/keys", headers=admin).json()
    assert listed[0]["revoked_at"] is not None and listed[0]["key"] is None


def test_keys_are_hashed_and_never_logged(secured, caplog):
    c, admin, db = secured
    caplog.set_level(logging.DEBUG)
    created = _key(c, admin, ["a"], ["read", "write"])
    secret = created["key"]
    c.get("/twins/a/dashboard", params={"key": secret})
    c.get("/twins/a", headers={"Authorization": f"Bearer {secret}"})
    c.get("/twins/a", headers={"Authorization": "Bearer wrong-key"})
    with sqlite3.connect(db) as con:
        dump = "\n".join(con.iterdump())
    assert secret not in dump and ADMIN not in dump
    assert created["id"] in dump  # the key's id and hash are stored
    # the server's records (the test client logs its own URLs, query included)
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if r.name.startswith(("lmtwin", "uvicorn", "fastapi")))
    assert "/twins/a/dashboard" in logged  # requests are logged, without their query
    assert secret not in logged and ADMIN not in logged and "wrong-key" not in logged
    assert secret not in repr(Settings(store="memory", admin_key=ADMIN))
    assert ADMIN not in repr(Settings(store="memory", admin_key=ADMIN))


def test_secure_by_default_generates_an_admin_key_once(tmp_path, capsys):
    from fastapi.testclient import TestClient

    from lmtwin.service import create_app

    settings = Settings(store=str(tmp_path / "g.db"))  # no admin key configured
    with TestClient(create_app(settings)) as c:
        printed = capsys.readouterr().err
        key = c.app.state.service.generated_admin_key
        assert key and key in printed  # shown once, on the terminal
        r = c.post("/twins", json={"name": "open", "variables": XU})
        assert r.status_code == 401 and r.json()["error"] == "Unauthorized"
        assert c.get("/twins").status_code == 401
        admin = {"Authorization": f"Bearer {key}"}
        assert c.post("/twins", json={"name": "mine", "variables": XU},
                      headers=admin).status_code == 201
        listed = c.get("/keys", headers=admin).json()
        assert [k["scopes"] for k in listed] == [["admin"]]
    with sqlite3.connect(tmp_path / "g.db") as con:
        assert key not in "\n".join(con.iterdump())  # only its hash is stored
    # the next start keeps the same key and prints nothing
    with TestClient(create_app(settings)) as c:
        assert c.app.state.service.generated_admin_key is None
        assert key not in capsys.readouterr().err
        assert c.get("/twins/mine", headers={"Authorization": f"Bearer {key}"}
                     ).status_code == 200
        assert c.post("/twins", json={"name": "open"}).status_code == 401


def test_insecure_only_on_a_loopback_address(tmp_path):
    import os
    import subprocess
    import sys

    for host in ("127.0.0.1", "::1", "localhost"):
        Settings(store="memory", insecure=True).check_bind(host)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.org"):
        with pytest.raises(ValueError, match="loopback"):
            Settings(store="memory", insecure=True).check_bind(host)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMTWIN_")}
    with pytest.MonkeyPatch.context() as mp:  # the environment variable says the same
        mp.setenv("LMTWIN_INSECURE", "1")
        with pytest.raises(ValueError, match="loopback"):
            Settings.from_env().check_bind("0.0.0.0")
    # as a user runs it: a clear error, exit code 2, nothing started
    r = subprocess.run([sys.executable, "-m", "lmtwin.service", "--insecure", "--host",
                        "0.0.0.0", "--port", "9", "--store", str(tmp_path / "x.db")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "loopback" in r.stdout + r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "x.db").exists()
    # an insecure in-process app: anyone may write (what --insecure on 127.0.0.1 means)
    with client(Settings(store="memory", insecure=True)) as c:
        assert c.post("/twins", json={"name": "dev", "variables": XU}).status_code == 201
