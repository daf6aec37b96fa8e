"""The tuner: re-tunes a twin's retrieval encoder in the background as data arrives.

    twin observes -> new transitions -> tuner wakes (every ``every`` new transitions)
      -> copies the encoder and the transitions (under the twin's lock, briefly)
      -> trains the copy (outside the lock: the twin keeps observing and predicting)
      -> swaps the trained copy in (under the lock); the index is rebuilt at next search

Only the encoder is trained; predictors never are. ``Twin.tune`` runs the same steps in
the caller's thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lmtwin.errors import InvalidValue, NotReady

if TYPE_CHECKING:
    from lmtwin.twin import Twin

log = logging.getLogger("lmtwin.tuner")


@dataclass(frozen=True)
class TuneRun:
    """One tuning: when it finished, on how many transitions, how long, first and last
    contrastive loss."""

    at: float
    transitions: int
    seconds: float
    first_loss: float
    last_loss: float


def tune_twin(twin: Twin, steps: int,
              progress: Callable[[int, float], None] | None = None) -> tuple[TuneRun, list[float]]:
    """Train a copy of the twin's encoder (a fresh set encoder the first time) on a
    snapshot of its transitions, then swap it in. Safe to call while the twin runs."""
    from lmtwin.retrieval.set_encoder import SetEncoder

    start = time.perf_counter()
    with twin._lock:
        current = twin.retriever.encoder
        encoder = current.copy() if isinstance(current, SetEncoder) else None
        transitions = list(twin.retriever.transitions)
        schema = twin.schema.as_of(math.inf)
    if encoder is None:
        encoder = SetEncoder()
    losses = encoder.tune(transitions, schema, steps=steps, progress=progress)
    with twin._lock:
        twin.retriever.encoder = encoder
        twin.retriever.invalidate()
    run = TuneRun(time.time(), len(transitions), time.perf_counter() - start, losses[0],
                  losses[-1])
    return run, losses


class Tuner:
    """A background thread that re-tunes ``twin``'s encoder every ``every`` new
    transitions, once it has at least ``min_transitions``.

    Args:
        twin: the twin to tune (``Twin.start_tuner`` makes and starts one).
        every: new transitions between tunings.
        steps: training steps per tuning.
        min_transitions: transitions needed before the first tuning.
    """

    def __init__(self, twin: Twin, every: int = 500, steps: int = 1000,
                 min_transitions: int = 100) -> None:
        for name, value in (("every", every), ("steps", steps),
                            ("min_transitions", min_transitions)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidValue(name, value, "must be a positive whole number")
        self.twin = twin
        self.every, self.steps, self.min_transitions = every, steps, min_transitions
        self.runs_: list[TuneRun] = []
        self.error_: str | None = None
        self._tuned_at = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Tuner:
        if not self.running:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="lmtwin-tuner",
                                            daemon=True)
            self._thread.start()
        return self

    def poke(self) -> None:
        """New data arrived (called by the twin; cheap)."""
        self._wake.set()

    def due(self) -> bool:
        n = len(self.twin.retriever)
        return n >= self.min_transitions and n - self._tuned_at >= self.every

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set() or not self.due():
                continue
            try:
                run, _ = tune_twin(self.twin, self.steps)
            except NotReady as exc:  # e.g. too few complete transitions: later
                log.info("tuning deferred: %s", exc)
                self._tuned_at = len(self.twin.retriever)
                continue
            except Exception as exc:  # reported, never silent; the twin keeps running
                self.error_ = f"{type(exc).__name__}: {exc}"
                log.exception("background tuning failed")
                self._stop.set()
                return
            self._tuned_at = run.transitions
            self.runs_.append(run)
            log.info("encoder tuned on %d transitions in %.1f s (loss %.3f -> %.3f)",
                     run.transitions, run.seconds, run.first_loss, run.last_loss)

    def wait(self, runs: int = 1, timeout: float | None = None) -> bool:
        """Block until ``runs`` tunings have finished (or the tuner failed or stopped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self.runs_) < runs and self.error_ is None and self.running:
            if deadline is not None and time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.05)
        return len(self.runs_) >= runs

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current tuning (if any) finishes."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
