"""The language-model predictor's plumbing, on scripted backends."""

import pytest

from lmtwin import LLMPredictor, ParseError, Variable
from lmtwin.llm import ScriptedBackend
from lmtwin.llm.base import Completion
from lmtwin.predictors import Query
from lmtwin.schema import Schema
from lmtwin.types import Transition

SCHEMA = Schema([Variable("x", "state", "m", "position"), Variable("y", "state"),
                 Variable("u", "action", "m", "push")])
EXAMPLES = [Transition("e", t, {"x": 1.0 + t, "y": 2.0}, {"u": 0.5 * (t % 2)},
                       {"x": 1.5 + t, "y": 2.1}) for t in range(6)]
QUERY = Query({"x": 3.0, "y": 2.0}, {"u": 0.5}, ["x", "y"], SCHEMA)


class Recording(ScriptedBackend):
    """A scripted backend that says it can constrain replies to numbers, and keeps the
    keyword arguments of every call."""

    supports_numbers = True

    def __init__(self, replies):  # type: ignore[no-untyped-def]
        super().__init__(replies)
        self.calls: list[dict] = []

    def complete(self, prompt, *, numbers=None, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append({"numbers": numbers, **kwargs})
        return super().complete(prompt, **kwargs)


def test_a_backend_that_counts_numbers_gets_the_count_and_no_grammar():
    backend = Recording([" 5 1"])
    out = LLMPredictor(backend, grammar=True).predict(QUERY, EXAMPLES)
    assert backend.calls[0]["numbers"] == 2 and "grammar" not in backend.calls[0]
    assert out.samples.shape == (1, 2) and out.info["parse_failures"] == 0


def test_numbers_off_falls_back_to_the_grammar_or_nothing():
    backend = Recording([" 5 1"])
    backend.supports_grammar = True
    LLMPredictor(backend, grammar=True, numbers=False).predict(QUERY, EXAMPLES)
    assert backend.calls[0]["numbers"] is None and "root ::=" in backend.calls[0]["grammar"]


def test_a_plain_backend_gets_neither_and_a_tight_token_cap():
    seen: list[dict] = []

    class Plain:
        name, supports_grammar = "plain", False

        def complete(self, prompt, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(kwargs)
            return Completion(" 5 1", 100, 4)

        def close(self) -> None:
            pass

    LLMPredictor(Plain(), digits_out=2).predict(QUERY, EXAMPLES)
    assert "numbers" not in seen[0] and "grammar" not in seen[0]
    assert seen[0]["max_tokens"] == 6 * 2 + 2 and seen[0]["stop"] == ["\n"]


def test_an_unparseable_reply_is_retried_then_reported():
    backend = ScriptedBackend(["up", " 5 1"])
    out = LLMPredictor(backend).predict(QUERY, EXAMPLES)
    assert out.info["parse_failures"] == 1 and len(backend.prompts) == 2
    with pytest.raises(ParseError) as info:
        LLMPredictor(ScriptedBackend(["up"]), retries=1).predict(QUERY, EXAMPLES)
    assert info.value.raw == "up"
