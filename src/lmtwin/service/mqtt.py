"""MQTT ingest: observations published to ``PREFIX/<twin>/observations`` are stored
exactly as over HTTP (same validation, same idempotency).

A message is one observation ``{"episode", "t", "values"}`` or a batch
``{"observations": [...]}``; an optional ``"id"`` makes redeliveries harmless. QoS 1
messages are acknowledged (PUBACK) only after their rows are committed (manual ack), so
the broker redelivers anything the service did not store. A message that can never be
stored (bad JSON, unknown twin, invalid value) is acknowledged and its error published
to ``PREFIX/<twin>/errors``. A stored message with an id is confirmed on
``PREFIX/<twin>/acks``. The client reconnects by itself when the broker restarts.

A message that was not stored because of a store failure or an unexpected error (a bug)
is not acknowledged: the client keeps a persistent session (a client id fixed per store
and prefix, ``clean_session=False``) and reconnects, so the broker delivers it again.
A message that fails unexpectedly ``MAX_ATTEMPTS`` times is reported on the errors topic
and acknowledged, so one poisonous message cannot stall the stream. The persistent
session also means that QoS 1 messages published while the service was down are
delivered when it comes back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from typing import Any

from pydantic import ValidationError

from lmtwin.errors import DependencyNotInstalled, LmtwinError, StoreError
from lmtwin.service import models as m
from lmtwin.service.core import TwinService

log = logging.getLogger("lmtwin.service.mqtt")

MAX_ATTEMPTS = 3  # unexpected failures of one message before it is reported and dropped


class MqttIngest:
    def __init__(self, service: TwinService, host: str, port: int = 1883,
                 prefix: str = "lmtwin", qos: int = 1, client_id: str | None = None) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise DependencyNotInstalled("paho-mqtt", "service") from exc
        self.service = service
        self.host, self.port, self.prefix, self.qos = host, port, prefix.rstrip("/"), qos
        self.counts = {"received": 0, "stored": 0, "rejected": 0, "connects": 0,
                       "not_stored": 0}
        self.connected = threading.Event()
        self.stopping = False
        self._failures: dict[str, int] = {}  # message digest -> unexpected failures
        self._reconnecting = threading.Lock()
        # a persistent session, so that what is not acknowledged is delivered again (after
        # a reconnect, or a restart of the service); one service per store and prefix
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or self.default_client_id(
                                      service.settings.store, self.prefix),
                                  clean_session=False, manual_ack=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    @staticmethod
    def default_client_id(store: str, prefix: str) -> str:
        """A client id fixed per store and prefix (MQTT allows 23 characters)."""
        return "lmtwin-" + hashlib.sha256(f"{store}|{prefix}".encode()).hexdigest()[:16]

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def status(self) -> dict[str, Any]:
        return {"connected": self.connected.is_set(), **self.counts}

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s:%d refused the connection: %s", self.host, self.port,
                        reason)
            return
        client.subscribe(f"{self.prefix}/+/observations", qos=self.qos)
        self.counts["connects"] += 1
        self.connected.set()
        log.info("MQTT connected to %s:%d", self.host, self.port)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self.connected.clear()
        if self.stopping:
            return
        log.warning("MQTT disconnected from %s:%d (%s); reconnecting", self.host, self.port,
                    reason)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.counts["received"] += 1
        parts = msg.topic.split("/")
        twin = parts[-2] if len(parts) >= 3 else ""
        ack = True
        key: str | None = None
        try:
            if len(msg.payload) > self.service.settings.max_body_bytes:
                raise ValueError(f"payload over {self.service.settings.max_body_bytes} bytes")
            data = json.loads(msg.payload)
            if not isinstance(data, dict):
                raise ValueError("a message must be a JSON object")
            key = data.pop("id", None)
            if key is not None:
                key = f"mqtt:{str(key)[:200]}"
            if "observations" in data:
                rows = [o.model_dump() for o in m.BatchIn.model_validate(data).observations]
            else:
                rows = [m.ObservationIn.model_validate(data).model_dump()]
            result = self.service.ingest(twin, rows, key)
            self.counts["stored"] += result["stored"] if not result["replayed"] else 0
            if key is not None:  # confirmation for publishers that wait for it
                client.publish(f"{self.prefix}/{twin}/acks",
                               json.dumps({"id": key[5:], **result}), qos=0)
        except StoreError as exc:
            ack = False  # not stored: let the broker deliver it again
            self.counts["not_stored"] += 1
            log.error("MQTT message on %s not stored: %s", msg.topic, exc)
        except (ValueError, ValidationError, LmtwinError) as exc:
            self.counts["rejected"] += 1
            self._report(client, twin, exc, key)
        except Exception as exc:
            # a bug: not acknowledged, so the broker delivers it again (a bug must not
            # stop the network thread either: paho re-raises from callbacks)
            log.exception("MQTT message on %s could not be handled", msg.topic)
            digest = hashlib.sha256(msg.topic.encode() + b"\0" + msg.payload).hexdigest()
            failures = self._failures[digest] = self._failures.get(digest, 0) + 1
            if failures >= MAX_ATTEMPTS:  # poisonous: report it and let it go
                self._failures.pop(digest, None)
                self.counts["rejected"] += 1
                self._report(client, twin, exc, key)
            else:
                ack = False
                self.counts["not_stored"] += 1
            if len(self._failures) > 10_000:
                self._failures.clear()
        finally:
            if msg.qos > 0:
                if ack:
                    client.ack(msg.mid, msg.qos)
                else:
                    self._redeliver()

    def _report(self, client: Any, twin: str, exc: Exception, key: str | None) -> None:
        error = {"error": type(exc).__name__, "detail": str(exc)[:500], "id": key}
        client.publish(f"{self.prefix}/{twin or '_'}/errors", json.dumps(error), qos=0)

    def _redeliver(self) -> None:
        """Drop the connection, so that the network loop reconnects by itself (after
        ``reconnect_delay``) and the broker delivers what was not acknowledged again (the
        persistent session keeps it). Shutting the socket down is safe from any thread;
        only the loop reconnects. One drop at a time, after the burst in hand."""
        if self.stopping or not self._reconnecting.acquire(blocking=False):
            return

        def drop() -> None:
            try:
                time.sleep(0.5)  # let the other messages of this burst be handled first
                sock = self.client.socket()  # a TCP or TLS socket (websockets: not used)
                if isinstance(sock, socket.socket) and not self.stopping:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # already gone: the loop reconnects anyway
                log.debug("MQTT socket shutdown for redelivery: %s", exc)
            finally:
                self._reconnecting.release()

        threading.Thread(target=drop, name="mqtt-redeliver", daemon=True).start()
