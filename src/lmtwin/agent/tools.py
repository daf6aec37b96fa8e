"""The agent's tools: one typed (pydantic) argument model per tool, and its kind.

Kinds decide the default approval policy: ``read`` runs at once; ``note`` (adding a
knowledge note) runs at once but counts as a write (MCP exposes it only when writes are
enabled); ``schema`` and ``actuate`` wait for approval by default. Argument models check
types and ranges; what depends on the twin (names, roles, bounds, units) is checked in
:mod:`lmtwin.agent.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["read", "note", "schema", "actuate"]
MAX_HORIZON = 1000


class Args(BaseModel):
    """Base of every tool's arguments: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class GetState(Args):
    variables: list[str] = Field(default_factory=list,
                                 description="variables to show; empty for all")


class GetHistory(Args):
    variable: str | None = Field(None, description="one variable, or null for all")
    last: int = Field(10, ge=1, le=10_000, description="how many recent observations")


class GetSchema(Args):
    pass


class Predict(Args):
    variables: list[str] = Field(default_factory=list,
                                 description="state variables to report; empty for all")
    horizon: int = Field(1, ge=1, le=MAX_HORIZON, description="steps ahead")
    actions: dict[str, float] = Field(
        default_factory=dict, description="action variables held at these values meanwhile")


class WhatIf(Args):
    actions: dict[str, float] = Field(
        min_length=1, description="action values of the scenario, compared with carrying on")
    horizon: int = Field(1, ge=1, le=MAX_HORIZON, description="steps ahead")
    variables: list[str] = Field(default_factory=list,
                                 description="state variables to compare; empty for all")


class Optimise(Args):
    variable: str = Field(description="the state variable to optimise")
    goal: Literal["minimise", "maximise"]
    horizon: int = Field(1, ge=1, le=MAX_HORIZON, description="steps ahead")


class TimeTo(Args):
    variable: str = Field(description="the state variable watched")
    threshold: float = Field(description="the value it reaches, in the variable's unit")
    horizon: int = Field(100, ge=1, le=MAX_HORIZON, description="steps searched at most")


class ListAlerts(Args):
    last: int = Field(10, ge=1, le=1000)


class ListNotes(Args):
    last: int = Field(10, ge=1, le=1000)


class AddNote(Args):
    text: str = Field(min_length=1, max_length=2000, description="the fact to remember")


class AddVariable(Args):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["state", "action", "context"] = "state"
    unit: str = ""
    description: str = ""
    lower: float | None = None
    upper: float | None = None


class RemoveVariable(Args):
    name: str = Field(min_length=1, max_length=64)


class UpdateVariable(Args):
    name: str = Field(min_length=1, max_length=64)
    unit: str | None = None
    description: str | None = None
    lower: float | None = None
    upper: float | None = None


class Actuate(Args):
    variable: str = Field(description="the action variable to set")
    value: float = Field(description="the value to set")
    unit: str | None = Field(None, description="the value's unit, if not the variable's own")


@dataclass(frozen=True)
class Tool:
    """One tool: its name, argument model, kind and a one-line description."""

    name: str
    args: type[Args]
    kind: Kind
    description: str

    @property
    def writes(self) -> bool:
        return self.kind != "read"

    def parse(self, raw: Any) -> Args:
        """Validate raw arguments into the model (raises pydantic's ValidationError)."""
        return self.args.model_validate({} if raw is None else raw)

    def json_schema(self) -> dict[str, Any]:
        """An OpenAI-style function tool definition."""
        schema = _untitled(self.args.model_json_schema())
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": schema}}


def _untitled(schema: Any) -> Any:
    """A JSON schema without pydantic's "title" keys (tokens a model does not need)."""
    if isinstance(schema, dict):
        return {k: _untitled(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_untitled(v) for v in schema]
    return schema


TOOLS: dict[str, Tool] = {t.name: t for t in [
    Tool("get_state", GetState, "read", "the twin's latest known values"),
    Tool("get_history", GetHistory, "read", "recent stored observations"),
    Tool("get_schema", GetSchema, "read", "the twin's variables, roles, units and bounds"),
    Tool("predict", Predict, "read", "forecast the state some steps ahead"),
    Tool("what_if", WhatIf, "read", "compare a scenario of actions with carrying on as now"),
    Tool("optimise", Optimise, "read", "find the actions that minimise or maximise a variable"),
    Tool("time_to", TimeTo, "read", "when a variable will reach a threshold"),
    Tool("list_alerts", ListAlerts, "read", "recent alerts raised on the twin"),
    Tool("list_notes", ListNotes, "read", "the twin's knowledge notes"),
    Tool("add_note", AddNote, "note", "remember a free-text fact about the system"),
    Tool("add_variable", AddVariable, "schema", "add a variable to the twin's schema"),
    Tool("remove_variable", RemoveVariable, "schema", "remove a variable from the schema"),
    Tool("update_variable", UpdateVariable, "schema",
         "change a variable's unit, description or bounds"),
    Tool("actuate", Actuate, "actuate", "set an action variable on the real system"),
]}

READ_TOOLS = [n for n, t in TOOLS.items() if not t.writes]
