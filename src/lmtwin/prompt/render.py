"""Render a schema, knowledge notes, examples and a query as a completion prompt.

Examples are written as rows of inputs followed by the change of each target (deltas
beat absolute next states by almost 3x for small models, see DESIGN.md). Each column has
a fixed number of decimals chosen from its typical magnitude, so every number has about
three significant digits and the prompt stays short.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lmtwin.predictors.base import Query
from lmtwin.types import Transition


def decimals(values: Sequence[float], digits: int = 3) -> int:
    """Decimals that give about ``digits`` significant digits to a typical value."""
    mags = [abs(v) for v in values if v != 0 and math.isfinite(v)]
    if not mags:
        return 0
    typical = sorted(mags)[len(mags) // 2]
    return int(min(6, max(0, digits - 1 - math.floor(math.log10(typical)))))


def places(values: Sequence[float]) -> int:
    """Decimals of an input column: none when every value is whole (doses, counts)."""
    return 0 if all(float(v).is_integer() for v in values) else decimals(values)


def fmt(value: float | None, places: int, signed: bool = False) -> str:
    if value is None:
        return "?"
    text = f"{value:+.{places}f}" if signed else f"{value:.{places}f}"
    return "0" if text.lstrip("+-") == f"{0:.{places}f}" and places == 0 else text


@dataclass
class Layout:
    """The columns of a prompt: inputs (state then action names) and targets, with the
    decimals of each column."""

    inputs: list[str]
    targets: list[str]
    input_places: list[int]
    target_places: list[int]

    @classmethod
    def for_query(cls, query: Query, examples: Sequence[Transition]) -> Layout:
        states = sorted(query.state)
        actions = sorted(query.action)
        inputs = states + actions

        def column(name: str, is_action: bool) -> list[float]:
            src = [e.action if is_action else e.state for e in examples]
            own = query.action if is_action else query.state
            return [s[name] for s in src if name in s] + [own[name]]

        input_places = [places(column(n, i >= len(states))) for i, n in enumerate(inputs)]
        target_places = [
            decimals([d for e in examples if (d := e.delta(t)) is not None]) for t in query.targets
        ]
        return cls(inputs, query.targets, input_places, target_places)

    def row(self, state: dict[str, float], action: dict[str, float]) -> str:
        n_states = len(self.inputs) - len(action)
        cells = []
        for i, (name, places) in enumerate(zip(self.inputs, self.input_places, strict=True)):
            value = (state if i < n_states else action).get(name)
            cells.append(fmt(value, places))
        return " ".join(cells)


def render(
    query: Query, examples: Sequence[Transition], describe: bool = True
) -> tuple[str, Layout]:
    """Return the prompt and its layout. The prompt ends where the model's reply begins."""
    layout = Layout.for_query(query, examples)
    lines = []
    if describe:
        for name in layout.inputs:
            if name in query.schema:
                var = query.schema[name]
                unit = f" {var.unit}" if var.unit else ""
                text = f" {var.description}" if var.description else ""
                lines.append(f"# {name}:{text}{unit} ({var.role})")
        for note in query.notes:
            lines.append(f"# note: {note.text}")
    changes = " ".join(f"d{t}" for t in layout.targets)
    lines.append(f"# {' '.join(layout.inputs)} -> {changes}")
    for ex in examples:
        d = [ex.delta(t) for t in layout.targets]
        if any(v is None for v in d):
            continue
        out = " ".join(fmt(v, p, signed=True) for v, p in zip(d, layout.target_places, strict=True))
        lines.append(f"{layout.row(ex.state, ex.action)} -> {out}")
    lines.append(f"{layout.row(query.state, query.action)} ->")
    return "\n".join(lines), layout
