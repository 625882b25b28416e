"""Source positions and the errors every stage raises.

A leaf module: every stage may import it, it imports no stage. Errors render as
``path:line:col: error: message`` followed by the source line with carets under the span, then what was
expected and a hint, the way compilers people already know print them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file; lines and columns count from 1, ``end_column`` is exclusive."""

    path: str
    line: int
    column: int
    end_line: int
    end_column: int

    def sort_key(self) -> tuple[str, int, int]:
        return (self.path, self.line, self.column)

    def to_json(self) -> dict:
        return {"path": self.path, "line": self.line, "column": self.column}


class BoltError(Exception):
    """Every error a user can act on. The CLI prints these without a traceback."""

    exit_code = 1

    def render(self, color: bool = False) -> str:
        return f"error: {self}"


def _caret_excerpt(span: Span, source: str | None) -> list[str]:
    if source is None:
        return []
    lines = source.splitlines()
    if not 1 <= span.line <= len(lines):
        return []
    text = lines[span.line - 1].expandtabs(1)
    end = span.end_column if span.end_line == span.line else len(text) + 1
    width = max(1, end - span.column)
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * len(gutter) + " " * (span.column - 1) + "^" * width]


class SpecProblem(BoltError):
    """One mistake in a spec, at a position."""

    exit_code = 2

    def __init__(self, span: Span, message: str, *, expected: Sequence[str] = (), hint: str = "",
                 source: str | None = None):
        super().__init__(message)
        self.span = span
        self.message = message
        self.expected = tuple(expected)
        self.hint = hint
        self.source = source

    def headline(self) -> str:
        return f"{self.span.path}:{self.span.line}:{self.span.column}: error: {self.message}"

    def render(self, color: bool = False) -> str:
        head = self.headline()
        if color:
            head = f"\x1b[1m{self.span.path}:{self.span.line}:{self.span.column}:\x1b[0m \x1b[31merror:\x1b[0m {self.message}"
        out = [head, *_caret_excerpt(self.span, self.source)]
        if self.expected:
            out.append("expected one of: " + ", ".join(self.expected))
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.headline()


class SpecSyntaxError(SpecProblem):
    """The text does not follow the grammar."""


class SpecError(SpecProblem):
    """The text parses but does not describe a valid model."""


class SpecErrors(BoltError):
    """All semantic errors of one spec, sorted by position."""

    exit_code = 2

    def __init__(self, errors: Iterable[SpecProblem]):
        self.errors = tuple(sorted(errors, key=lambda e: e.span.sort_key()))
        super().__init__("\n".join(e.headline() for e in self.errors))

    def render(self, color: bool = False) -> str:
        body = "\n\n".join(e.render(color) for e in self.errors)
        count = len(self.errors)
        return f"{body}\n\n{count} error{'s' if count != 1 else ''}"


class BuildError(BoltError):
    """The C compiler rejected generated code or could not be run."""

    def __init__(self, message: str, *, command: Sequence[str] = (), log_path: str = "", stderr_tail: str = "",
                 c_path: str = ""):
        super().__init__(message)
        self.command = tuple(command)
        self.log_path = log_path
        self.stderr_tail = stderr_tail
        self.c_path = c_path

    def render(self, color: bool = False) -> str:
        parts = [f"error: {self}"]
        if self.c_path:
            parts.append(f"generated C: {self.c_path}")
        if self.log_path:
            parts.append(f"build log: {self.log_path}")
        if self.stderr_tail:
            parts.append(self.stderr_tail)
        return "\n".join(parts)


class DataError(BoltError):
    """A data file or array that cannot be used, with the file and line where that is known."""

    def __init__(self, path: str, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.message = message


class ModelFileError(BoltError):
    """A saved model that cannot be read or written."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


class UsageError(BoltError):
    """A call or option that cannot be honoured, e.g. a batch larger than the spec allows."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint naming the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def choices_text(values: Iterable[str]) -> str:
    """`a, b or c`: the values a message says were expected."""
    values = list(values)
    return ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]
