"""The checker: a valid spec becomes the model it describes; each mistake is reported with message and position,
all of them at once, sorted."""

from __future__ import annotations

import pytest

from boltc import ir
from boltc.check import check
from boltc.diagnostics import SpecErrors
from boltc.parse import parse

VALID = """\
model m {
    input  x: dense[20]
    target y: classes[4]
    h = dense(x, 8, activation=relu)
    o = dense(h, 4, activation=softmax)
    loss cross_entropy(o, y)
}
"""


def errors_of(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(SpecErrors) as caught:
        check(parse(text, "m.bolt"))
    return [(e.span.line, e.span.column, e.message) for e in caught.value.errors]


def with_body(body: str, target: str = "classes[4]") -> str:
    return f"model m {{\n    input  x: dense[20]\n    target y: {target}\n{body}}}\n"


def test_valid_spec_means_what_it_says():
    model = check(parse(VALID, "m.bolt"))
    assert [i.name for i in model.inputs] == ["x"] and model.inputs[0].kind is ir.InputKind.DENSE
    assert model.target == ir.Target("y", ir.TargetKind.CLASSES, 4, model.target.span)
    hidden, output = model.layers
    assert (hidden.index, hidden.in_dim, hidden.units, hidden.activation) == (0, 20, 8, ir.Activation.RELU)
    assert hidden.source == ir.NodeRef(True, 0)
    assert output.source == ir.NodeRef(False, 0) and output.in_dim == 8
    assert model.loss.output == 1 and model.loss.kind is ir.LossKind.CROSS_ENTROPY
    assert model.inputs[0].standardize
    # neither rate nor epochs named: both chosen on the data
    assert model.optimizer.kind is ir.OptimizerKind.ADAM and model.optimizer.learning_rate is None
    assert model.train == ir.TrainConfig(batch_size=256, epochs=None, seed=0, threads=None)
    assert [m.label for m in model.metrics] == ["loss", "accuracy"]


def test_layers_come_out_in_dependency_order_whatever_the_text_order():
    text = with_body("""\
    o = dense(c, 4, activation=softmax)
    c = concat(a, b)
    a = dense(x, 3, activation=relu)
    b = dense(x, 5, activation=tanh, bias=false)
    loss cross_entropy(o, y)
""")
    model = check(parse(text, "m.bolt"))
    assert [layer.name for layer in model.layers] == ["a", "b", "c", "o"]
    concat = model.layers[2]
    assert isinstance(concat, ir.ConcatLayer) and concat.dim == 8
    assert concat.sources == (ir.NodeRef(False, 0), ir.NodeRef(False, 1))
    assert model.layers[1].bias is False and model.layers[3].in_dim == 8


def test_sparsity_values():
    text = with_body("""\
    h = dense(x, 8, activation=relu, sparsity=0.25)
    o = dense(h, 4, activation=softmax, sparsity=auto)
    loss cross_entropy(o, y)
""")
    model = check(parse(text, "m.bolt"))
    assert model.layers[0].sparsity == ir.Sparsity(0.25)
    assert model.layers[1].sparsity == ir.Sparsity(None, auto=True)


CASES = [
    ("undefined name with suggestion", with_body("""\
    h = dense(xx, 8, activation=relu)
    o = dense(h, 4, activation=softmax)
    loss cross_entropy(o, y)
"""), [(4, 15, "undefined name 'xx'")]),
    ("duplicate name", with_body("""\
    h = dense(x, 8, activation=relu)
    h = dense(x, 8, activation=relu)
    o = dense(h, 4, activation=softmax)
    loss cross_entropy(o, y)
"""), [(5, 5, "duplicate name 'h' (first defined at line 4)")]),
    ("cycle", with_body("""\
    a = dense(b, 4, activation=relu)
    b = dense(a, 4, activation=relu)
    o = dense(b, 4, activation=softmax)
    loss cross_entropy(o, y)
"""), [(4, 5, "layers form a cycle: a -> b -> a")]),
    ("layer feeding nothing and unused input", """\
model m {
    input  x: dense[20]
    input  z: dense[3]
    target y: classes[4]
    h = dense(x, 8, activation=relu)
    spare = dense(x, 8, activation=relu)
    o = dense(h, 4, activation=softmax)
    loss cross_entropy(o, y)
}
""", [(3, 5, "input 'z' is never used"),
      (6, 5, "layer 'spare' feeds nothing: no layer or loss reads it")]),
    ("unused chain", with_body("""\
    h = dense(x, 8, activation=relu)
    a = dense(x, 8, activation=relu)
    b = dense(a, 8, activation=relu)
    o = dense(h, 4, activation=softmax)
    loss cross_entropy(o, y)
"""), [(5, 5, "layer 'a' is unused: nothing it feeds reaches the loss"),
       (6, 5, "layer 'b' feeds nothing: no layer or loss reads it")]),
    ("output size vs target", with_body("""\
    o = dense(x, 5, activation=softmax)
    loss cross_entropy(o, y)
"""), [(4, 5, "layer 'o' has 5 units but target 'y' has 4 classes")]),
    ("softmax needs cross_entropy", with_body("""\
    o = dense(x, 4, activation=softmax)
    loss binary_cross_entropy(o, y)
"""), [(5, 5, "binary_cross_entropy needs a sigmoid output; layer 'o' has activation=softmax")]),
    ("cross_entropy needs softmax", with_body("""\
    o = dense(x, 4, activation=sigmoid)
    loss cross_entropy(o, y)
"""), [(5, 5, "cross_entropy needs a softmax output; layer 'o' has activation=sigmoid")]),
    ("sparsity out of range", with_body("""\
    o = dense(x, 4, activation=softmax, sparsity=0)
    loss cross_entropy(o, y)
"""), [(4, 50, "sparsity must be a fraction in (0, 1], got 0")]),
    ("zero and negative sizes", """\
model m {
    input  x: dense[0]
    target y: classes[-2]
    o = dense(x, -1, activation=softmax)
    loss cross_entropy(o, y)
}
""", [(2, 21, "an input's size must be between 1 and 2147483647, got 0"),
      (3, 23, "a target's size must be between 1 and 2147483647, got -2"),
      (4, 18, "units must be between 1 and 2147483647, got -1")]),
    ("concat cannot be the loss output", with_body("""\
    a = dense(x, 2, activation=relu)
    c = concat(a, x)
    loss cross_entropy(c, y)
"""), [(6, 24, "the loss must read a dense layer; 'c' is a concat")]),
    ("unknown layer kind, keyword and activation", with_body("""\
    h = dence(x, 8)
    o = dense(x, 4, activaton=softmax)
    p = dense(x, 4, activation=softmx)
    loss cross_entropy(p, y)
"""), [(4, 9, "unknown layer kind 'dence'; expected add, concat or dense"),
       (5, 21, "dense() has no parameter 'activaton'"),
       (6, 32, "activation must be relu, tanh, sigmoid, softmax or linear, got 'softmx'")]),
    ("softmax on a hidden layer", with_body("""\
    h = dense(x, 8, activation=softmax)
    o = dense(h, 4, activation=softmax)
    loss cross_entropy(o, y)
"""), [(4, 5, "softmax is only allowed on the output layer; 'h' feeds another layer")]),
    ("train block, optimizer, metrics", with_body("""\
    o = dense(x, 4, activation=softmax)
    loss cross_entropy(o, y)
    optimizer adam(learning_rate=-1, beta2=1)
    train { batch_size = 0, epocs = 3 }
    metrics accuracy@2, precision, recall@5
"""), [(6, 34, "learning_rate must be positive (or auto), got -1"),
       (6, 44, "beta2 must be in [0, 1), got 1"),
       (7, 26, "batch_size must be between 1 and 65536, got 0"),
       (7, 29, "unknown train setting 'epocs'; expected batch_size, epochs, seed, threads, rebuild, "
               "freeze_tables_after, validation, max_epochs, patience, restore_best, schedule or warmup"),
       (8, 13, "accuracy takes no @k"),
       (8, 25, "precision needs a cut-off, e.g. precision@1"),
       (8, 43, "the k of recall@k must be between 1 and 4, got 5")]),
    ("adam's moment storage", with_body("""\
    o = dense(x, 4, activation=softmax)
    loss cross_entropy(o, y)
    optimizer adam(moments=fp16)
"""), [(6, 28, "moments must be fp32 or bf16, got 'fp16'")]),
    ("sampling needs sparsity and a known family", with_body("""\
    o = dense(x, 4, activation=softmax, sampling=dwta(hashes=3))
    p = dense(x, 4, activation=softmax, sparsity=0.5, sampling=minhsah(hashes=3))
    q = dense(x, 4, activation=softmax, sparsity=0.5, sampling=dwta(hashes=9, tabels=2))
    r = dense(x, 4, activation=softmax, sparsity=0.5, sampling=5)
    loss cross_entropy(o, y)
    train { rebuild = 0 }
"""), [(4, 41, "sampling needs a sparse layer: add sparsity=<fraction> or sparsity=auto"),
       (5, 64, "the sampling family must be dwta, minhash or srp, got 'minhsah'"),
       (6, 76, "hashes must be between 1 and 8, got 9"),
       (6, 79, "dwta() has no parameter 'tabels'"),
       (7, 64, "sampling must be a hash family call, e.g. sampling=dwta(hashes=5, tables=164)"),
       (9, 23, "rebuild (batches between hash-table rebuilds, or auto) must be at least 1, got 0")]),
    ("row_candidates needs batch-shared active sets", with_body("""\
    h = dense(x, 8, activation=relu)
    o = dense(h, 4, activation=sigmoid, sparsity=0.5, sampling=dwta(row_candidates=2))
    p = dense(h, 4, activation=softmax, sparsity=0.5, sampling=dwta(active_sets=row, row_candidates=0))
    q = dense(h, 4, activation=softmax, sparsity=0.5, sampling=dwta(row_candidates=-1))
    loss binary_cross_entropy(o, y)
""", "multilabel[4]"), [
       (5, 5, "row_candidates applies to batch-shared active sets, but layer 'o' has one active set per row (a "
              "sigmoid output's default)"),
       (6, 86, "row_candidates applies to batch-shared active sets, not to active_sets=row"),
       (7, 84, "row_candidates must be between 0 and 1048576, got -1")]),
    ("precision=bf16 needs batch-shared active sets", with_body("""\
    h = dense(x, 8, activation=relu)
    o = dense(h, 4, activation=sigmoid, sparsity=0.5, precision=bf16)
    p = dense(h, 4, activation=softmax, sparsity=0.5, sampling=dwta(active_sets=row), precision=bf16)
    q = dense(h, 4, activation=softmax, sparsity=0.5, precision=fp16)
    r = dense(h, 4, precision=bf16)
    loss binary_cross_entropy(o, y)
""", "multilabel[4]"), [
       (5, 5, "precision=bf16 applies to batch-shared active sets, but layer 'o' has one active set per row (a "
              "sigmoid output's default)"),
       (6, 87, "precision=bf16 applies to batch-shared active sets, not to active_sets=row"),
       (7, 65, "precision must be fp32 or bf16, got 'fp16'"),
       (8, 21, "precision=bf16 applies to sparse layers with batch-shared active sets: add sparsity=<fraction> or "
               "sparsity=auto")]),
    ("missing target and loss", "model m {\n    input x: dense[3]\n    h = dense(x, 2)\n}\n",
     [(1, 7, "model has no target: declare one, e.g. 'target label: classes[10]'"),
      (1, 7, "model has no loss: add e.g. 'loss cross_entropy(scores, label)'")]),
    ("sparse input cannot be concatenated", """\
model m {
    input  x: sparse[20]
    target y: classes[4]
    a = dense(x, 2, activation=relu)
    c = concat(a, x)
    o = dense(c, 4, activation=softmax)
    loss cross_entropy(o, y)
}
""", [(5, 5, "concat 'c' joins a sparse input; feed the sparse input to a dense layer first and concat that "
             "layer")]),
]


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_mistake_is_reported_exactly(name, text, expected):
    assert errors_of(text) == expected


def test_suggestions_are_attached():
    with pytest.raises(SpecErrors) as caught:
        check(parse(with_body("    o = dense(xx, 4, activation=softmx)\n    loss cross_entropy(o, y)\n"), "m.bolt"))
    hints = [e.hint for e in caught.value.errors]
    assert hints == ["did you mean 'x'?", "did you mean 'softmax'?"]


def test_three_mistakes_are_all_reported_in_order():
    text = with_body("""\
    metrics acuracy
    train { seed = -1 }
    o = dense(h, 5, activation=softmax)
    h = dense(x, 8, activation=relu)
    loss cross_entropy(o, y)
""")
    lines = [(line, message) for line, _, message in errors_of(text)]
    assert lines == [(4, "unknown metric 'acuracy'; expected accuracy, loss, precision@k or recall@k"),
                     (5, "seed must be between 0 and 9223372036854775807, got -1"),
                     (6, "layer 'o' has 5 units but target 'y' has 4 classes")]


def test_rendered_error_shows_caret_and_hint():
    with pytest.raises(SpecErrors) as caught:
        check(parse(with_body("    o = dense(xx, 4, activation=softmax)\n    loss cross_entropy(o, y)\n"), "m.bolt"))
    assert caught.value.render() == (
        "m.bolt:4:15: error: undefined name 'xx'\n"
        "   4 |     o = dense(xx, 4, activation=softmax)\n"
        "                     ^^\n"
        "hint: did you mean 'x'?\n\n1 error"
    )
