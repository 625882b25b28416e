"""Text -> ``syntax.Spec``: the LALR parser for grammar/bolt.lark and readable syntax errors.

lark never escapes this module: its exceptions become ``SpecSyntaxError`` with a span and the expected tokens
written as the user would type them.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, v_args

from boltc import syntax
from boltc.diagnostics import Span, SpecSyntaxError, UsageError
from boltc.resources import grammar_path

# Regex terminals named the way a person reads them; literal terminals are shown quoted.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a quoted string",
    "$END": "end of file",
}


_ESCAPES = {"t": "\t", "n": "\n"}  # any other escaped character stands for itself (\\" and \\\\ included)


@functools.lru_cache(maxsize=2)
def _parser(strict: bool = False) -> Lark:
    """The LALR parser. ``strict`` (no shift/reduce conflicts, no colliding terminals) is a property of the
    grammar file, proven by the tests; checking it costs ~0.4 s, so ordinary loads skip it."""
    return Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", propagate_positions=True,
                maybe_placeholders=True, strict=strict)


def _token_span(path: str, token: Token) -> Span:
    return Span(path, token.line, token.column, token.end_line, token.end_column)


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    pattern = _parser().get_terminal(name).pattern
    return f"'{pattern.value}'" if pattern.type == "str" else name.lower()


@v_args(meta=True)
class _ToSyntax(Transformer):
    """Builds ``syntax`` nodes bottom-up; each node's span comes from lark's position metadata."""

    def __init__(self, path: str, source: str):
        super().__init__()
        self.path = path
        self.source = source

    def _span(self, meta) -> Span:
        return Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def _name(self, token: Token) -> syntax.Name:
        return syntax.Name(str(token), _token_span(self.path, token))

    def _int(self, token: Token) -> syntax.Number:
        return syntax.Number(int(token), _token_span(self.path, token))

    def start(self, meta, children):
        return children[0]

    def model(self, meta, children):
        name, *statements = children
        return syntax.Spec(self.path, self.source, self._name(name), tuple(statements), self._span(meta))

    def _typed_decl(self, keyword: str, meta, children) -> syntax.TypedDecl:
        name, kind, size, *options = children
        return syntax.TypedDecl(keyword, self._name(name), self._name(kind), size, self._span(meta),
                                tuple(o for o in options if o is not None))

    def size(self, meta, children):
        (token,) = children
        return self._int(token) if token.type == "INT" else self._name(token)

    def input_decl(self, meta, children):
        return self._typed_decl("input", meta, children)

    def column_input_decl(self, meta, children):
        name, call = children
        return syntax.ColumnDecl(self._name(name), call, self._span(meta))

    def target_decl(self, meta, children):
        return self._typed_decl("target", meta, children)

    def layer_decl(self, meta, children):
        name, call = children
        return syntax.LayerDecl(self._name(name), call, self._span(meta))

    def loss_decl(self, meta, children):
        return syntax.CallStatement("loss", children[0], self._span(meta))

    def optimizer_decl(self, meta, children):
        return syntax.CallStatement("optimizer", children[0], self._span(meta))

    def train_decl(self, meta, children):
        return syntax.TrainDecl(tuple(c for c in children if c is not None), self._span(meta))

    def metrics_decl(self, meta, children):
        return syntax.MetricsDecl(tuple(children), self._span(meta))

    def metric(self, meta, children):
        name, k = children
        return syntax.MetricRef(self._name(name), None if k is None else self._int(k), self._span(meta))

    def setting(self, meta, children):
        keyword, value = children
        return syntax.Argument(self._name(keyword), value, self._span(meta))

    def call(self, meta, children):
        func, *args = children
        return syntax.Call(self._name(func), tuple(a for a in args if a is not None), self._span(meta))

    def positional(self, meta, children):
        return syntax.Argument(None, children[0], self._span(meta))

    def keyword(self, meta, children):
        keyword, value = children
        return syntax.Argument(self._name(keyword), value, self._span(meta))

    def name_value(self, meta, children):
        return self._name(children[0])

    def int_value(self, meta, children):
        return self._int(children[0])

    def float_value(self, meta, children):
        return syntax.Number(float(children[0]), _token_span(self.path, children[0]))

    def string_value(self, meta, children):
        token = children[0]
        text = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), str(token)[1:-1])
        return syntax.Text(text, _token_span(self.path, token))

    def pair_value(self, meta, children):
        first, second = children
        return syntax.Pair(first, second, self._span(meta))


def parse(source: str, path: str = "<string>") -> syntax.Spec:
    """Parse spec text; ``path`` is only used in spans and messages."""
    try:
        tree = _parser().parse(source)
    except lark.UnexpectedToken as exc:
        token = exc.token
        expected = sorted({_describe_terminal(t) for t in exc.accepts or exc.expected})
        if token.type == "$END":
            lines = source.splitlines() or [""]
            line, column = max(1, len(lines)), len(lines[-1]) + 1
            span = Span(path, line, column, line, column + 1)
            message = "unexpected end of file"
        else:
            span = _token_span(path, token)
            message = f"unexpected {_describe_found(token)}"
        raise SpecSyntaxError(span, message, expected=expected, source=source) from None
    except lark.UnexpectedCharacters as exc:
        span = Span(path, exc.line, exc.column, exc.line, exc.column + 1)
        char = source[exc.pos_in_stream] if exc.pos_in_stream < len(source) else ""
        expected = sorted({_describe_terminal(t) for t in exc.allowed})
        raise SpecSyntaxError(span, f"unexpected character {char!r}", expected=expected, source=source) from None
    return _ToSyntax(path, source).transform(tree)


def _describe_found(token: Token) -> str:
    if token.type in _TERMINAL_WORDS:
        return f"{_TERMINAL_WORDS[token.type].split(' ', 1)[1]} '{token}'"
    return f"'{token}'"


def parse_file(path: str | Path) -> syntax.Spec:
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such spec file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read spec file ({exc.strerror})") from None
    return parse(source, str(path))
