"""The parsed spec: frozen dataclasses that mirror the text, each node with its span.

Nothing here is interpreted yet; names are still strings and values still literals. ``check`` turns a ``Spec``
into an ``ir.Model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from boltc.diagnostics import Span


@dataclass(frozen=True, slots=True)
class Name:
    """An identifier as written: a declaration, a reference, or a word such as ``relu`` or ``auto``."""

    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric literal: an int when written without a point or exponent, else a float."""

    value: int | float
    span: Span


@dataclass(frozen=True, slots=True)
class Argument:
    """``value`` or ``keyword=value`` inside a call, or ``keyword = value`` in a train block."""

    keyword: Name | None
    value: "Value"
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    func: Name
    args: tuple[Argument, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Text:
    """A quoted string, its escapes (\\" \\\\ \\t \\n) resolved."""

    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Pair:
    """``(first, second)``, such as a numerical column's range."""

    first: "Value"
    second: "Value"
    span: Span


Value = Union[Name, Number, Text, Pair, Call]


@dataclass(frozen=True, slots=True)
class TypedDecl:
    """``input NAME: KIND[SIZE, option=value ...]`` or ``target NAME: KIND[SIZE, option=value ...]`` (``keyword``
    says which)."""

    keyword: str
    name: Name
    kind: Name
    size: Number | Name  # a Name: `auto`, or a mistake the checker reports
    span: Span
    options: tuple[Argument, ...] = ()


@dataclass(frozen=True, slots=True)
class ColumnDecl:
    """``input NAME: KIND(option=value ...)``: a typed column of a CSV/TSV file, featurized as it is read."""

    name: Name
    call: Call
    span: Span


@dataclass(frozen=True, slots=True)
class LayerDecl:
    """``NAME = OP(argument ...)``: one layer of the network."""

    name: Name
    call: Call
    span: Span


@dataclass(frozen=True, slots=True)
class CallStatement:
    """``loss CALL`` or ``optimizer CALL`` (``keyword`` says which)."""

    keyword: str
    call: Call
    span: Span


@dataclass(frozen=True, slots=True)
class TrainDecl:
    """``train { keyword = value ... }``: the training settings the user fixed."""

    settings: tuple[Argument, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class MetricRef:
    """One metric of the metrics list, with its ``@k`` where written."""

    name: Name
    k: Number | None
    span: Span


@dataclass(frozen=True, slots=True)
class MetricsDecl:
    """``metrics NAME@k, ...``: what evaluation reports."""

    metrics: tuple[MetricRef, ...]
    span: Span


Statement = Union[TypedDecl, ColumnDecl, LayerDecl, CallStatement, TrainDecl, MetricsDecl]


@dataclass(frozen=True, slots=True)
class Spec:
    path: str
    source: str
    name: Name
    statements: tuple[Statement, ...]
    span: Span
