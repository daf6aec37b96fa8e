"""The backend protocol: a text completion, and close."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


@runtime_checkable
class LLMBackend(Protocol):
    """A completion-style language model.

    Implementations set ``name`` (for provenance) and ``supports_grammar`` (whether
    ``grammar``, a GBNF string, constrains the output). Optionally, a backend that sets
    ``supports_numbers = True`` accepts ``numbers=n`` in ``complete``: the reply is then
    exactly ``n`` space-separated integers (the embedded llama.cpp backend does it at no
    cost per token; callers check the flag with ``getattr`` before passing it).
    """

    name: str
    supports_grammar: bool

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int = 32,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        grammar: str | None = None,
        seed: int | None = None,
    ) -> Completion: ...

    def close(self) -> None: ...


def check_backend(backend: LLMBackend) -> None:
    """Raise AssertionError unless ``backend`` answers as the protocol says."""
    assert isinstance(backend, LLMBackend)
    assert isinstance(backend.name, str) and backend.name
    out = backend.complete("1, 2, 3, 4,", max_tokens=4, temperature=0.0, stop=["\n"])
    assert isinstance(out, Completion)
    assert isinstance(out.text, str)
    assert out.prompt_tokens > 0 and out.completion_tokens >= 0
    assert "\n" not in out.text
