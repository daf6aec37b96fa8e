import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lmtwin import MemoryStore, SQLiteStore
from lmtwin.store import check_store


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_store_conformance(kind, tmp_path):
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "t.db")
    check_store(store)
    store.close()


def test_sqlite_is_wal_and_reopens(tmp_path):
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    check_store(store)
    store.close()
    again = SQLiteStore(path)
    assert again.twins()
    again.close()


def test_committed_observation_survives_kill(tmp_path):
    """A child process commits observations, prints, then is SIGKILLed mid-loop."""
    path = tmp_path / "kill.db"
    code = textwrap.dedent(f"""
        import sys, time
        from lmtwin import Twin, Variable, Persistence
        twin = Twin("k", variables=[Variable("x")], store={str(path)!r},
                    predictors=[Persistence()])
        for i in range(100000):
            twin.observe({{"x": float(i)}}, t=float(i))
            print(i, flush=True)
            if i > 50:
                time.sleep(0.001)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 200:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    from lmtwin import Persistence, Twin

    twin = Twin("k", store=path, predictors=[Persistence()])
    stored = [o.values["x"] for o in twin.history()]
    assert len(stored) >= acknowledged + 1
    assert stored[: acknowledged + 1] == [float(i) for i in range(acknowledged + 1)]
    assert twin.schema.names() == ["x"]
