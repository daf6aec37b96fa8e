"""Variables and the versioned schema of a twin."""

from lmtwin.schema.schema import Role, Schema, SchemaChange, Variable

__all__ = ["Role", "Schema", "SchemaChange", "Variable"]
