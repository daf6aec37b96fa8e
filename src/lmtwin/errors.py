"""lmtwin's error tree. Every error the library raises on purpose is one of these.

    LmtwinError
    ├── SchemaError              a change or a value the schema cannot accept
    │   ├── UnknownVariable      a name the schema does not have (strict mode)
    │   └── InvalidValue         NaN, infinite, not a number, or out of declared bounds
    ├── StoreError               the store failed to read or write
    ├── NotReady                 the twin cannot answer yet (no data, no examples)
    ├── BackendError             a language-model backend failed
    │   ├── BackendUnavailable   the backend cannot be reached (names the URL or path)
    │   └── ParseError           a model reply could not be parsed (carries the raw text)
    └── DependencyNotInstalled   an optional dependency is missing (names the pip extra)

Vendor exceptions are mapped to the most specific type at the boundary where they occur;
callers (the CLI, the service) map these types, never message strings, to exit codes.
"""

from __future__ import annotations


class LmtwinError(Exception):
    """Root of every error lmtwin raises on purpose."""


class SchemaError(LmtwinError):
    """A schema change or a value that the schema cannot accept."""


class UnknownVariable(SchemaError):
    """A variable name that the schema does not have."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        self.known = sorted(known or [])
        hint = f"; known variables: {', '.join(self.known)}" if self.known else ""
        super().__init__(f"unknown variable {name!r}{hint}")


class InvalidValue(SchemaError):
    """A value that is not a finite number, or lies outside the variable's bounds."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"invalid value {value!r} for {name!r}: {reason}")


class StoreError(LmtwinError):
    """The store failed to read or write."""


class NotReady(LmtwinError):
    """The twin or a predictor cannot answer yet (for example, no data observed)."""


class BackendError(LmtwinError):
    """A language-model backend failed."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached or loaded."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        super().__init__(f"language-model backend at {where} is unavailable: {reason}")


class ParseError(BackendError):
    """A model reply that could not be parsed; ``raw`` holds the text as received."""

    def __init__(self, message: str, raw: str) -> None:
        self.raw = raw
        super().__init__(f"{message}; raw reply: {raw[:200]!r}")


class DependencyNotInstalled(LmtwinError):
    """An optional dependency is missing; the message names the pip extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package} is not installed; install it with: pip install 'lmtwin[{extra}]'"
        )
