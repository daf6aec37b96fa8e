import pytest

from lmtwin import ParseError, Variable
from lmtwin.predictors import Query
from lmtwin.prompt import parse_numbers, render, reply_grammar
from lmtwin.prompt.render import decimals
from lmtwin.schema import Schema
from lmtwin.store import Note
from lmtwin.types import Transition


@pytest.mark.parametrize(
    "text,count,expected",
    [
        (" +3.41 -0.50\n", 2, [3.41, -0.5]),
        ("dv = + 3.4, dc = -0.5 and more", 2, [3.4, -0.5]),
        (" 1e-3 2", 2, [0.001, 2.0]),
        (" .5", 1, [0.5]),
    ],
)
def test_parse_tolerates(text, count, expected):
    assert parse_numbers(text, count) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "up a bit", " +1.0", "\n+1 +2"])
def test_parse_errors_carry_raw_text(text):
    with pytest.raises(ParseError) as info:
        parse_numbers(text, 2)
    assert info.value.raw == text


def test_decimals_give_three_significant_digits():
    assert decimals([312.4, 250.0]) == 0
    assert decimals([0.0123]) == 4
    assert decimals([0.0, 0.0]) == 0


def test_render_rows_of_changes_with_notes_and_missing():
    schema = Schema([Variable("v", "state", "cm3", "tumour volume"), Variable("ca", "action")])
    ex = [
        Transition("e", 0, {"v": 100.0}, {"ca": 5.0}, {"v": 98.5}),
        Transition("e", 1, {"v": 98.5}, {}, {"v": 99.0}),
        Transition("e", 2, {"v": 99.0}, {"ca": 0.0}, {}),
    ]
    q = Query({"v": 97.0}, {"ca": 5.0}, ["v"], schema, [Note(0, "chemo was doubled")])
    prompt, layout = render(q, ex)
    lines = prompt.splitlines()
    assert lines[0] == "# v: tumour volume cm3 (state)"
    assert "# note: chemo was doubled" in lines
    assert "# v ca -> dv" in lines
    assert "100.0 5 -> -1.50" in lines
    assert "98.5 ? -> +0.50" in lines
    assert len([x for x in lines if "->" in x]) == 4  # header, 2 complete examples, query
    assert lines[-1] == "97.0 5 ->"
    assert layout.targets == ["v"]


def test_grammar_mentions_every_number():
    g = reply_grammar(3)
    assert g.count("num") >= 4 and g.startswith("root ::=")
