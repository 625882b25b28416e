"""The grammar and the parser: what parses, and the exact syntax errors with their positions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from boltc import syntax
from boltc.diagnostics import SpecSyntaxError
from boltc.parse import parse, parse_file

REPO = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spec_examples import FASHION  # noqa: E402  (the first issue's example)


def test_grammar_is_strict_lalr():
    """No shift/reduce conflicts and no terminals that can match the same text (lark's strict mode)."""
    from boltc.parse import _parser

    assert _parser(strict=True).parse(FASHION)


def test_issue_example_parses_to_what_it_says():
    spec = parse(FASHION, "fashion.bolt")
    assert spec.name.text == "fashion"
    kinds = [(type(s).__name__, getattr(s, "keyword", None)) for s in spec.statements]
    assert kinds == [("TypedDecl", "input"), ("TypedDecl", "target"), ("LayerDecl", None), ("LayerDecl", None),
                     ("CallStatement", "loss"), ("CallStatement", "optimizer"), ("TrainDecl", None),
                     ("MetricsDecl", None)]
    hidden = spec.statements[2]
    assert isinstance(hidden, syntax.LayerDecl)
    assert hidden.name.text == "hidden" and hidden.call.func.text == "dense"
    assert [a.keyword.text if a.keyword else None for a in hidden.call.args] == [None, None, "activation"]
    assert hidden.call.args[1].value.value == 256
    assert (hidden.span.line, hidden.span.column) == (6, 5)
    metrics = spec.statements[7]
    assert [(m.name.text, m.k.value if m.k else None) for m in metrics.metrics] == [("accuracy", None),
                                                                                     ("precision", 1)]
    train = spec.statements[6]
    assert [(s.keyword.text, s.value.value) for s in train.settings] == [("batch_size", 256), ("epochs", 5)]


@pytest.mark.parametrize("path", sorted((REPO / "specs").glob("*.bolt")), ids=lambda p: p.name)
def test_every_shipped_spec_parses(path):
    assert parse_file(path).name.text


def test_numbers_and_nested_calls():
    spec = parse('model m { h = f(1e-3, -4, .5, g(x=2)) }', "m.bolt")
    values = [a.value for a in spec.statements[0].call.args]
    assert values[0].value == pytest.approx(1e-3) and isinstance(values[0].value, float)
    assert values[1].value == -4 and isinstance(values[1].value, int)
    assert values[2].value == 0.5
    assert isinstance(values[3], syntax.Call) and values[3].args[0].keyword.text == "x"


def test_unicode_names_parse():
    spec = parse("model m { input größe: dense[3] }", "m.bolt")
    assert spec.statements[0].name.text == "größe"


def test_trailing_comma_in_train_block():
    spec = parse("model m { train { epochs = 2, } }", "m.bolt")
    assert len(spec.statements[0].settings) == 1


@pytest.mark.parametrize(
    ("text", "message", "line", "column", "expected"),
    [
        ("model m {\n  input a dense[3]\n}", "unexpected name 'dense'", 2, 11, ("':'",)),
        ("model m {\n  h = \n}", "unexpected '}'", 3, 1, ("a name",)),
        ("model m {\n  input a: dense[3]\n", "unexpected end of file", 2, 20, None),
        ("model m { $ }", "unexpected character '$'", 1, 11, None),
        ("model m { input a: dense[3.5] }", "unexpected number '.5'", 1, 27, ("','", "']'")),
        ("modle m { }", "unexpected name 'modle'", 1, 1, ("'model'",)),
    ],
)
def test_syntax_errors_name_position_and_expectation(text, message, line, column, expected):
    with pytest.raises(SpecSyntaxError) as caught:
        parse(text, "bad.bolt")
    error = caught.value
    assert error.message == message
    assert (error.span.path, error.span.line, error.span.column) == ("bad.bolt", line, column)
    if expected is not None:
        assert error.expected == expected
    assert str(error) == f"bad.bolt:{line}:{column}: error: {message}"


def test_syntax_error_renders_source_line_with_caret():
    with pytest.raises(SpecSyntaxError) as caught:
        parse("model m {\n    input a dense[3]\n}", "bad.bolt")
    assert caught.value.render() == (
        "bad.bolt:2:13: error: unexpected name 'dense'\n"
        "   2 |     input a dense[3]\n"
        "                   ^^^^^\n"
        "expected one of: ':'"
    )


def test_end_of_file_lists_what_could_follow():
    with pytest.raises(SpecSyntaxError) as caught:
        parse("model m {", "bad.bolt")
    assert caught.value.expected == ("'input'", "'loss'", "'metrics'", "'optimizer'", "'target'", "'train'",
                                     "'}'", "a name")


def test_lark_never_escapes():
    for text in ["", "model", "model m { h = dense(((( }", "\x00\x01", "model m { input a: dense[99999999999999999999] }"]:
        try:
            parse(text, "x.bolt")
        except SpecSyntaxError as error:
            assert error.span.line >= 1
