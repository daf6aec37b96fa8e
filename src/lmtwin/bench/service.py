"""``lmtwin bench service``: ingest and read load on 127.0.0.1, and a SIGKILL test.

Starts the real service (``python -m lmtwin.service``) on an SQLite file and, when
mosquitto is installed, a real broker; load comes from client threads in this process.
Bounded in count and time; loopback only. Targets (issue 4): >= 1000 observations/s over
HTTP batches and over MQTT, ack p95 < 100 ms, state read p95 < 20 ms while ingesting,
every acknowledged observation present after ``kill -9`` (10 rounds out of 10).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lmtwin.service.broker import Mosquitto, free_port

OFFERED = 2000.0  # obs/s: twice the target rate, for the latency measurements
VARIABLES = [{"name": "x", "role": "state"}, {"name": "u", "role": "action"}]
# the benchmark's broker settings: a deep queue for bursts, TCP_NODELAY
BROKER_CONF = ("max_queued_messages 100000", "set_tcp_nodelay true")


def _wait(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the service did not come up")
        time.sleep(0.05)


class Server:
    """The service in its own process."""

    def __init__(self, store: Path, mqtt_port: int | None = None) -> None:
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LMTWIN_STORE": str(store), "LMTWIN_LOG_LEVEL": "warning"}
        env.pop("LMTWIN_ADMIN_KEY", None)
        # on 127.0.0.1 without keys: the benchmark measures ingest, not authentication
        args = [sys.executable, "-m", "lmtwin.service", "--port", str(self.port), "--insecure"]
        if mqtt_port is not None:
            args += ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(mqtt_port)]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(up, 60)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _rows(episode: str, start: int, n: int) -> list[dict[str, Any]]:
    return [{"episode": episode, "t": float(t), "values": {"x": float(np.sin(t / 50)),
                                                             "u": float(t % 3 == 0)}}
            for t in range(start, start + n)]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def http_ingest(url: str, twin: str, seconds: float, clients: int, batch: int,
                reads: bool = True, offered: float | None = None,
                tag: str = "h") -> dict[str, Any]:
    """Clients post batches for ``seconds`` (as fast as answered, or paced to ``offered``
    observations/s in all); one more client reads the state meanwhile."""
    import httpx

    acks: list[float] = []
    read_ms: list[float] = []
    stored = [0]
    lock = threading.Lock()
    stop = threading.Event()

    every = None if offered is None else clients * batch / offered

    def writer(i: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            n, due = 0, time.perf_counter()
            while not stop.is_set():
                if every is not None:
                    due += every
                    time.sleep(max(0.0, due - time.perf_counter()))
                body = {"observations": _rows(f"{tag}{i}", n, batch)}
                started = time.perf_counter()
                r = http.post(f"/twins/{twin}/observations/batch", json=body)
                elapsed = 1000 * (time.perf_counter() - started)
                if r.status_code != 201:
                    raise RuntimeError(f"ingest failed: {r.status_code} {r.text[:200]}")
                with lock:
                    acks.append(elapsed)
                    stored[0] += batch
                n += batch

    def reader() -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                started = time.perf_counter()
                r = http.get(f"/twins/{twin}/state", params={"episode": f"{tag}0"})
                read_ms.append(1000 * (time.perf_counter() - started))
                r.raise_for_status()
                time.sleep(0.01)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(clients)]
    if reads:
        threads.append(threading.Thread(target=reader))
    started = time.perf_counter()
    for th in threads:
        th.start()
    time.sleep(seconds)
    stop.set()
    for th in threads:
        th.join(30)
    wall = time.perf_counter() - started
    return {"observations": stored[0], "seconds": wall, "rate": stored[0] / wall,
            "requests": len(acks), "batch": batch, "clients": clients, "offered": offered,
            "ack_p50_ms": _pct(acks, 50), "ack_p95_ms": _pct(acks, 95),
            "ack_max_ms": max(acks, default=float("nan")),
            "reads": len(read_ms), "read_p50_ms": _pct(read_ms, 50),
            "read_p95_ms": _pct(read_ms, 95)}


def mqtt_ingest(url: str, broker_port: int, twin: str, seconds: float, batch: int,
                in_flight: int = 4, offered: float | None = None,
                tag: str = "m") -> dict[str, Any]:
    """Publish batches (QoS 1, with ids; at most ``in_flight`` unconfirmed, or paced to
    ``offered`` observations/s) and time each until the service confirms it on
    ``lmtwin/<twin>/acks``, i.e. until it is committed."""
    import paho.mqtt.client as mqtt

    sent: dict[str, float] = {}
    acks: list[float] = []
    stored = [0]
    done = threading.Condition()

    def on_ack(client: Any, userdata: Any, msg: Any) -> None:
        data = json.loads(msg.payload)
        with done:
            t0 = sent.pop(data["id"], None)
            if t0 is not None:
                acks.append(1000 * (time.perf_counter() - t0))
                stored[0] += data["stored"]
            done.notify_all()

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"lmtwin-bench-{tag}")
    pub.on_message = on_ack
    pub.max_inflight_messages_set(100)
    pub.connect("127.0.0.1", broker_port)
    pub.subscribe(f"lmtwin/{twin}/acks", qos=0)
    pub.loop_start()
    time.sleep(0.3)
    started = due = time.perf_counter()
    n = 0
    while time.perf_counter() - started < seconds:
        if offered is not None:
            due += batch / offered
            time.sleep(max(0.0, due - time.perf_counter()))
        with done:
            done.wait_for(lambda: len(sent) < in_flight, timeout=10)
            key = f"{tag}{n}"
            sent[key] = time.perf_counter()
        pub.publish(f"lmtwin/{twin}/observations",
                    json.dumps({"id": key, "observations": _rows(tag, n, batch)}), qos=1)
        n += batch
    with done:
        done.wait_for(lambda: not sent, timeout=30)
    wall = time.perf_counter() - started
    pub.loop_stop()
    pub.disconnect()
    return {"observations": stored[0], "seconds": wall, "rate": stored[0] / wall,
            "messages": len(acks), "batch": batch, "lost": len(sent), "offered": offered,
            "ack_p50_ms": _pct(acks, 50), "ack_p95_ms": _pct(acks, 95),
            "ack_max_ms": max(acks, default=float("nan"))}


def kill_round(folder: Path, seed: int, writers: int = 3, batch: int = 50) -> dict[str, Any]:
    """Ingest from several clients, SIGKILL the server mid-stream, restart, and check
    that every acknowledged observation is stored and every batch is whole or absent."""
    import httpx

    store = folder / f"kill-{seed}.db"
    server = Server(store)
    httpx.post(f"{server.url}/twins", json={"name": "k", "variables": VARIABLES}
               ).raise_for_status()
    acked: dict[str, list[int]] = {f"w{i}": [] for i in range(writers)}
    sent: dict[str, list[int]] = {ep: [] for ep in acked}
    stop = threading.Event()

    def post(http: Any, episode: str, n: int) -> Any:
        return http.post("/twins/k/observations/batch",
                         json={"observations": _rows(episode, n, batch)},
                         headers={"Idempotency-Key": f"{episode}-{n}"})

    def writer(episode: str) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            n = 0
            while not stop.is_set():
                sent[episode].append(n)
                try:
                    r = post(http, episode, n)
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    acked[episode].append(n)
                n += batch

    threads = [threading.Thread(target=writer, args=(ep,)) for ep in acked]
    for th in threads:
        th.start()
    time.sleep(random.Random(seed).uniform(0.5, 1.5))
    server.kill()
    stop.set()
    for th in threads:
        th.join(10)
    server = Server(store)
    ok, exactly_once, n_acked, n_stored = True, True, 0, 0
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for episode, starts in acked.items():
                hist = http.get("/twins/k/history",
                                params={"episode": episode, "limit": 100_000}).json()
                have = {int(o["t"]) for o in hist}
                want = {t for s in starts for t in range(s, s + batch)}
                n_acked += len(want)
                n_stored += len(have)
                whole = have == set(range(len(have))) and len(have) % batch == 0
                ok = ok and want <= have and whole
                # retry everything sent: each batch is replayed or stored, never twice
                for n in sent[episode]:
                    exactly_once = exactly_once and post(http, episode, n).status_code == 201
        with sqlite3.connect(store) as db:
            rows, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT episode || ':' || t)"
                                        " FROM observations").fetchone()
        n_sent = sum(len(v) for v in sent.values()) * batch
        exactly_once = exactly_once and rows == 2 * distinct == 2 * n_sent
    finally:
        server.stop()
    return {"ok": ok, "exactly_once": exactly_once, "acknowledged": n_acked,
            "stored": n_stored}


def run(quick: bool = False, out: Path = Path("results"),
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    import httpx

    seconds = 4.0 if quick else 10.0
    rounds = 3 if quick else 10
    folder = Path(tempfile.mkdtemp(prefix="lmtwin-bench-"))
    results: dict[str, Any] = {"cores": os.cpu_count(), "quick": quick,
                               "load_before": os.getloadavg()[0]}
    broker = None
    try:
        try:
            broker = Mosquitto(folder, extra=BROKER_CONF)
        except FileNotFoundError:
            progress("mosquitto not installed: skipping MQTT")
        else:
            broker.start()
        server = Server(folder / "bench.db", broker.port if broker else None)
        try:
            for twin in ("b", "m"):
                httpx.post(f"{server.url}/twins", json={"name": twin, "variables": VARIABLES}
                           ).raise_for_status()
            noisy = [{**v, "noise": {"sensor": 0.05, "process": 0.01}} if v["name"] == "x"
                     else v for v in VARIABLES]
            httpx.post(f"{server.url}/twins", json={"name": "n", "variables": noisy}
                       ).raise_for_status()
            progress(f"HTTP batches, as fast as answered: {seconds:.0f} s, 2 clients x 100")
            results["http_max"] = http_ingest(server.url, "b", seconds, clients=2, batch=100,
                                              reads=False, tag="max")
            progress(f"  {results['http_max']['rate']:.0f} obs/s, ack p95 "
                     f"{results['http_max']['ack_p95_ms']:.1f} ms")
            progress("HTTP batches into a twin whose x declares sensor noise (the filter "
                     "forecasts each reading)")
            results["http_noisy"] = http_ingest(server.url, "n", seconds, clients=2,
                                                batch=100, reads=False, tag="noisy")
            progress(f"  {results['http_noisy']['rate']:.0f} obs/s, ack p95 "
                     f"{results['http_noisy']['ack_p95_ms']:.1f} ms")
            progress(f"HTTP batches at {OFFERED} obs/s offered, with state reads")
            results["http"] = http_ingest(server.url, "b", seconds, clients=2, batch=100,
                                          offered=OFFERED)
            progress(f"  {results['http']['rate']:.0f} obs/s, ack p95 "
                     f"{results['http']['ack_p95_ms']:.1f} ms, state read p95 "
                     f"{results['http']['read_p95_ms']:.1f} ms")
            if broker is not None:
                progress(f"MQTT batches, 4 in flight: {seconds:.0f} s, 50 per message")
                results["mqtt_max"] = mqtt_ingest(server.url, broker.port, "m", seconds,
                                                  batch=50, tag="mmax")
                progress(f"  {results['mqtt_max']['rate']:.0f} obs/s, ack p95 "
                         f"{results['mqtt_max']['ack_p95_ms']:.1f} ms")
                progress(f"MQTT batches at {OFFERED} obs/s offered")
                results["mqtt"] = mqtt_ingest(server.url, broker.port, "m", seconds, batch=50,
                                              offered=OFFERED, in_flight=100)
                progress(f"  {results['mqtt']['rate']:.0f} obs/s, ack p95 "
                         f"{results['mqtt']['ack_p95_ms']:.1f} ms")
            idle: list[float] = []
            with httpx.Client(base_url=server.url) as http:
                for _ in range(300):
                    t0 = time.perf_counter()
                    http.get("/twins/b/state", params={"episode": "h0"}).raise_for_status()
                    time.sleep(0.002)
                    idle.append(1000 * (time.perf_counter() - t0))
            results["state_idle"] = {"reads": len(idle), "p50_ms": _pct(idle, 50),
                                     "p95_ms": _pct(idle, 95)}
        finally:
            server.stop()
        progress(f"SIGKILL during batch ingest: {rounds} rounds")
        kills = [kill_round(folder, seed) for seed in range(rounds)]
        results["kill"] = {"rounds": rounds, "passed": sum(k["ok"] for k in kills),
                           "exactly_once": sum(k["exactly_once"] for k in kills),
                           "acknowledged": sum(k["acknowledged"] for k in kills),
                           "details": kills}
        progress(f"  {results['kill']['passed']}/{rounds} rounds kept every acknowledged "
                 "observation")
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    results["load_after"] = os.getloadavg()[0]
    (out / "service.json").write_text(json.dumps(results, indent=2))
    (out / "service.md").write_text(report(results))
    return results


def report(r: dict[str, Any]) -> str:
    def row(name: str, value: str, target: str, ok: bool) -> str:
        return f"| {name} | {value} | {target} | {'yes' if ok else '**no**'} |"

    h, hm = r["http"], r["http_max"]
    lines = [
        "# lmtwin service benchmark", "",
        f"`lmtwin bench service{' --quick' if r['quick'] else ''}` on {r['cores']} cores: the "
        "service (`python -m lmtwin.service --insecure`, SQLite WAL store with synchronous=FULL, "
        "numeric predictors) and the "
        "load generator share the machine, on 127.0.0.1; load average when it started: "
        f"{r['load_before']:.1f}"
        + (f", when it ended: {r['load_after']:.1f}" if "load_after" in r else "")
        + " (other work on the machine slows every number here).", "",
        "| measure | result | target | met |", "|---|---|---|---|",
        row("HTTP batch ingest, as fast as answered", f"{hm['rate']:.0f} obs/s "
            f"({hm['clients']} clients x {hm['batch']} per batch, {hm['seconds']:.0f} s; "
            f"ack p95 {hm['ack_p95_ms']:.1f} ms)", ">= 1000 obs/s", hm["rate"] >= 1000),
        *([row("HTTP batch ingest with data assimilation (x's sensor noise declared: one "
               "forecast by persistence and ridge per reading)",
               f"{r['http_noisy']['rate']:.0f} obs/s (ack p95 "
               f"{r['http_noisy']['ack_p95_ms']:.1f} ms)", ">= 1000 obs/s",
               r["http_noisy"]["rate"] >= 1000)] if "http_noisy" in r else []),
        row(f"HTTP ack latency p95 at {h['offered']:.0f} obs/s offered",
            f"{h['ack_p95_ms']:.1f} ms (p50 {h['ack_p50_ms']:.1f}, max {h['ack_max_ms']:.1f}; "
            f"{h['rate']:.0f} obs/s served)", "< 100 ms", h["ack_p95_ms"] < 100),
        row(f"state read p95 while ingesting {h['offered']:.0f} obs/s",
            f"{h['read_p95_ms']:.1f} ms ({h['reads']} reads, "
            f"p50 {h['read_p50_ms']:.1f})", "< 20 ms", h["read_p95_ms"] < 20),
        row("state read p95 idle", f"{r['state_idle']['p95_ms']:.1f} ms", "< 20 ms",
            r["state_idle"]["p95_ms"] < 20),
    ]
    if "mqtt" in r:
        m, mm = r["mqtt"], r["mqtt_max"]
        lines += [
            row("MQTT ingest, 4 messages in flight", f"{mm['rate']:.0f} obs/s "
                f"({mm['batch']} per message, {mm['messages']} messages, {mm['lost']} "
                f"unconfirmed; ack p95 {mm['ack_p95_ms']:.1f} ms)", ">= 1000 obs/s",
                mm["rate"] >= 1000),
            row(f"MQTT ack latency p95 at {m['offered']:.0f} obs/s offered (publish to "
                "commit confirmed)", f"{m['ack_p95_ms']:.1f} ms (p50 {m['ack_p50_ms']:.1f}; "
                f"{m['rate']:.0f} obs/s served, {m['lost']} unconfirmed)", "< 100 ms",
                m["ack_p95_ms"] < 100),
        ]
    else:
        lines.append("| MQTT ingest | not run (mosquitto not installed) | >= 1000 obs/s | - |")
    k = r["kill"]
    lines += [
        row("kill -9 during batch ingest", f"{k['passed']}/{k['rounds']} rounds kept all "
            f"{k['acknowledged']} acknowledged observations", "10/10",
            k["passed"] == k["rounds"] == 10),
        row("retry of every batch sent, after the kill (idempotency keys)",
            f"{k['exactly_once']}/{k['rounds']} rounds: each batch replayed or stored, none "
            "twice", "exactly once", k["exactly_once"] == k["rounds"]),
        "",
        "Ack latency is measured by the client from sending a batch to its 201 (HTTP), or "
        "from publishing to the service's confirmation on `lmtwin/<twin>/acks`, sent after "
        "the commit (MQTT). State reads are `GET /twins/<name>/state`, answered from the "
        "service's cache of each episode's latest values.", "",
        "The dashboard, as headless Chromium renders it in "
        "`tests/service/test_dashboard.py` (saved to `out/service/dashboard.png`):", "",
        "![dashboard](service-dashboard.png)", "",
    ]
    return "\n".join(lines)
