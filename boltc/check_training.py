"""The checker's rules for a spec's optimizer, train block and metrics (``boltc.check`` runs them)."""

from __future__ import annotations

from dataclasses import replace

from boltc import check_inputs, ir, syntax
from boltc.diagnostics import choices_text, did_you_mean

TRAIN_SETTINGS = ("batch_size", "epochs", "seed", "threads", "rebuild", "freeze_tables_after", "validation",
                  "max_epochs", "patience", "restore_best", "schedule", "warmup")
SCHEDULES = ("constant", "linear", "cosine")
OPTIMIZER_PARAMS = {
    ir.OptimizerKind.ADAM: ("learning_rate", "beta1", "beta2", "eps", "moments"),
    ir.OptimizerKind.SGD: ("learning_rate",),
}
MOMENT_STORAGE = ("fp32", "bf16")
DEFAULT_OPTIMIZER = ir.Optimizer(ir.OptimizerKind.ADAM, learning_rate=None, beta1=0.9, beta2=0.999, eps=1e-7)
DEFAULT_TRAIN = ir.TrainConfig(batch_size=256, epochs=None, seed=0, threads=None)
METRICS_WITH_K = ("precision", "recall")
METRICS_WITHOUT_K = ("accuracy", "loss")
MAX_BATCH = 65536


def optimizer_of(checker, decl: syntax.CallStatement | None) -> ir.Optimizer:
    if decl is None:
        return DEFAULT_OPTIMIZER
    word = checker.word(decl.call.func, "the optimizer", [k.value for k in ir.OptimizerKind])
    if word is None:
        return DEFAULT_OPTIMIZER
    kind = ir.OptimizerKind(word)
    args = checker.bind(decl.call, (), OPTIMIZER_PARAMS[kind])
    values = {"learning_rate": DEFAULT_OPTIMIZER.learning_rate, "beta1": DEFAULT_OPTIMIZER.beta1,
              "beta2": DEFAULT_OPTIMIZER.beta2, "eps": DEFAULT_OPTIMIZER.eps}
    rules = {
        "learning_rate": (lambda x: x > 0, "positive (or auto)"),
        "beta1": (lambda x: 0 <= x < 1, "in [0, 1)"),
        "beta2": (lambda x: 0 <= x < 1, "in [0, 1)"),
        "eps": (lambda x: x > 0, "positive"),
    }
    for name, arg in args.items():
        if name == "moments":
            storage = checker.word(arg.value, "moments", MOMENT_STORAGE)
            if storage is not None:
                values["moments"] = storage
            continue
        if name == "learning_rate" and isinstance(arg.value, syntax.Name) and arg.value.text == "auto":
            values[name] = None
            continue
        valid, rule = rules[name]
        value = checker.number(arg.value, name, valid, rule)
        if value is not None:
            values[name] = value
    return ir.Optimizer(kind, **values)


def train_of(checker, decl: syntax.TrainDecl | None) -> ir.TrainConfig:
    if decl is None:
        return DEFAULT_TRAIN
    values: dict[str, object] = {}
    limits = {"batch_size": (1, MAX_BATCH), "epochs": (1, None), "seed": (0, 2**63 - 1), "threads": (1, 4096),
              "rebuild": (1, None), "freeze_tables_after": (0, None), "max_epochs": (1, 10000),
              "patience": (1, 10000), "warmup": (0, None)}
    keys = {"rebuild": "rebuild_every"}
    autos = ("threads", "rebuild", "epochs")  # auto: the machine's cores, the decaying schedule, early stopping
    seen: set[str] = set()
    for setting in decl.settings:
        key = setting.keyword
        assert key is not None
        if key.text not in TRAIN_SETTINGS:
            checker.error(key.span, f"unknown train setting '{key.text}'; expected {choices_text(TRAIN_SETTINGS)}",
                          did_you_mean(key.text, TRAIN_SETTINGS))
            continue
        if key.text in seen:
            checker.error(key.span, f"train setting '{key.text}' given twice")
            continue
        seen.add(key.text)
        value = setting.value
        if key.text in autos and isinstance(value, syntax.Name) and value.text == "auto":
            values[keys.get(key.text, key.text)] = None
        elif key.text == "validation":
            values["validation"] = validation_of(checker, value)
        elif key.text == "restore_best":
            values["restore_best"] = check_inputs.flag_of(checker, value, "restore_best")
        elif key.text == "schedule":
            values["schedule"] = checker.word(value, "schedule", SCHEDULES)
        else:
            what = {"rebuild": "rebuild (batches between hash-table rebuilds, or auto)",
                    "epochs": "epochs (a count, or auto)"}.get(key.text, key.text)
            values[keys.get(key.text, key.text)] = checker.integer(value, what, *limits[key.text])
    config = replace(DEFAULT_TRAIN, **{name: value for name, value in values.items()
                                       if value is not None or name in ("epochs", "threads", "rebuild_every")})
    if config.epochs is not None and "max_epochs" in seen:
        checker.error(next(s.keyword.span for s in decl.settings if s.keyword.text == "max_epochs"),
                      "max_epochs caps epochs = auto; with a fixed epoch count it has no use")
    if config.epochs is not None and "patience" in seen:
        checker.error(next(s.keyword.span for s in decl.settings if s.keyword.text == "patience"),
                      "patience is for epochs = auto (stop when the validation metric stops improving)")
    return config


def validation_of(checker, value: syntax.Value) -> float | str | None:
    """``validation = 0.05`` (a fraction of the training rows, held out) or ``validation = "file"``."""
    if isinstance(value, syntax.Text):
        return check_inputs.text_value(checker, value, "validation")
    return checker.number(value, "validation (a fraction of the training rows, or a quoted file name)",
                          lambda x: 0 < x < 1, "between 0 and 1")


def metrics_of(checker, decl: syntax.MetricsDecl | None, target: ir.Target | None,
               output_dim: int | None) -> tuple[ir.Metric, ...]:
    if decl is None:
        first = "accuracy" if target is None or target.kind is ir.TargetKind.CLASSES else "precision"
        return (ir.Metric("loss", None), ir.Metric(first, None if first == "accuracy" else 1))
    metrics: list[ir.Metric] = []
    names = METRICS_WITH_K + METRICS_WITHOUT_K
    for ref in decl.metrics:
        name = ref.name.text
        if name not in names:
            checker.error(ref.name.span, f"unknown metric '{name}'; expected accuracy, loss, precision@k or recall@k",
                          did_you_mean(name, names))
            continue
        if name in METRICS_WITHOUT_K:
            if ref.k is not None:
                checker.error(ref.span, f"{name} takes no @k")
                continue
            metrics.append(ir.Metric(name, None))
            continue
        if ref.k is None:
            checker.error(ref.span, f"{name} needs a cut-off, e.g. {name}@1")
            continue
        k = checker.integer(ref.k, f"the k of {name}@k", 1, output_dim or ir.MAX_UNITS)
        if k is not None:
            metrics.append(ir.Metric(name, k))
    return tuple(dict.fromkeys(metrics))
