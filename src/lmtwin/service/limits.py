"""A per-key cost limiter: each API key spends "path-steps" from a budget that refills
over a time window, so a few keys cannot starve the service with expensive requests.

How a route group uses it (any route, any cost)::

    from lmtwin.service.deps import Meter

    @router.post("/twins/{name}/simulate")
    def simulate(name: str, body: m.SimulateIn, s: Service, _: Read, meter: Meter) -> ...:
        meter.charge(body.n_paths * (body.horizon or len(body.plan)))   # before the work
        ...

``charge(cost)`` raises ``PayloadTooLarge`` (413) when one request costs more than
``Settings.max_simulation_steps``, and ``RateLimited`` (429, with a ``Retry-After``
header in seconds) when the caller's budget cannot pay for it now. The budget is a
token bucket per principal (an API key's id, or ``admin``): ``Settings.cost_budget``
path-steps, refilled evenly over ``Settings.cost_window_s`` seconds. A path-step is one
step of one sampled path (one ``Twin.predict``-sized call to every predictor): predict
costs 1, simulate ``n_paths x horizon``; other routes charge their own work in the same
unit (a what-if of k candidates over h steps with n paths costs k x h x n).
"""

from __future__ import annotations

import math
import threading
import time

from lmtwin.service.errors import PayloadTooLarge, RateLimited


class CostLimiter:
    """Token buckets of path-steps, one per principal. Thread-safe.

    Args:
        budget: path-steps a principal may spend at once (the bucket's size).
        window_s: seconds in which an empty bucket refills completely.
        per_request: the most one request may cost (413 beyond it); at most ``budget``.

    Example:
        >>> limits = CostLimiter(budget=100, window_s=60, per_request=50)
        >>> limits.charge("key-1", 50); limits.charge("key-1", 50)
        >>> limits.charge("key-1", 10)
        Traceback (most recent call last):
        ...
        lmtwin.service.errors.RateLimited: ...
    """

    def __init__(self, budget: int, window_s: float, per_request: int) -> None:
        if per_request > budget:
            raise ValueError("one request may not cost more than the whole budget")
        self.budget = float(budget)
        self.rate = budget / window_s  # path-steps refilled per second
        self.per_request = per_request
        self._buckets: dict[str, tuple[float, float]] = {}  # principal -> (level, at)
        self._lock = threading.Lock()

    def charge(self, principal: str, cost: int) -> None:
        """Spend ``cost`` path-steps of ``principal``'s budget, or refuse without spending."""
        if cost > self.per_request:
            raise PayloadTooLarge(f"this request costs {cost} path-steps (n_paths x horizon);"
                                  f" the limit per request is {self.per_request}")
        now = time.monotonic()
        with self._lock:
            level, at = self._buckets.get(principal, (self.budget, now))
            level = min(self.budget, level + (now - at) * self.rate)
            if cost > level:
                self._buckets[principal] = (level, now)
                wait = math.ceil((cost - level) / self.rate)
                raise RateLimited(f"the cost budget of this key is spent: {cost} path-steps "
                                  f"asked, {int(level)} left; retry in {wait} s", wait)
            self._buckets[principal] = (level - cost, now)
            if len(self._buckets) > 100_000:  # full buckets carry no information
                self._drop_full(now)

    def _drop_full(self, now: float) -> None:
        for key, (level, at) in list(self._buckets.items()):
            if level + (now - at) * self.rate >= self.budget:
                del self._buckets[key]
