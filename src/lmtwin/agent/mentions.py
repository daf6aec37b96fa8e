"""Which of the twin's variables a request names: by name, by words of the description.

A variable's keywords are the parts of its name and the content words of its
description. A text word matches a keyword when they are equal, one is a prefix of the
other (at least 4 letters: "temp" / "temperature"), or they share a long common prefix
("radio" / "radiation"). Keywords shared by several variables weigh less. A variable
whose matched words are all matched, as well or better, by another is dropped ("chemo"
alone names the dose and the concentration; "chemo concentration" names only the latter).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmtwin.agent.text import words
from lmtwin.schema import Schema, Variable

STOP = {
    "the", "a", "an", "of", "in", "on", "at", "to", "for", "from", "and", "or", "is", "are",
    "be", "by", "with", "as", "it", "its", "this", "that", "what", "which", "when", "how",
    "do", "does", "did", "we", "our", "us", "you", "me", "my", "i", "will", "would", "can",
    "should", "now", "then", "there", "here", "please", "show", "give", "given", "set",
    "open", "opening", "close", "closed", "shut", "fully", "full", "rate", "value", "values",
    "level's", "current", "new", "variable", "variables", "twin", "system", "into", "over",
    "under", "up", "down", "off", "per", "amount", "some", "all", "any", "every", "much",
    "many", "if", "run", "runs", "running", "start", "stop", "next", "last", "within", "keep",
}


def _stem(word: str) -> str:
    word = word.removesuffix("'s")
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def similar(a: str, b: str) -> bool:
    """Whether text word ``a`` matches keyword ``b``."""
    if a == b:
        return True
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 4 and long_.startswith(short):
        return True
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    return common >= 4 and common >= 0.8 * len(short)


def keywords(var: Variable) -> tuple[list[str], list[str]]:
    """(name parts, description content words) of a variable, stemmed."""
    name = [_stem(p) for p in var.name.lower().split("_") if p]
    desc = [_stem(w) for w, _ in words(var.description.lower())
            if w not in STOP and not w[0].isdigit() and len(w) > 1]
    return name, list(dict.fromkeys(desc))


@dataclass
class Mention:
    """A variable named in the text: its score and the text words that matched."""

    variable: Variable
    score: float
    spans: list[tuple[int, int]] = field(default_factory=list)
    matched: frozenset[int] = frozenset()

    @property
    def start(self) -> int:
        return min(s for s, _ in self.spans)


def find(text: str, schema: Schema, start: int = 0, end: int | None = None,
         roles: tuple[str, ...] = ()) -> list[Mention]:
    """Variables (of ``roles``, or any) named in ``text[start:end]`` (normalised text),
    best first, dominated ones dropped."""
    tokens = [(w, i) for w, i in words(text) if start <= i < (len(text) if end is None else end)]
    keys = {n: keywords(v) for n, v in schema.variables.items()}
    weight: dict[str, int] = {}
    for name_parts, desc in keys.values():
        for k in set(name_parts) | set(desc):
            weight[k] = weight.get(k, 0) + 1
    found: list[Mention] = []
    for n, var in schema.variables.items():
        if roles and var.role not in roles:
            continue
        name_parts, desc = keys[n]
        score, spans, matched, hit_name = 0.0, [], set(), set()
        for index, (w, at) in enumerate(tokens):
            stem = _stem(w)
            exact_name = w == n.lower() and len(n) <= 3
            if w in STOP and not exact_name:
                continue
            if exact_name:
                # short names ("v", "ca") only when written as they are
                score += 2.0
                hit_name.add(n)
            elif len(stem) >= 3:
                for k in name_parts:
                    if len(k) >= 3 and similar(stem, k):
                        score += 1.5 / weight[k]
                        hit_name.add(k)
                        break
                else:
                    for k in desc:
                        if len(k) >= 3 and similar(stem, k):
                            score += 1.0 / weight[k]
                            break
                    else:
                        continue
            else:
                continue
            spans.append((at, at + len(w)))
            matched.add(index)
        if spans:
            if name_parts and hit_name >= set(name_parts):
                score += 0.5  # every part of the name is there
            found.append(Mention(var, score, spans, frozenset(matched)))
    kept = [m for m in found if not any(
        o is not m and m.matched <= o.matched and (m.score < o.score or (
            m.score == o.score and m.matched < o.matched)) for o in found)]
    return sorted(kept, key=lambda m: -m.score)
