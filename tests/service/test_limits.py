"""The per-key cost limiter: simulate spends path-steps from each key's budget; 413 for
one request over the cap, 429 with Retry-After once the budget is spent, per key."""

from __future__ import annotations

import time

import pytest

from lmtwin.service import Settings
from lmtwin.service.errors import PayloadTooLarge, RateLimited
from lmtwin.service.limits import CostLimiter
from tests.service.support import XU, client, linear_rows

ADMIN = "limits-admin-key-0123456789abcdef"


def test_token_bucket_refills_over_the_window():
    limits = CostLimiter(budget=100, window_s=1.0, per_request=60)
    limits.charge("a", 60)
    with pytest.raises(PayloadTooLarge):
        limits.charge("a", 61)
    with pytest.raises(RateLimited) as refused:
        limits.charge("a", 60)
    assert refused.value.retry_after == 1
    limits.charge("b", 60)  # another principal has its own budget
    time.sleep(0.25)  # 25 path-steps refilled: 65 available
    limits.charge("a", 60)
    with pytest.raises(ValueError):
        CostLimiter(budget=10, window_s=1.0, per_request=11)


def test_simulate_is_cost_limited_per_key(tmp_path):
    settings = Settings(store=str(tmp_path / "l.db"), admin_key=ADMIN,
                        max_simulation_steps=100, cost_budget=200, cost_window_s=600)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with client(settings) as c:
        c.post("/twins", json={"name": "p", "variables": XU}, headers=admin).raise_for_status()
        c.post("/twins/p/observations/batch", json={"observations": linear_rows(60)},
               headers=admin).raise_for_status()
        keys = [c.post("/keys", json={"name": f"r{i}", "twins": ["p"], "scopes": ["read"]},
                       headers=admin).json()["key"] for i in range(2)]
        one, two = ({"Authorization": f"Bearer {k}"} for k in keys)
        body = {"state": {"x": 1.0}, "plan": [{"u": 0.0}] * 10, "n_paths": 10}  # 100 steps
        assert c.post("/twins/p/simulate", json=body, headers=one).status_code == 200
        assert c.post("/twins/p/simulate", json=body, headers=one).status_code == 200
        r = c.post("/twins/p/simulate", json=body, headers=one)
        assert r.status_code == 429 and r.json()["error"] == "RateLimited"
        assert 0 < int(r.headers["retry-after"]) <= 600
        # the other key's budget is untouched; one request over the cap is 413
        assert c.post("/twins/p/simulate", json=body, headers=two).status_code == 200
        r = c.post("/twins/p/simulate", json={**body, "n_paths": 11}, headers=two)
        assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"
        # a refused request spends nothing: the second key still has 100 left
        assert c.post("/twins/p/simulate", json=body, headers=two).status_code == 200
        # unauthenticated callers are refused before any cost is counted
        assert c.post("/twins/p/simulate", json=body).status_code == 401
        # a prediction costs one path-step: a key whose budget is spent waits
        predict = {"state": {"x": 1.0}, "action": {"u": 0.0}}
        r = c.post("/twins/p/predict", json=predict, headers=one)
        assert r.status_code == 429 and "retry-after" in r.headers
        assert c.post("/twins/p/predict", json=predict, headers=admin).status_code == 200
