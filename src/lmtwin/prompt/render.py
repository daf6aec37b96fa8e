"""Render a schema, knowledge notes, examples and a query as a completion prompt.

Examples are rows of inputs followed by the change of each target: deltas beat absolute
next states by almost 3x for small models (DESIGN.md). Numbers are written as integers
in a per-column scale, as in LLMTime: each column is multiplied by a power of ten so a
typical value has a few significant digits, and the column header names the scale
(``c*100``). No decimal points and no plus signs: fewer tokens for the same information.
An input with the same value in every example and the query teaches nothing; it is
stated once (``# ca = 0 in every row``) instead of in each row.

What never changes between two queries of a twin (the variables' descriptions, the notes)
comes first, what the examples decide (constant inputs, column scales) after it, so a
backend that keeps the previous prompt's KV cache evaluates the fixed header only once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lmtwin.types import Query, Transition


def exponent(values: Sequence[float], digits: int) -> int:
    """The power of ten that gives a typical value of ``values`` about ``digits``
    significant digits as an integer (never below 0 for whole-number columns)."""
    mags = sorted(abs(v) for v in values if v != 0 and math.isfinite(v))
    if not mags:
        return 0
    typical = mags[len(mags) // 2]
    e = digits - 1 - math.floor(math.log10(typical))
    if all(float(v).is_integer() for v in values):
        e = min(e, 0)
    return int(max(-6, min(6, e)))


def fmt(value: float | None, e: int) -> str:
    """``value`` times 10**e as an integer, or ``?`` when missing."""
    if value is None:
        return "?"
    return str(round(value * 10.0**e))


def header(name: str, e: int) -> str:
    return name if e == 0 else f"{name}*{10**e}" if e > 0 else f"{name}/{10**-e}"


@dataclass
class Layout:
    """The columns of a prompt: state inputs, action inputs and targets, with the
    power of ten each column is scaled by."""

    states: list[str]
    actions: list[str]
    targets: list[str]
    input_exp: list[int]
    target_exp: list[int]
    fixed: dict[str, float]
    rows: int = 0  # example rows written by ``render``

    @property
    def inputs(self) -> list[str]:
        return self.states + self.actions

    @classmethod
    def for_query(
        cls,
        query: Query,
        examples: Sequence[Transition],
        digits_in: int = 3,
        digits_out: int = 2,
    ) -> Layout:
        def column(name: str, is_action: bool) -> list[float]:
            rows = [e.action if is_action else e.state for e in examples]
            rows.append(query.action if is_action else query.state)
            return [r[name] for r in rows if name in r]

        fixed: dict[str, float] = {}
        for name, is_action in [(n, False) for n in query.state] + [(n, True) for n in
                                                                    query.action]:
            values = column(name, is_action)
            if examples and len(values) == len(examples) + 1 and len(set(values)) == 1:
                fixed[name] = values[0]
        states = sorted(n for n in query.state if n not in fixed)
        actions = sorted(n for n in query.action if n not in fixed)

        input_exp = [exponent(column(n, False), digits_in) for n in states] + [
            exponent(column(n, True), digits_in) for n in actions
        ]
        target_exp = [
            exponent([d for e in examples if (d := e.delta(t)) is not None], digits_out)
            for t in query.targets
        ]
        return cls(states, actions, list(query.targets), input_exp, target_exp, fixed)

    def row(self, state: dict[str, float], action: dict[str, float]) -> str:
        values = [state.get(n) for n in self.states] + [action.get(n) for n in self.actions]
        return " ".join(fmt(v, e) for v, e in zip(values, self.input_exp, strict=True))

    def changes(self, transition: Transition) -> str | None:
        d = [transition.delta(t) for t in self.targets]
        if any(v is None for v in d):
            return None
        return " ".join(fmt(v, e) for v, e in zip(d, self.target_exp, strict=True))

    def decode(self, numbers: Sequence[float]) -> list[float]:
        """Changes in the variables' own units from the numbers of a reply."""
        return [x / 10.0**e for x, e in zip(numbers, self.target_exp, strict=True)]


def render(
    query: Query,
    examples: Sequence[Transition],
    describe: bool = True,
    digits_in: int = 3,
    digits_out: int = 2,
    arrow: str = " ->",
    max_row_tokens: int | None = None,
) -> tuple[str, Layout]:
    """Return the prompt and its layout. The prompt ends where the model's reply begins,
    right after the arrow: the rows' space after it is not written in the query, because
    Gemma writes " -" (a negative change) as one token; a prompt ending in a space made it
    drop the signs (measured: median squared error 175 instead of 0.23 on cancer).

    ``digits_in``/``digits_out`` are the significant digits of inputs and of changes;
    ``arrow`` separates them (each digit and separator is one token for Gemma);
    ``max_row_tokens``: the nearest examples (the last ones) whose rows fit in about this
    many tokens (a character of a row is about a token), at least one; the others are
    left out, so a system of many variables gets fewer rows rather than a longer prompt.
    """
    layout = Layout.for_query(query, examples, digits_in, digits_out)
    if max_row_tokens is not None:
        kept: list[Transition] = []
        used = 0
        for ex in reversed(examples):
            changes = layout.changes(ex)
            if changes is None:
                continue
            used += len(layout.row(ex.state, ex.action)) + len(arrow) + len(changes) + 2
            if kept and used > max_row_tokens:
                break
            kept.append(ex)
        examples = kept[::-1]
        layout = Layout.for_query(query, examples, digits_in, digits_out)
    lines = []
    if describe:
        # the query's variables in one order whichever are constant in this prompt, so
        # consecutive prompts share this header and the backend's KV cache keeps it
        for name in [*sorted(query.state), *sorted(query.action)]:
            if name in query.schema:
                var = query.schema[name]
                unit = f" [{var.unit}]" if var.unit else ""
                text = f" {var.description}" if var.description else ""
                lines.append(f"# {name}:{text}{unit}")
        lines.extend(f"# note: {note.text}" for note in query.notes)
    lines.extend(f"# {name} = {value:g} in every row" for name, value in layout.fixed.items())
    cols = " ".join(header(n, e) for n, e in zip(layout.inputs, layout.input_exp, strict=True))
    outs = " ".join(
        header(f"d{n}", e) for n, e in zip(layout.targets, layout.target_exp, strict=True)
    )
    lines.append(f"# {cols}{arrow} {outs}")
    gap = "" if arrow.endswith(("|", ":", "=")) and not arrow.startswith(" ") else " "
    for ex in examples:
        changes = layout.changes(ex)
        if changes is not None:
            lines.append(f"{layout.row(ex.state, ex.action)}{arrow}{gap}{changes}")
            layout.rows += 1
    lines.append(f"{layout.row(query.state, query.action)}{arrow}")
    return "\n".join(lines), layout
