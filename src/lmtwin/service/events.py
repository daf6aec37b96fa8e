"""Live updates: a publish/subscribe hub feeding each twin's Server-Sent Events stream.

Publishers run in worker threads (ingest, MQTT); subscribers are asyncio queues on the
server's event loop, so ``publish`` hops onto the loop with ``call_soon_threadsafe``.
A subscriber that does not keep up loses its oldest events, never blocks ingest.
Each subscription belongs to the principal (API key id) that opened it: ``close_owner``
ends every stream of a key, as revoking it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Any

CLOSE = ""  # put on a queue to end its stream (never a valid SSE message)


class EventHub:
    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: dict[str, set[asyncio.Queue[str]]] = {}
        self._owners: dict[asyncio.Queue[str], str] = {}
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, twin: str, owner: str = "") -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(self.queue_size)
        with self._lock:
            self._subs.setdefault(twin, set()).add(queue)
            self._owners[queue] = owner
        return queue

    def close_owner(self, owner: str) -> int:
        """End every stream opened by ``owner``; returns how many."""
        with self._lock:
            queues = [q for q, o in self._owners.items() if o == owner]
        if queues and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._close, queues)
        return len(queues)

    @staticmethod
    def _close(queues: list[asyncio.Queue[str]]) -> None:
        for queue in queues:
            while not queue.empty():  # the close must not be dropped as the oldest event
                queue.get_nowait()
            queue.put_nowait(CLOSE)

    def unsubscribe(self, twin: str, queue: asyncio.Queue[str]) -> None:
        with self._lock:
            self._owners.pop(queue, None)
            subs = self._subs.get(twin)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self._subs[twin]

    def subscribers(self, twin: str) -> int:
        with self._lock:
            return len(self._subs.get(twin, ()))

    def publish(self, twin: str, kind: str, data: dict[str, Any]) -> None:
        """Send ``data`` as an SSE event named ``kind`` to the twin's subscribers."""
        with self._lock:
            queues = list(self._subs.get(twin, ()))
        if not queues or self._loop is None or self._loop.is_closed():
            return
        message = f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        # RuntimeError: the loop closed between the check and the call
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._deliver, queues, message)

    @staticmethod
    def _deliver(queues: list[asyncio.Queue[str]], message: str) -> None:
        for queue in queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)
