"""``lmtwin serve --demo``: the service with a demo twin fed live over MQTT.

A local mosquitto (unless a broker is given), the service on 127.0.0.1, and a simulated
device: lung-cancer patients (``lmtwin.systems.cancer``) one after another, each day
published to ``PREFIX/cancer_demo/observations``. Before each next day arrives the
device asks the twin over HTTP for its prediction (scored against that day), so the
dashboard shows predictions with intervals and each predictor's error. After
``RADIO_AFTER`` patients radiotherapy starts: the ``ra`` action is added to the schema
and a knowledge note announces it, while the twin runs. The tumour volume is measured by
a scan with noise of spread ``SCAN_NOISE``, which the twin declares: its state serves
the volume fused with its own forecast beside the raw scan.

Ctrl-C (SIGINT) or SIGTERM stops the device, the service and the broker, in that order.
"""

from __future__ import annotations

import json
import logging
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from pydantic import SecretStr

from lmtwin.demo import NOTE
from lmtwin.schema import Variable
from lmtwin.systems.cancer import CANCER_VARIABLES, Variant, simulate_patients

log = logging.getLogger("lmtwin.service.demo")

TWIN = "cancer_demo"
RADIO_AFTER = 3  # patients before radiotherapy starts
STEPS = 60  # days per patient
SCAN_NOISE = 5.0  # cm3, spread of the tumour-volume scan


def variable_json(v: Variable) -> dict[str, Any]:
    return {"name": v.name, "role": v.role, "unit": v.unit, "description": v.description,
            "lower": v.lower, "upper": v.upper}


