import pytest

from lmtwin import ParseError, Variable
from lmtwin.predictors import Query
from lmtwin.prompt import parse_numbers, render, reply_grammar
from lmtwin.prompt.render import exponent
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


def test_exponent_gives_a_few_significant_digits():
    assert exponent([312.4, 250.0], 3) == 0
    assert exponent([0.0123], 3) == 4
    assert exponent([0.0, 0.0], 3) == 0
    assert exponent([5.0, 0.0, 5.0], 3) == 0  # whole numbers stay whole
    assert exponent([5000.0], 2) == -2


def test_render_rows_of_scaled_changes_with_notes_and_missing():
    schema = Schema([Variable("v", "state", "cm3", "tumour volume"), Variable("ca", "action")])
    ex = [
        Transition("e", 0, {"v": 100.0}, {"ca": 5.0}, {"v": 98.5}),
        Transition("e", 1, {"v": 98.5}, {}, {"v": 99.0}),
        Transition("e", 2, {"v": 99.0}, {"ca": 0.0}, {}),
    ]
    q = Query({"v": 97.0}, {"ca": 5.0}, ["v"], schema, [Note(0, "chemo was doubled")])
    prompt, layout = render(q, ex)
    lines = prompt.splitlines()
    assert lines[0] == "# v: tumour volume [cm3]"
    assert "# note: chemo was doubled" in lines
    assert "# v*10 ca -> dv*10" in lines
    assert "1000 5 -> -15" in lines
    assert "985 ? -> 5" in lines  # a missing action is written as ?, not 0
    assert len([x for x in lines if "->" in x]) == 4  # header, 2 complete examples, query
    assert lines[-1] == "970 5 ->"  # no space: " -" is one token, the sign of a change
    assert layout.decode([-15.0]) == [-1.5]


def test_grammar_mentions_every_number():
    g = reply_grammar(3)
    assert g.count("num") >= 4 and g.startswith("root ::=")


def test_an_input_constant_in_every_row_is_stated_once():
    schema = Schema([Variable("v", "state", "cm3", "tumour volume"),
                     Variable("ca", "action", "mg", "chemo dose")])
    ex = [Transition("e", t, {"v": 100.0 + t}, {"ca": 0.0}, {"v": 101.0 + t}) for t in range(3)]
    prompt, layout = render(Query({"v": 90.0}, {"ca": 0.0}, ["v"], schema), ex)
    lines = prompt.splitlines()
    assert "# ca: chemo dose [mg]" in lines and "# ca = 0 in every row" in lines
    assert layout.inputs == ["v"] and "# v -> dv" in lines and lines[-1] == "90 ->"
    # a different value in the query keeps the column
    _, layout = render(Query({"v": 90.0}, {"ca": 5.0}, ["v"], schema), ex)
    assert layout.inputs == ["v", "ca"] and layout.fixed == {}


def test_the_fixed_header_comes_first_whichever_inputs_are_constant():
    """Two queries of one twin share their first lines (the backend's KV cache keeps
    them), though a state is constant in one prompt and not in the other."""
    schema = Schema([Variable("v", "state", "cm3", "tumour volume"),
                     Variable("w", "state", "kg", "body weight"),
                     Variable("ca", "action", "mg", "chemo dose")])
    ex = [Transition("e", t, {"v": 100.0 + t, "w": 70.0}, {"ca": float(t)},
                     {"v": 101.0 + t, "w": 70.0}) for t in range(3)]
    notes = [Note(0, "chemo shrinks the tumour")]
    fixed, layout = render(Query({"v": 90.0, "w": 70.0}, {"ca": 0.0}, ["v"], schema, notes), ex)
    varied, _ = render(Query({"v": 90.0, "w": 71.0}, {"ca": 0.0}, ["v"], schema, notes), ex)
    head = ["# v: tumour volume [cm3]", "# w: body weight [kg]", "# ca: chemo dose [mg]",
            "# note: chemo shrinks the tumour"]
    assert layout.fixed == {"w": 70.0}
    assert fixed.splitlines()[:4] == head and varied.splitlines()[:4] == head
    assert fixed.splitlines()[4] == "# w = 70 in every row"


def test_a_row_budget_keeps_the_nearest_examples():
    schema = Schema([Variable("v", "state"), Variable("w", "state")])
    ex = [Transition("e", t, {"v": 10.0 + t, "w": 50.0 - t}, {}, {"v": 12.0 + t, "w": 49.0 - t})
          for t in range(8)]  # nearest last, as the retriever gives them
    q = Query({"v": 20.0, "w": 40.0}, {}, ["v", "w"], schema)
    full, layout = render(q, ex, describe=False)
    assert layout.rows == 8
    short, kept = render(q, ex, describe=False, max_row_tokens=40)
    rows = [x for x in short.splitlines() if not x.startswith("#")][:-1]
    assert kept.rows == len(rows) == 2  # each row "17 43 -> 2 -1" is 15 characters and more
    assert rows == [x for x in full.splitlines() if not x.startswith("#")][-3:-1]
    _, one = render(q, ex, describe=False, max_row_tokens=1)
    assert one.rows == 1  # never none
