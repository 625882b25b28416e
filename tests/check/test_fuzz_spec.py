"""Random and mutated specs: the only outcomes are a checked model or a spec error with a position."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltc.check import check
from boltc.emit import emit
from boltc.machine import probe
from boltc.diagnostics import SpecErrors, SpecSyntaxError
from boltc.parse import parse
from boltc.plan import plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fuzzing import examples  # noqa: E402

BASE = """\
model fashion {
    input  pixels: dense[784]
    target label:  classes[10]
    hidden = dense(pixels, 256, activation=relu, sparsity=0.5)
    extra = concat(hidden, pixels)
    scores = dense(extra, 10, activation=softmax)
    loss      cross_entropy(scores, label)
    optimizer adam(learning_rate=0.001)
    train     { batch_size = 256, epochs = 5 }
    metrics   accuracy, precision@1
}
"""
MACHINE = probe()
TOKENS = ["model", "input", "target", "dense", "sparse", "classes", "multilabel", "concat", "loss", "optimizer",
          "train", "metrics", "relu", "softmax", "sigmoid", "auto", "true", "{", "}", "(", ")", "[", "]", "=", ",",
          ":", "@", "0", "-1", "1e9", "0.5", "pixels", "hidden", "label", "scores", "\n", "#", "int", "größe"]


def outcome(text: str) -> None:
    try:
        model = check(parse(text, "fuzz.bolt"))
    except SpecSyntaxError as error:
        assert error.span.line >= 1 and error.span.column >= 1
    except SpecErrors as errors:
        assert errors.errors
        for error in errors.errors:
            assert error.span.line >= 1 and error.span.column >= 1 and error.message
            assert error.render().startswith(f"fuzz.bolt:{error.span.line}:{error.span.column}: error: ")
    else:
        assert model.layers and model.loss.output < len(model.layers)
        emit(plan(model, MACHINE))  # a checked model always plans and emits (compiling is the kernel tests' job)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_specs_give_a_model_or_positioned_errors(data):
    text = BASE
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        token = data.draw(st.sampled_from(TOKENS))
        span = data.draw(st.integers(1, 12))
        if action == "insert":
            text = text[:at] + token + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + span:]
        else:
            text = text[:at] + token + text[at + span:]
    outcome(text)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup_never_escapes(tokens):
    outcome(" ".join(tokens))


@settings(max_examples=examples(100), deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_escapes(text):
    outcome(text)
