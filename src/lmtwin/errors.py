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
    ├── DependencyNotInstalled   an optional dependency is missing (names the pip extra)
    └── AgentError               the operator agent (lmtwin.agent) refused or failed
        ├── RequestRejected      a request it cannot take (empty, too long, another
        │                        language, not understood)
        ├── CallRefused          a tool call that failed validation (names tool and why)
        ├── ActionDenied         the policy denies the tool
        │   └── ActuationRateLimited  the twin's actuation budget is spent
        ├── ApprovalError        approving or rejecting what cannot be decided
        │   ├── UnknownApproval  no pending call with that id
        │   └── AlreadyDecided   a call that was already approved or rejected
        └── ToolUnavailable      a tool whose library function is not available

Cooperating agents (lmtwin.cooperate), also under LmtwinError:

    LmtwinError
    └── CooperateError           a set-up of cooperating agents that cannot work
        ├── OwnershipError       an agent owns a non-action, or two agents own one variable
        ├── InvalidWeights       objective weights negative, NaN or summing to zero
        └── CyclicLink           linked twins whose zero-delay links make a cycle

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

    def __init__(self, package: str, extra: str | None) -> None:
        self.package = package
        self.extra = extra
        how = (
            f"pip install 'lmtwin[{extra}]'"
            if extra
            else f"pip install {package} (a core dependency of lmtwin: reinstall lmtwin)"
        )
        super().__init__(f"{package} is not installed; install it with: {how}")


class AgentError(LmtwinError):
    """The operator agent refused a request or a call, or could not run it."""


class RequestRejected(AgentError):
    """A request the agent cannot take: empty, too long, in another language, or not
    understood. Nothing was run."""


class CallRefused(AgentError):
    """A tool call whose arguments failed validation; nothing was run.

    ``tool`` is the tool's name, ``argument`` the offending argument (or None), ``reason``
    why (an unknown variable, a wrong role, out of bounds, a wrong unit, ...).
    """

    def __init__(self, tool: str, reason: str, argument: str | None = None) -> None:
        self.tool = tool
        self.argument = argument
        self.reason = reason
        where = f" argument {argument!r}" if argument else ""
        super().__init__(f"refused {tool}{where}: {reason}")


class ActionDenied(AgentError):
    """The approval policy denies this tool; nothing was run."""


class ActuationRateLimited(ActionDenied):
    """The twin's actuation budget is spent; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class ApprovalError(AgentError):
    """An approval or rejection that cannot be applied."""


class UnknownApproval(ApprovalError):
    """No call awaiting approval has this id."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        super().__init__(f"no call awaiting approval has id {call_id!r}")


class AlreadyDecided(ApprovalError):
    """The call was already approved or rejected."""

    def __init__(self, call_id: str, status: str) -> None:
        self.call_id = call_id
        self.status = status
        super().__init__(f"call {call_id!r} was already {status}")


class ToolUnavailable(AgentError):
    """A tool whose library function is not available in this installation or twin."""


class CooperateError(LmtwinError):
    """A cooperating-agents set-up (agents, objective, links) that cannot work."""


class OwnershipError(CooperateError):
    """An agent owns a variable that is not an action, or two agents own the same one."""


class InvalidWeights(CooperateError):
    """Objective weights that are negative, not finite, or sum to zero."""

    def __init__(self, weights: object, reason: str) -> None:
        self.weights = weights
        super().__init__(f"invalid objective weights {weights!r}: {reason}")


class CyclicLink(CooperateError):
    """Links between twins whose zero-delay part makes a cycle (an algebraic loop)."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(
            f"links make a cycle without delay: {' -> '.join(cycle)}; give one link delay >= 1"
        )
