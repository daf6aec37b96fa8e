"""A tolerant parser for a model's reply, and a grammar that makes the reply parseable."""

from __future__ import annotations

import math
import re

from lmtwin.errors import ParseError

_NUMBER = re.compile(r"[-+]?\s?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_numbers(text: str, count: int) -> list[float]:
    """The first ``count`` numbers of ``text``; raises ParseError if there are fewer.

    Tolerates spaces after a sign, extra words, commas and trailing text.
    """
    found = [float(m.replace(" ", "")) for m in _NUMBER.findall(text.split("\n")[0])]
    if len(found) < count:
        raise ParseError(f"expected {count} numbers, found {len(found)}", text)
    values = found[:count]
    if not all(math.isfinite(v) for v in values):
        raise ParseError("reply has a non-finite number", text)
    return values


def reply_grammar(count: int) -> str:
    """GBNF for ``count`` integers (optionally signed, optionally with decimals)
    separated by spaces, then a newline."""
    nums = ' " " '.join(["num"] * count)
    return (
        f'root ::= " " {nums} "\\n"\n'
        'num ::= "-"? digits ("." digits)?\n'
        "digits ::= [0-9] [0-9]? [0-9]? [0-9]? [0-9]? [0-9]?\n"
    )
