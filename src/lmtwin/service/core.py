"""The service layer: one shared store, the twins living on it, and the operations the
HTTP routes and the MQTT ingest both call (``lmtwin.service.ops``, one module per route
group). Routes stay thin; this stays thin over Twin."""

from __future__ import annotations

import threading
import time
from typing import Any

from lmtwin.llm.base import Completion, LLMBackend
from lmtwin.service.auth import ensure_admin
from lmtwin.service.db import ServiceDB
from lmtwin.service.events import EventHub
from lmtwin.service.ops.ingest import Ingest
from lmtwin.service.ops.model import Model
from lmtwin.service.ops.read import Reads
from lmtwin.service.ops.registry import Registry
from lmtwin.service.settings import Settings
from lmtwin.service.stores import open_store


class LockedBackend:
    """Serialises calls to a backend shared by every twin (llama.cpp is not re-entrant)."""

    def __init__(self, backend: LLMBackend) -> None:
        self.inner = backend
        self.name = backend.name
        self.supports_grammar = backend.supports_grammar
        # the embedded backend's number mask (one integer per target, no retries)
        self.supports_numbers = bool(getattr(backend, "supports_numbers", False))
        self._lock = threading.Lock()

    def complete(self, prompt: str, *, max_tokens: int = 32, temperature: float = 0.0,
                 stop: list[str] | None = None, grammar: str | None = None,
                 seed: int | None = None, numbers: int | None = None) -> Completion:
        extra: dict[str, Any] = {} if numbers is None else {"numbers": numbers}
        with self._lock:
            return self.inner.complete(prompt, max_tokens=max_tokens, temperature=temperature,
                                       stop=stop, grammar=grammar, seed=seed, **extra)

    def close(self) -> None:
        """Closed by the service, never by one twin."""

    def close_inner(self) -> None:
        """Close the model once no call is inside it (a request's thread may still be)."""
        with self._lock:
            self.inner.close()


def make_backend(settings: Settings) -> LLMBackend | None:
    if settings.llm == "none":
        return None
    if settings.llm_url:
        from lmtwin.llm import OpenAICompatBackend

        return OpenAICompatBackend(settings.llm_url, model=settings.llm)
    from lmtwin.llm import LlamaCppBackend

    return LlamaCppBackend(settings.llm, n_threads=settings.llm_threads)


class TwinService(Registry, Ingest, Reads, Model):
    """Twins on one store, with idempotent ingest, cached latest state and live events.

    The operations come from ``lmtwin.service.ops`` (one module per route group).

    Args:
        settings: the service's settings.
        backend: the language model added to every twin's predictors; None builds one from
            ``settings.llm`` ('none' means numeric predictors only).
    """

    def __init__(self, settings: Settings, backend: LLMBackend | None = None) -> None:
        self.settings = settings
        self.store = open_store(settings.store)
        self.db = ServiceDB(self.store)  # the service's tables, in the same store
        self.events = EventHub()
        self.backend = None
        self._owns_backend = backend is None
        raw = backend if backend is not None else make_backend(settings)
        if raw is not None:
            self.backend = LockedBackend(raw)
        self._twins = {}
        self._unavailable = {}
        self._lock = threading.Lock()
        self._keys_purged_at = time.time()
        self.db.forget_before(self._keys_purged_at - settings.idempotency_ttl_s)
        # with no admin key configured, one is generated at the first start (the caller
        # shows it once; only its hash is stored)
        self.generated_admin_key = ensure_admin(self.db, settings)
        self.counters = {"observations": 0, "batches": 0, "replayed": 0, "rejected": 0}

    def close(self) -> None:
        with self._lock:
            for entry in self._twins.values():
                if entry.twin.tuner is not None:
                    entry.twin.tuner.stop()
            self._twins.clear()
        self.store.close()
        if self.backend is not None and self._owns_backend:
            assert isinstance(self.backend, LockedBackend)
            self.backend.close_inner()

