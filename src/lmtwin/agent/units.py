"""Unit conversion for tool arguments, with pint (one registry, built on first use)."""

from __future__ import annotations

import functools
import re
from typing import Any

from lmtwin.errors import DependencyNotInstalled

_ALIASES = {
    "": "dimensionless", "%": "percent", "°c": "degC", "°f": "degF", "celsius": "degC",
    "degrees celsius": "degC", "fahrenheit": "degF", "c": "degC", "f": "degF",
    "fraction": "dimensionless", "percentage": "percent", "pct": "percent",
}


class UnitMismatch(ValueError):
    """Two units that cannot be converted into each other (or one pint does not know)."""


@functools.cache
def _registry() -> Any:
    try:
        import pint
    except ImportError as exc:
        raise DependencyNotInstalled("pint", "agent") from exc
    return pint.UnitRegistry()


def _spelled(unit: str) -> str:
    text = unit.strip()
    alias = _ALIASES.get(text.lower())
    if alias is not None:
        return alias
    # cm3 -> cm**3, m2 -> m**2 (pint reads "cm3" as a unit name otherwise)
    return re.sub(r"(?<=[A-Za-z])([23])\b", r"**\1", text)


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``; UnitMismatch if impossible."""
    if from_unit.strip() == to_unit.strip():
        return value
    if from_unit.strip().lower() in {"degrees", "deg"} and to_unit in {"°C", "°F", "degC", "degF"}:
        return value
    ureg = _registry()
    try:
        quantity = ureg.Quantity(value, _spelled(from_unit))
        return float(quantity.to(_spelled(to_unit)).magnitude)
    except Exception as exc:  # pint raises several unrelated types for bad units
        want = to_unit or "no unit"
        raise UnitMismatch(
            f"{value:g} {from_unit} cannot be expressed in {want}"
            f" ({type(exc).__name__})") from None


@functools.cache
def known(unit: str) -> bool:
    """Whether pint can read ``unit`` (after the aliases above)."""
    try:
        _registry().Unit(_spelled(unit))
    except Exception:  # pint raises several unrelated types for unknown units
        return False
    return True


def same_dimension(a: str, b: str) -> bool:
    """Whether a value in unit ``a`` can be converted to unit ``b``."""
    try:
        convert(1.0, a, b)
    except UnitMismatch:
        return False
    return True
