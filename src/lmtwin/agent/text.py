"""Reading a request's words: tokens, numbers with their units, and durations.

Deterministic and small on purpose: what it finds is validated against the twin's
schema afterwards, and what it cannot find is refused, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lmtwin.agent.units import UnitMismatch, convert, known

NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "hundred": 100,
}
TIME_UNITS = {
    "s": "second", "sec": "second", "secs": "second", "second": "second", "seconds": "second",
    "min": "minute", "mins": "minute", "minute": "minute", "minutes": "minute",
    "h": "hour", "hr": "hour", "hrs": "hour", "hour": "hour", "hours": "hour",
    "day": "day", "days": "day", "week": "week", "weeks": "week",
    "month": "month", "months": "month", "year": "year", "years": "year",
    "step": "step", "steps": "step",
}
# words after a number that are never its unit, though pint knows some of them
NOT_UNITS = {"in", "at", "a", "an", "of", "to", "for", "and", "or", "the", "on", "by", "per",
             "from", "as", "is", "it", "if", "me", "more", "reading", "readings", "times",
             "observations", "measurements", "values", "points", "records", "entries",
             "alerts", "notes", "latest", "last", "ahead", "later", "now", "ft"}
_UNIT_WORDS = {
    "percent": "%", "per cent": "%", "%": "%", "degrees": "degrees", "degree": "degrees",
    "°": "degrees", "°c": "°C", "°f": "°F", "celsius": "°C", "fahrenheit": "°F",
}
_NUM = re.compile(r"(?<![\w.])([-+−]?\d+(?:[.,]\d+)?)(?![\w.]*\d)")
_WORD = re.compile(r"[a-z0-9_°%µμ/]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Quantity:
    """A number in the text, with the unit written after it ('' if none)."""

    value: float
    unit: str
    start: int
    end: int

    @property
    def is_duration(self) -> bool:
        return self.unit in TIME_UNITS.values()


def normalise(text: str) -> str:
    """Lower case, number words as digits, 'a week' as '1 week', typographic signs plain."""
    out = text.lower().replace("−", "-").replace("’", "'").replace("µ", "u").replace("μ", "u")
    out = re.sub(r"\b(" + "|".join(NUMBER_WORDS) + r")\b",
                 lambda m: str(NUMBER_WORDS[m.group(1)]), out)
    out = re.sub(r"\b(a|an|the next|next|one)\s+(" + "|".join(
        k for k in TIME_UNITS if len(k) > 2) + r")\b", r"1 \2", out)
    out = re.sub(r"\btomorrow\b", "in 1 day", out)
    out = re.sub(r"\bovernight\b", "in 12 hours", out)
    return out


def words(text: str) -> list[tuple[str, int]]:
    """Word tokens of normalised text with their start offsets."""
    return [(m.group(0), m.start()) for m in _WORD.finditer(text)]


def _unit_after(text: str, end: int, known_units: set[str]) -> tuple[str, int]:
    rest = text[end:end + 40]
    m = re.match(r"\s*(%|°\s?[cf]\b|°)", rest)
    if m:
        return _UNIT_WORDS[m.group(1).replace(" ", "")], end + m.end()
    m = re.match(r"\s*([a-z/µμ0-9]+(?:\s+per\s+[a-z]+)?)", rest)
    if not m:
        return "", end
    token = m.group(1)
    first = token.split()[0]
    if first in NOT_UNITS:
        return "", end
    if first in TIME_UNITS:
        return TIME_UNITS[first], end + m.start(1) + len(first)
    if token in _UNIT_WORDS or first in _UNIT_WORDS:
        key = token if token in _UNIT_WORDS else first
        return _UNIT_WORDS[key], end + m.start(1) + len(key)
    for candidate in (token, first):
        unit = candidate.replace(" per ", "/")
        if unit in {u.lower() for u in known_units} or _pint_unit(unit):
            return unit, end + m.start(1) + len(candidate)
    return "", end


def _pint_unit(unit: str) -> bool:
    # the text is lower case here; the request's own spelling is restored later
    variants = {unit, unit.upper(), unit.capitalize(), unit[:1] + unit[1:].upper()}
    return bool(unit) and not unit.isdigit() and any(known(v) for v in variants)


def quantities(text: str, known_units: set[str] = frozenset()) -> list[Quantity]:  # type: ignore[assignment]
    """Numbers in normalised text with the unit written after each."""
    out = []
    for m in _NUM.finditer(text):
        raw = m.group(1).replace("−", "-")
        if "," in raw:
            head, tail = raw.split(",")
            raw = head + tail if len(tail) == 3 else head + "." + tail
        unit, end = _unit_after(text, m.end(), known_units)
        out.append(Quantity(float(raw), unit, m.start(), end))
    return out


def in_unit(q: Quantity, unit: str) -> float:
    """The quantity's value in ``unit`` ('degrees' means the variable's own unit when that
    is a temperature); raises UnitMismatch."""
    if not q.unit or q.unit == unit:
        return q.value
    if q.unit == "degrees":
        if "°" in unit or unit.lower() in {"degc", "degf", "c", "f", "k"}:
            return q.value
        raise UnitMismatch(f"{q.value:g} degrees cannot be expressed in {unit or 'no unit'}")
    return convert(q.value, q.unit, unit)


def duration_steps(q: Quantity, time_unit: str) -> int:
    """A duration as a whole number of the twin's time steps; raises UnitMismatch."""
    if q.unit == time_unit or (q.unit == "step"):
        steps = q.value
    elif time_unit == "step":
        raise UnitMismatch(f"the twin counts time in steps; {q.value:g} {q.unit}s is not a "
                           "number of steps")
    else:
        steps = convert(q.value, q.unit, time_unit)
    return max(1, round(steps))
