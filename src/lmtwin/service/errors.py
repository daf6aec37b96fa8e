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
        └── Forbidden           a key without the scope or twin asked for        403
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