class Device:
    """The simulated device: publishes patients' days over MQTT, one after another, and
    has the twin predict each next day over HTTP before publishing it.

    Args:
        url: the service's base URL.
        mqtt_host, mqtt_port, prefix: the broker and topic prefix the service reads.
        rate: observations per second.
        headers: HTTP headers (the admin key when authentication is on).
        episode_prefix: put before ``patient-<i>`` (for a store that already has them).
        say: where progress lines go.
    """

    def __init__(self, url: str, mqtt_host: str, mqtt_port: int, prefix: str = "lmtwin",
                 rate: float = 4.0, headers: dict[str, str] | None = None,
                 episode_prefix: str = "", say: Callable[[str], None] = print,
                 seed: int = 0) -> None:
        import httpx
        import paho.mqtt.client as mqtt

        self.url, self.rate, self.say, self.seed = url, rate, say, seed
        self.topic = f"{prefix.rstrip('/')}/{TWIN}"
        self.episode_prefix = episode_prefix
        self.http = httpx.Client(base_url=url, headers=headers or {}, timeout=60)
        self.stop_event = threading.Event()
        self.subscribed = threading.Event()  # to the service's confirmations
        self.published = 0
        self.predicted = 0
        self._acks: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"lmtwin-demo-device-{int(time.time())}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(mqtt_host, mqtt_port, keepalive=30)
        self.thread = threading.Thread(target=self._run, name="demo-device", daemon=True)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        client.subscribe([(f"{self.topic}/acks", 0), (f"{self.topic}/errors", 0)])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if msg.topic.endswith("/errors"):
            log.warning("the service refused a message: %s", data)
        with self._lock:
            done = self._acks.pop(str(data.get("id")), None)
        if done is not None:
            done.set()

    def start(self) -> None:
        self.client.loop_start()
        self.thread.start()

    def stop(self, hurry: threading.Event | None = None) -> None:
        """Stop after the request in flight (a language model may take seconds), unless
        ``hurry`` is set meanwhile."""
        self.stop_event.set()
        self.thread.join(1)
        if self.thread.is_alive():
            self.say("waiting for the prediction in progress (Ctrl-C again: stop at once)")
            deadline = time.monotonic() + 60
            while self.thread.is_alive() and time.monotonic() < deadline:
                if hurry is not None and hurry.is_set():
                    break
                self.thread.join(0.2)
        self.client.disconnect()
        self.client.loop_stop()
        self.http.close()

    def _publish(self, episode: str, t: int, values: dict[str, float]) -> None:
        """One day, QoS 1, waiting (at most 5 s) for the service's confirmation."""
        key = f"{episode}:{t}"
        done = threading.Event()
        with self._lock:
            self._acks[key] = done
        body = {"id": key, "episode": episode, "t": float(t), "values": values}
        self.client.publish(f"{self.topic}/observations", json.dumps(body), qos=1)
        if not done.wait(5) and not self.stop_event.is_set():
            log.warning("no confirmation for %s within 5 s", key)
        with self._lock:
            self._acks.pop(key, None)
        self.published += 1

    def _radiotherapy(self) -> None:
        radio = variable_json(CANCER_VARIABLES[3])
        r = self.http.post(f"/twins/{TWIN}/variables", json=radio)
        if r.status_code not in (201, 409):
            r.raise_for_status()
        self.http.post(f"/twins/{TWIN}/knowledge", json={"text": NOTE}).raise_for_status()
        self.say("radiotherapy starts: action 'ra' added to the schema, and a knowledge note")

    def _run(self) -> None:
        try:
            self._stream()
        except Exception:
            if not self.stop_event.is_set():
                log.exception("the demo device stopped")

    def _stream(self) -> None:
        while not self.subscribed.wait(0.1):
            if self.stop_event.is_set():
                return
        period = 1.0 / self.rate
        due = time.monotonic()
        i = 0
        while not self.stop_event.is_set():
            variant: Variant = "cancer-chemo" if i < RADIO_AFTER else "cancer"
            if i == RADIO_AFTER:
                self._radiotherapy()
            patient = simulate_patients(1, seed=self.seed + i, variant=variant, steps=STEPS)[0]
            episode = f"{self.episode_prefix}patient-{i + 1}"
            rows = patient.rows(variant)
            scan = np.random.default_rng(self.seed + i).normal(0.0, SCAN_NOISE, len(rows))
            for row, noise in zip(rows, scan, strict=True):
                row["v"] = max(0.0, row["v"] + float(noise))
            for t, row in enumerate(rows):
                if self.stop_event.wait(max(0.0, due - time.monotonic())):
                    return
                due = max(due + period, time.monotonic() - 1.0)
                self._publish(episode, t, row)
                if t + 1 < len(rows):
                    # the twin predicts tomorrow from today's state and dose; the
                    # service scores it when tomorrow arrives
                    action = {k: v for k, v in row.items() if k in ("ca", "ra")}
                    self._predict(action, episode)
            self._report(episode)
            i += 1

    def _predict(self, action: dict[str, float], episode: str) -> None:
        import httpx

        try:
            r = self.http.post(f"/twins/{TWIN}/predict",
                               json={"action": action, "episode": episode})
        except httpx.HTTPError as exc:  # a slow model: skip this day's prediction
            if not self.stop_event.is_set():
                log.warning("predict: %s", exc)
            return
        if r.status_code == 200:
            self.predicted += 1
        elif not self.stop_event.is_set():
            log.warning("predict: %s %s", r.status_code, r.text[:200])

    def _report(self, episode: str) -> None:
        import httpx

        try:
            r = self.http.get(f"/twins/{TWIN}/performance", params={"last": STEPS * 2})
        except httpx.HTTPError:
            return
        if r.status_code != 200:
            return
        perf = r.json()
        mse = ", ".join(f"{n} {v:.3g}" for n, v in perf["mse"].items() if v is not None)
        cover = "" if perf["coverage"] is None else (
            f"; coverage {perf['coverage']:.0%} of {perf['n_intervals']} intervals")
        self.say(f"{episode} done ({self.published} observations): MSE {mse}{cover}")


