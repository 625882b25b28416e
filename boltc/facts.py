"""What a model learns from its training data before it compiles: the sizes its spec leaves to the data.

A target of ``classes[auto]`` / ``multilabel[auto]`` takes the count of labels the training data holds (a typed-column
file's distinct label names, an XMC file's header count), and a numerical column without ``range=`` its bins: the
edges of equal-count (quantile) bins, or, for ``binning=equal``, the training values' range. The model reads the data
through the library of its provisional plan (placeholders where the sizes go), which reads the learned numerical
columns as plain numbers; the result (``ir.Learned``) goes back through the checker and the planner, and is saved with
the model so that loading it compiles the same code.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from boltc import ir
from boltc.columns import TextFile, column_values
from boltc.data import Dataset, data_files, read_xmc
from boltc.diagnostics import DataError, UsageError
from boltc.plan import Plan
from boltc.streaming import Stream, header_of


def quantile_edges(values: np.ndarray, bins: int) -> tuple[float, ...]:
    """The inner edges of `bins` bins holding equal shares of `values` (finite numbers): ties merge bins, so there
    may be fewer; no edge sits at or below the smallest value, whose bin would stay empty."""
    # edges at values the data holds: interpolating between two of them could overflow to infinity
    edges = np.unique(np.quantile(values, np.arange(1, bins) / bins, method="higher"))
    return tuple(float(edge) for edge in edges[edges > values.min()])


def value_range(values: np.ndarray) -> tuple[float, float]:
    """The range equal bins span: the training values' least and greatest (a constant column's is widened to
    hold it: by one unit, or by its own size where one unit is below the number's precision)."""
    low, high = float(values.min()), float(values.max())
    return (low, high) if high > low else (low, low + max(1.0, abs(low)))


def learn(plan: Plan, library, data, skip_bad_rows: bool) -> tuple[ir.Learned, tuple[str, ...] | None]:
    """What `data` (a training file, a directory or pattern of them, or a Dataset) says of `plan`'s learned sizes,
    and the label names of a typed-column model in the order its reader learns them (None otherwise)."""
    if any(i.column is not None for i in plan.inputs):
        if not isinstance(data, (str, Path, TextFile)):
            raise UsageError(f"model '{plan.model_name}' learns sizes its spec leaves to the data from its CSV, TSV "
                             "or Parquet training files: pass a file (or a directory or pattern of them)")
        with warnings.catch_warnings():  # the training read that follows warns of skipped rows and the like
            warnings.simplefilter("ignore")
            return _from_columns(plan, library, data if isinstance(data, TextFile) else TextFile(data), skip_bad_rows)
    if isinstance(data, Stream):
        labels = header_of(data).get("labels")
        if labels is None:
            raise UsageError(f"model '{plan.model_name}' learns its target's label count from its training data: a "
                             "stream states it in its first file's header (N_ROWS N_FEATURES N_LABELS), which "
                             f"{data.path} lacks; declare the count in the spec (e.g. multilabel[1000])")
    elif isinstance(data, Dataset):
        labels = data.n_labels
    elif isinstance(data, (str, Path)):
        labels = read_xmc(data, n_features=plan.inputs[0].dim if len(plan.inputs) == 1 else None,
                          skip_bad_rows=skip_bad_rows).n_labels
    else:
        raise UsageError(f"model '{plan.model_name}' learns its target's label count from its training data: pass a "
                         "data file or a Dataset, or declare the count in the spec (e.g. classes[10])")
    return ir.Learned(labels=labels), None


def _from_columns(plan: Plan, library, text: TextFile, skip_bad_rows: bool
                  ) -> tuple[ir.Learned, tuple[str, ...] | None]:
    learned_inputs = frozenset(i.index for i in plan.inputs if i.column is not None and i.column.learned)
    names: tuple[str, ...] | None = None
    values: dict[int, list[np.ndarray]] = {index: [] for index in learned_inputs}
    for position, name in enumerate(data_files(text.path)):
        part, learned_names = column_values(dataclasses.replace(text, path=name), plan, library, names, skip_bad_rows,
                                            more_labels=position > 0, inputs=learned_inputs)
        names = learned_names if learned_names is not None else names
        for index, numbers in part.items():
            values[index].append(numbers[~np.isnan(numbers)])
    bins = []
    for index in sorted(learned_inputs):
        model_input = plan.inputs[index]
        column = model_input.column
        found = np.concatenate(values[index])
        if not len(found):
            raise DataError(str(text.path), None, f"column '{column.header}' holds no numbers to learn input "
                                                  f"'{model_input.name}''s bins from")
        bins.append((model_input.name, quantile_edges(found, column.features) if column.binning == "quantile"
                     else value_range(found)))
    return ir.Learned(labels=len(names) if names is not None else None, bins=tuple(bins)), names
