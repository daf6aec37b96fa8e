"""MQTT ingest from a real mosquitto on 127.0.0.1: messages, batches, bad messages,
duplicate deliveries, and a broker restart after which ingest resumes."""

from __future__ import annotations

import json

import pytest

from lmtwin.service import Settings
from tests.service.support import XU, broker, client, linear_rows, wait_for  # noqa: F401

mqtt = pytest.importorskip("paho.mqtt.client")


def _publisher(port: int):
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-publisher")
    pub.reconnect_delay_set(min_delay=1, max_delay=2)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    return pub


def _publish(pub, topic: str, payload: object) -> None:
    info = pub.publish(topic, json.dumps(payload), qos=1)
    info.wait_for_publish(10)


def _count(c, twin: str = "a") -> int:
    return len(c.get(f"/twins/{twin}/history").json())


def test_mqtt_ingest_and_broker_restart(tmp_path, broker):  # noqa: F811
    settings = Settings(store=str(tmp_path / "m.db"), mqtt_host="127.0.0.1",
                        mqtt_port=broker.port)
    with client(settings) as c:
        c.post("/twins", json={"name": "a", "variables": XU}).raise_for_status()
        wait_for(lambda: c.get("/health").json()["mqtt"]["connected"])
        pub = _publisher(broker.port)
        errors: list[dict] = []
        listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        acks: list[dict] = []
        listener.on_message = lambda cl, ud, msg: (
            acks if msg.topic.endswith("/acks") else errors).append(json.loads(msg.payload))
        listener.connect("127.0.0.1", broker.port)
        listener.subscribe([("lmtwin/+/errors", 1), ("lmtwin/+/acks", 1)])
        listener.loop_start()

        rows = linear_rows(30)
        _publish(pub, "lmtwin/a/observations", rows[0])
        _publish(pub, "lmtwin/a/observations", {"observations": rows[1:20], "id": "m-1"})
        wait_for(lambda: _count(c) == 20)
        # a message with an id is confirmed once committed
        wait_for(lambda: acks)
        assert acks[0] == {"id": "m-1", "stored": 19, "last_t": {"e": 19.0}, "replayed": False}
        # a duplicate delivery (same id) is stored once
        _publish(pub, "lmtwin/a/observations", {"observations": rows[1:20], "id": "m-1"})
        # bad messages are refused and reported, never stored
        pub.publish("lmtwin/a/observations", b"{not json", qos=1).wait_for_publish(10)
        _publish(pub, "lmtwin/a/observations", {"values": {"x": "abc"}})
        _publish(pub, "lmtwin/a/observations", {"values": {"nope": 1.0}})
        _publish(pub, "lmtwin/ghost/observations", {"values": {"x": 1.0}})
        wait_for(lambda: len(errors) >= 4 and len(acks) >= 2)
        assert acks[1]["replayed"] is True
        assert [e["error"] for e in errors[:4]] == [
            "JSONDecodeError", "ValidationError", "UnknownVariable", "TwinNotFound"]
        assert _count(c) == 20
        status = c.get("/health").json()["mqtt"]
        assert status["stored"] == 20 and status["rejected"] == 4

        # the broker goes away and comes back on the same port: ingest resumes
        broker.stop()
        wait_for(lambda: not c.get("/health").json()["mqtt"]["connected"])
        broker.start()
        wait_for(lambda: c.get("/health").json()["mqtt"]["connected"], timeout=20)
        wait_for(lambda: pub.is_connected(), timeout=20)
        _publish(pub, "lmtwin/a/observations", {"observations": rows[20:], "id": "m-2"})
        wait_for(lambda: _count(c) == 30)
        # the cached state follows the commit a moment later (the MQTT thread updates it)
        wait_for(lambda: c.get("/twins/a/state", params={"episode": "e"}).json()["t"] == 29.0)
        assert c.get("/health").json()["mqtt"]["connects"] >= 2
        for cl in (pub, listener):
            cl.loop_stop()
            cl.disconnect()


def test_service_starts_before_its_broker(tmp_path):
    from tests.service.support import Mosquitto

    late = Mosquitto(tmp_path)  # port chosen, broker not started yet
    settings = Settings(store=str(tmp_path / "late.db"), mqtt_host="127.0.0.1",
                        mqtt_port=late.port)
    with client(settings) as c:
        c.post("/twins", json={"name": "a", "variables": XU}).raise_for_status()
        health = c.get("/health").json()
        assert health["status"] == "ok" and health["mqtt"]["connected"] is False
        late.start()
        try:
            wait_for(lambda: c.get("/health").json()["mqtt"]["connected"], timeout=20)
            pub = _publisher(late.port)
            _publish(pub, "lmtwin/a/observations", {"observations": linear_rows(3)})
            wait_for(lambda: _count(c) == 3)
            pub.loop_stop()
            pub.disconnect()
        finally:
            late.stop()


def test_an_unexpected_error_leaves_the_message_for_redelivery(tmp_path, broker):  # noqa: F811
    settings = Settings(store=str(tmp_path / "r.db"), mqtt_host="127.0.0.1",
                        mqtt_port=broker.port)
    with client(settings) as c:
        c.post("/twins", json={"name": "a", "variables": XU}).raise_for_status()
        c.post("/twins", json={"name": "p", "variables": XU}).raise_for_status()
        wait_for(lambda: c.get("/health").json()["mqtt"]["connected"])
        service = c.app.state.service
        real, calls = service.ingest, []

        def buggy(twin, rows, key=None):  # a bug: the first delivery fails, and twin p always
            calls.append(twin)
            if twin == "p" or len(calls) == 1:
                raise RuntimeError("a bug in ingest")
            return real(twin, rows, key)

        service.ingest = buggy
        errors: list[dict] = []
        listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        listener.on_message = lambda cl, ud, msg: errors.append(json.loads(msg.payload))
        listener.connect("127.0.0.1", broker.port)
        listener.subscribe("lmtwin/+/errors", 1)
        listener.loop_start()
        pub = _publisher(broker.port)
        _publish(pub, "lmtwin/a/observations", {"observations": linear_rows(5), "id": "r-1"})
        # not acknowledged the first time: the broker delivered it again, and it was stored
        wait_for(lambda: _count(c) == 5, timeout=20)
        assert calls[:2] == ["a", "a"]
        # a message that always fails is reported after a few attempts, not retried forever
        _publish(pub, "lmtwin/p/observations", {"values": {"x": 1.0}, "id": "poison"})
        wait_for(lambda: errors, timeout=30)
        assert errors[0]["error"] == "RuntimeError" and errors[0]["id"] == "mqtt:poison"
        assert calls.count("p") == 3
        status = c.get("/health").json()["mqtt"]
        assert status["not_stored"] == 3 and status["rejected"] == 1
        service.ingest = real
        for cl in (pub, listener):
            cl.loop_stop()
            cl.disconnect()


def test_messages_published_while_the_service_is_down_arrive_at_restart(tmp_path, broker):  # noqa: F811
    settings = Settings(store=str(tmp_path / "d.db"), mqtt_host="127.0.0.1",
                        mqtt_port=broker.port)
    with client(settings) as c:
        c.post("/twins", json={"name": "a", "variables": XU}).raise_for_status()
        wait_for(lambda: c.get("/health").json()["mqtt"]["connected"])
    # the service is down; its persistent session at the broker keeps what arrives
    pub = _publisher(broker.port)
    _publish(pub, "lmtwin/a/observations", {"observations": linear_rows(4), "id": "late"})
    with client(settings) as c:
        wait_for(lambda: _count(c) == 4, timeout=20)
    pub.loop_stop()
    pub.disconnect()