def serve_demo(settings: Any, host: str = "127.0.0.1", port: int | None = None,
               duration: float | None = None, rate: float = 4.0,
               say: Callable[[str], None] = print) -> int:
    """Run the demo until Ctrl-C, SIGTERM or ``duration`` seconds; returns an exit code.

    ``settings`` is the service's ``Settings``: without ``mqtt_host`` a local mosquitto
    is started (and stopped); ``store`` 'lmtwin.db' (the default) becomes a temporary
    file. A second Ctrl-C stops at once: if a request is still inside the language model
    then, the process ends here (``os._exit``), after the broker, since finalising
    llama.cpp under a running thread would crash it.
    """
    abandoned: list[threading.Thread] = []
    code = _serve(settings, host, port, duration, rate, say, abandoned)
    if abandoned:
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _serve(settings: Any, host: str, port: int | None, duration: float | None, rate: float,
           say: Callable[[str], None], abandoned: list[threading.Thread]) -> int:
    import httpx
    import uvicorn

    from lmtwin.service import create_app
    from lmtwin.service.broker import Mosquitto, free_port, port_free

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the device's requests
    stop, hurry = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: wait for nothing
            hurry.set()
            if server is not None:
                server.force_exit = True
        stop.set()

    server: uvicorn.Server | None = None
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    broker: Mosquitto | None = None
    device: Device | None = None
    thread: threading.Thread | None = None
    with tempfile.TemporaryDirectory(prefix="lmtwin-demo-") as tmp:
        try:
            if settings.mqtt_host is None:
                broker = Mosquitto(Path(tmp))
                broker.start()
                say(f"MQTT broker: mosquitto on 127.0.0.1:{broker.port} (pid {broker.pid})")
                settings = settings.model_copy(update={"mqtt_host": "127.0.0.1",
                                                       "mqtt_port": broker.port})
            if settings.store == "lmtwin.db" and "store" not in settings.model_fields_set:
                settings = settings.model_copy(update={"store": str(Path(tmp) / "demo.db")})
            if settings.auth and settings.admin_key is None:
                # the demo's own admin key for this run (the device and the dashboard
                # need one; a generated key would be unknown to it on a reused store)
                settings = settings.model_copy(
                    update={"admin_key": SecretStr(secrets.token_urlsafe(24))})
                assert settings.admin_key is not None
                say(f"Admin key (this run only): {settings.admin_key.get_secret_value()}")
            if port is None:
                port = 8000 if port_free(8000, host) else free_port(host)
            config = uvicorn.Config(create_app(settings), host=host, port=port,
                                    log_level=settings.log_level, access_log=False,
                                    timeout_graceful_shutdown=3)
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
            thread.start()
            while not server.started:
                if not thread.is_alive():
                    say(f"error: the service did not start on {host}:{port}")
                    return 1
                if stop.wait(0.05):
                    return 0
            url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
            headers = {}
            if settings.admin_key is not None:
                headers["Authorization"] = f"Bearer {settings.admin_key.get_secret_value()}"
            episode_prefix = _create_twin(httpx.Client(base_url=url, headers=headers))
            query = f"?episode={episode_prefix}patient-1&follow=1"
            if settings.admin_key is not None:
                r = httpx.post(f"{url}/keys", headers=headers, json={
                    "name": "demo dashboard", "twins": [TWIN], "scopes": ["read"]})
                r.raise_for_status()
                query += f"&key={r.json()['key']}"
                say("authentication is on: the dashboard's URL carries a read-only key")
            device = Device(url, settings.mqtt_host, settings.mqtt_port, settings.mqtt_prefix,
                            rate=rate, headers=headers, episode_prefix=episode_prefix, say=say)
            device.start()
            say(f"Dashboard: {url}/twins/{TWIN}/dashboard{query}")
            say(f"API: {url}/docs · a simulated device publishes {rate:g} observations/s "
                f"to {settings.mqtt_host}:{settings.mqtt_port} · Ctrl-C stops")
            deadline = None if duration is None else time.monotonic() + duration
            while not stop.wait(0.2):
                if deadline is not None and time.monotonic() > deadline:
                    break
                if not thread.is_alive():
                    say("error: the service stopped")
                    return 1
            say("stopping: device, service" + (", broker" if broker is not None else ""))
            return 0
        finally:
            if device is not None:
                device.stop(hurry)
            if server is not None and thread is not None:
                server.should_exit = True
                # a request may be inside the language model: wait for it, unless told
                # to hurry (then a few seconds more)
                waited = None
                while thread.is_alive():
                    thread.join(0.2)
                    if hurry.is_set():
                        waited = waited or time.monotonic()
                        if time.monotonic() - waited > 5:
                            abandoned.append(thread)
                            break
            if broker is not None:
                broker.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)


def _create_twin(http: Any) -> str:
    """Create the demo twin; returns the episode prefix (non-empty when the store
    already holds the twin and its patients)."""
    with http:
        r = http.post("/twins", json={
            "name": TWIN, "description": "lung-cancer patients, one after another "
            "(simulated PKPD: tumour volume v, chemo concentration c, dose ca)",
            "variables": [
                {**variable_json(v), "noise": {"sensor": SCAN_NOISE, "process": 1.0}}
                if v.name == "v" else variable_json(v) for v in CANCER_VARIABLES[:3]]})
        if r.status_code == 409:
            return time.strftime("run%H%M%S-")
        r.raise_for_status()
        return ""
