from __future__ import annotations

import pytest

from lmtwin import LocalRidge, Persistence, Twin, Variable
from lmtwin.llm import LlamaCppBackend


@pytest.fixture(scope="session")
def gemma() -> LlamaCppBackend:
    backend = LlamaCppBackend("gemma3-270m", n_threads=2)
    yield backend
    backend.close()


@pytest.fixture
def xy_twin() -> Twin:
    """A twin of x' = 0.9 x + u with numeric predictors only."""
    return Twin(
        "xy",
        variables=[Variable("x", "state", "m", "position"), Variable("u", "action", "m", "push")],
        predictors=[Persistence(), LocalRidge()],
    )


def feed_linear(twin: Twin, n: int = 40, episode: str = "e", predict: bool = False) -> None:
    """Observe x' = 0.9 x + u; with ``predict``, predict each step first (scored)."""
    x = 1.0
    for t in range(n):
        u = 0.5 if t % 3 == 0 else 0.0
        twin.observe({"x": x, "u": u}, episode=episode, t=float(t))
        if predict:
            twin.predict({"x": x}, {"u": u}, episode=episode)
        x = 0.9 * x + u
