"""An OpenAI-compatible HTTP backend (vLLM, llama.cpp's server, Ollama, hosted APIs).

Base models use ``/v1/completions``; the prompt is sent as it is.
"""

from __future__ import annotations

from typing import Any

from lmtwin.errors import BackendError, BackendUnavailable, DependencyNotInstalled
from lmtwin.llm.base import Completion


class OpenAICompatBackend:
    """A completion endpoint reached through the ``openai`` client.

    Args:
        base_url: for example ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects.
        supports_grammar: True for servers that accept a GBNF ``grammar`` field
            (llama.cpp's server); it is then sent in the request body.
        repeat_penalty: sent in the request body only when given (llama.cpp's server and
            vLLM accept it; its default 1.1 there changes numbers, so pass 1.0; strict
            servers such as the OpenAI API reject unknown fields, so it is off by default).
    """

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        api_key: str = "none",
        timeout: float = 60.0,
        supports_grammar: bool = False,
        max_retries: int = 0,
        repeat_penalty: float | None = None,
    ) -> None:
        try:
            import openai
        except ImportError as exc:
            raise DependencyNotInstalled("openai", "openai") from exc
        self._openai = openai
        self.base_url = base_url
        self.model = model
        self.name = f"openai:{model}@{base_url}"
        self.supports_grammar = supports_grammar
        self.repeat_penalty = repeat_penalty
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )

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
        extra: dict[str, Any] = {}
        if self.repeat_penalty is not None:
            extra["repeat_penalty"] = self.repeat_penalty
        if grammar is not None and self.supports_grammar:
            extra["grammar"] = grammar
        try:
            out = self._client.completions.create(
                model=self.model,
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=stop or None,
                seed=seed,
                extra_body=extra or None,
            )
        except (self._openai.APIConnectionError, self._openai.APITimeoutError) as exc:
            raise BackendUnavailable(self.base_url, str(exc)) from exc
        except self._openai.APIError as exc:
            raise BackendError(f"{self.name} failed: {exc}") from exc
        usage = out.usage
        return Completion(
            out.choices[0].text,
            int(usage.prompt_tokens) if usage else 0,
            int(usage.completion_tokens) if usage else 0,
        )

    def close(self) -> None:
        self._client.close()
