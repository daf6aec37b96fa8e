"""The service's own errors, children of the library's root ``LmtwinError``.

    LmtwinError
    └── ServiceError
        ├── NotFound                                                            404
        │   ├── TwinNotFound    no twin of that name (or it was archived)
        │   ├── VariableNotFound  a variable named in the path that the twin lacks
        │   └── KeyNotFound     no active API key with that id
        ├── Conflict            a name already taken                            409
        ├── PayloadTooLarge     a body or batch over the configured limits       413
        ├── Unauthorized        no API key, or an unknown or revoked one         401
        ├── Forbidden           a key without the scope or twin asked for        403
        ├── RateLimited         a key's cost budget is spent (Retry-After)       429
        └── TwinUnavailable     a twin whose stored data cannot be loaded        503
"""

from __future__ import annotations

from lmtwin.errors import LmtwinError


class ServiceError(LmtwinError):
    """Root of the errors only the service raises."""


class NotFound(ServiceError):
    """Something named in the request's path does not exist."""


class TwinNotFound(NotFound):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no twin named {name!r}")


class VariableNotFound(NotFound):
    def __init__(self, twin: str, name: str) -> None:
        self.name = name
        super().__init__(f"twin {twin!r} has no variable {name!r}")


class KeyNotFound(NotFound):
    def __init__(self, key_id: str) -> None:
        self.id = key_id
        super().__init__(f"no active API key with id {key_id!r}")


class Conflict(ServiceError):
    """A name that is already taken."""


class PayloadTooLarge(ServiceError):
    """A request body or a batch over the configured limits."""


class Unauthorized(ServiceError):
    """No API key, or one the service does not know."""


class Forbidden(ServiceError):
    """A valid key that lacks the scope or the twin asked for."""


class RateLimited(ServiceError):
    """A key whose cost budget cannot pay for the request now; retry after ``retry_after``
    seconds (sent as the ``Retry-After`` header)."""

    def __init__(self, message: str, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class TwinUnavailable(ServiceError):
    """A registered twin whose stored data could not be loaded; ``reason`` says why. It can
    still be described (GET) and archived (DELETE)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"twin {name!r} could not be loaded: {reason}")
