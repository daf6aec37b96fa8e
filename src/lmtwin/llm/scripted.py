"""A scripted backend for unit tests of the plumbing: replies come from a list or function."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lmtwin.llm.base import Completion


class ScriptedBackend:
    """Replies from ``replies`` in turn (cycling), or from ``replies(prompt)``."""

    name = "scripted"
    supports_grammar = False

    def __init__(self, replies: Sequence[str] | Callable[[str], str]) -> None:
        self._replies = replies
        self._i = 0
        self.prompts: list[str] = []

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int = 32,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        grammar: str | None = None,
        seed: int | None = None,
    ) -> Completion:
        self.prompts.append(prompt)
        if callable(self._replies):
            text = self._replies(prompt)
        else:
            text = self._replies[self._i % len(self._replies)]
            self._i += 1
        for s in stop or []:
            if s in text:
                text = text[: text.index(s)]
        return Completion(text, max(1, len(prompt.split())), len(text.split()))

    def close(self) -> None:
        pass
