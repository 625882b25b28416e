"""Plan values against hand-worked figures."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from boltc import ops
from boltc.check import check
from boltc.diagnostics import SpecErrors
from boltc.machine import probe
from boltc.parse import parse
from boltc.plan import auto_sparsity, plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spec_examples import FASHION  # noqa: E402  (the first issue's example)


def notes_of(planned, layer) -> tuple[str, str]:
    """What explain says of a layer: its kernel in words and its sparsity note."""
    return ops.of_plan(layer).describe(planned, layer)


def plan_of(text: str, **machine_changes):
    machine = dataclasses.replace(probe(), **machine_changes)
    return plan(check(parse(text, "f.bolt")), machine)


def test_fashion_plan_by_hand(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    p = plan_of(FASHION, cores=2)
    hidden, scores = p.layers
    assert (hidden.in_dim, hidden.out_dim, hidden.parameters) == (784, 256, 784 * 256 + 256)
    assert hidden.parameter_bytes == 200_960 * 4 and hidden.optimizer_bytes == 200_960 * 8
    assert hidden.flops_forward == 2 * 784 * 256 + 256
    assert hidden.flops_backward == 2 * 784 * 256 + 256  # reads the model input: no input gradient
    assert not hidden.needs_input_gradient and scores.needs_input_gradient
    assert scores.flops_forward == 2 * 256 * 10 + 10
    assert scores.flops_backward == 4 * 256 * 10 + 10
    assert (p.batch_size, p.epochs, p.threads, p.threads_origin) == (256, 5, 2, "machine cores")
    assert p.metrics == ("accuracy", "precision@1") and p.output_layer == 1
    assert hidden.column_tile == 256 and scores.column_tile == 10


def test_threads_come_from_spec_then_environment_then_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert plan_of(FASHION, cores=8).threads == 3
    p = plan_of(FASHION.replace("epochs = 5", "epochs = 5, threads = 5"), cores=8)
    assert (p.threads, p.threads_origin) == (5, "spec")


@pytest.mark.parametrize(("units", "fraction"), [(449, None), (450, 0.2), (899, 0.2), (900, 0.1), (1799, 0.1),
                                                 (1800, 0.05), (3999, 0.05), (4000, 0.02), (9999, 0.02),
                                                 (10000, 0.01), (19999, 0.01), (20000, 0.005), (670091, 0.005)])
def test_auto_sparsity_follows_bolts_size_table(units, fraction):
    assert auto_sparsity(units) == fraction


def test_sparse_output_gets_bolts_lsh_configuration():
    p = plan_of(FASHION.replace("activation=softmax)", "activation=softmax, sparsity=0.005)")
                .replace("classes[10]", "classes[670091]").replace("(hidden, 10,", "(hidden, 670091,"))
    scores = p.layers[1]
    assert scores.kernel == "sparse" and scores.weight_layout == "output-major [out][in]"
    lsh = scores.lsh
    # the worked example of BOLT-NOTES.md: N = 670,091, s = 0.005 -> K = 5, range 2^15, L = 164, reservoir 80
    assert (lsh.hashes, lsh.range, lsh.tables, lsh.bucket_cap) == (5, 2**15, 164, 80)
    assert lsh.active == 3351 and lsh.bins == 820
    assert lsh.functions == "820 bins of 8 coordinates from 26 permutations"  # ceil(820 * 8 / 256)
    assert lsh.table_bytes == 4 * 164 * (670091 + 2**15 + 1)
    assert scores.flops_forward == 2 * 256 * 3351 + 820 * 8
    assert notes_of(p, scores)[1].startswith("LSH-sparse: 3351 of 670091 neurons per sample (sparsity 0.005, spec;")
    # sparse inference: 3% of the rows (20,103, in whole vectors of 16) always, then 2 x 3,351 LSH candidates
    assert lsh.batch_negatives == 837 and lsh.heavy == 20112 and lsh.inference_active == 6702 + 20112


def test_spec_sampling_and_rebuild_settings_replace_the_formulas():
    p = plan_of(FASHION.replace("activation=softmax)", "activation=softmax, sparsity=0.01, sampling=dwta(tables=7, "
                                "bucket_cap=9))").replace("classes[10]", "classes[5000]")
                .replace("(hidden, 10,", "(hidden, 5000,")
                .replace("epochs = 5 }", "epochs = 5, rebuild = 30, freeze_tables_after = 1 }"))
    lsh = p.layers[1].lsh
    assert (lsh.hashes, lsh.tables, lsh.bucket_cap) == (5, 7, 9)  # K from the formula: round(log2(12800) / 3)
    assert (lsh.rebuild_first, lsh.rebuild_growth, lsh.freeze_after_epochs) == (30, 1.0, 1)
    assert lsh.origin == "spec (tables, bucket_cap, rebuild), formula for the rest"


def test_srp_on_request_with_its_own_formula():
    p = plan_of(FASHION.replace("activation=softmax)", "activation=softmax, sparsity=0.05, sampling=srp())")
                .replace("classes[10]", "classes[1000]").replace("(hidden, 10,", "(hidden, 1000,"))
    lsh = p.layers[1].lsh
    # buckets of about 4 neurons: 2^round(log2(1000 / 4)) = 256 keys; tables for ~2x the 50 active neurons
    assert (lsh.family, lsh.hashes, lsh.range, lsh.tables, lsh.bucket_cap, lsh.active) == ("srp", 8, 256, 26, 12, 50)
    assert p.layers[1].flops_forward == 2 * 256 * 50 + 2 * (8 * 26) * 256


def test_a_sparse_hidden_layer_hashes_a_dense_input_and_its_reader_takes_only_the_active_units():
    p = plan_of(FASHION.replace("activation=relu)", "activation=relu, sparsity=auto)")
                .replace("dense(pixels, 256,", "dense(pixels, 1000,"))
    hidden, scores = p.layers
    assert hidden.kernel == "sparse_hidden" and hidden.weight_layout == "output-major [out][in]"
    assert hidden.sparsity_requested == 0.1 and hidden.sparsity_origin == "auto"
    lsh = hidden.lsh  # BOLT's formula at sparsity 0.1, per-row sets, no heavy rows or label slots
    assert (lsh.active, lsh.hashes, lsh.tables, lsh.active_sets, lsh.heavy, lsh.insert_slack) == \
        (100, 3, 51, "row", 0, 0)
    assert notes_of(p, hidden)[1].startswith("LSH-sparse hidden layer: 100 of 1000 neurons per sample in training "
                                           "and inference (sparsity 0.1, auto;")
    assert scores.kernel == "gather" and not scores.transposed_backward and scores.needs_input_gradient


def test_a_sparse_hidden_layer_on_a_sparse_input_keeps_a_row_per_feature():
    p = plan_of(FASHION.replace("pixels: dense[784]", "pixels: sparse[784]")
                .replace("activation=relu)", "activation=relu, sparsity=auto)")
                .replace("dense(pixels, 256,", "dense(pixels, 1000,"))
    hidden, scores = p.layers
    assert hidden.kernel == "sparse_gather" and hidden.weight_layout == "input-major [in][out]"
    assert hidden.gathers_input_rows and hidden.emits_active_units and not hidden.neuron_rows
    assert (hidden.lsh.active, hidden.lsh.active_sets) == (100, "row")
    assert notes_of(p, hidden)[1].startswith("LSH-sparse hidden layer: 100 of 1000 neurons per sample in training "
                                           "and inference (sparsity 0.1, auto;")
    assert scores.kernel == "gather" and scores.needs_input_gradient


def test_sparsity_where_lsh_does_not_apply_runs_dense_and_says_so():
    p = plan_of(FASHION.replace("hidden = dense(pixels, 256, activation=relu)\n", "")
                .replace("dense(hidden, 10, activation=softmax)", "dense(pixels, 1000, activation=softmax, "
                         "sparsity=auto)").replace("classes[10]", "classes[1000]"))
    scores = p.layers[0]
    assert scores.lsh is None and scores.kernel == "blocked"
    assert scores.sparsity_requested == 0.1 and scores.sparsity_origin == "auto"
    assert notes_of(p, scores)[1] == ("runs dense: sparsity 0.1 was asked for (auto), but an LSH-sparse layer hashes "
                                    "a layer's activations; put a hidden layer before it")


def test_plan_json_round_trips():
    p = plan_of(FASHION)
    data = json.loads(json.dumps(p.to_json()))
    assert data["layers"][0]["parameters"] == 200_960
    assert "spec_source" not in data


def test_hash_tables_and_batch_buffers_count_in_the_memory_a_model_needs():
    wide = (FASHION.replace("activation=softmax)", "activation=softmax, sparsity=0.005)")
            .replace("classes[10]", "classes[670091]").replace("(hidden, 10,", "(hidden, 670091,"))
    # (784 x 256 + 256 + 256 x 670,091 + 670,091) parameters x 12 bytes (weights and Adam's two moments),
    # 4 x 164 x (670,091 + 2^15 + 1) bytes of tables (BOLT-NOTES.md's worked example, as above), and 256 rows x 4 bytes
    # of the hidden layer's input copy, outputs and gradients (784 + 2 x 256) and of the sparse layer's logits and
    # their gradients at its widest active set (2 x 26,814 in inference: 20,112 heavy rows and room for candidates),
    # and each rebuild thread's scratch of 16 hidden vectors of 256 and their 820 bins, 4 bytes each
    weights, tables = (200_960 + 172_213_387) * 12, 4 * 164 * (670091 + 2**15 + 1)
    wide_plan = plan_of(wide, memory_bytes=10**12)
    lsh = wide_plan.layers[1].lsh
    assert lsh.table_bytes == tables and lsh.inference_active == 26814 and lsh.bins == 820
    batch = 256 * 4 * (784 + 2 * 256 + 2 * 26814) + lsh.threads * 4 * 16 * (256 + 820)
    assert plan_of(wide, memory_bytes=weights + tables + batch) is not None
    with pytest.raises(SpecErrors) as caught:
        plan_of(wide, memory_bytes=weights + tables + batch - 1)
    [error] = caught.value.errors
    assert (error.span.line, error.span.column) == (2, 7)
    assert error.message == ("model needs 2.4 GiB for its weights, optimizer state, batch buffers and LSH hash tables "
                             "(0.4 GiB of tables), but this machine has 2.4 GiB of memory")
    assert error.hint == ("fewer or smaller layers, or a higher sparsity: the largest layer is 'scores' (172,213,387 "
                          "parameters, line 7)")


def test_a_model_too_big_for_memory_says_how_much():
    huge = """\
model big {
    input  x: sparse[2000000]
    target y: classes[100000]
    h = dense(x, 4096, activation=relu)
    o = dense(h, 100000, activation=softmax)
    loss cross_entropy(o, y)
}
"""
    with pytest.raises(SpecErrors) as caught:
        plan_of(huge, memory_bytes=24 * 2**30)
    [error] = caught.value.errors
    # (2,000,001 x 4096 + 4097 x 100,000) parameters x 12 bytes + 256 rows x 2 x (4096 + 100,000) x 4 bytes
    assert error.message == ("model needs 96.3 GiB for its weights, optimizer state, batch buffers and LSH hash "
                             "tables (0.0 GiB of tables), but this machine has 24.0 GiB of memory")


@pytest.mark.parametrize("isa, real_type, products, note", [
    (("avx512f", "amx_bf16"), "float", "bf16", "multiplied in bf16 on AMX tiles, summed in fp32 (precision=bf16; by "
                                               "the register-blocked fp32 kernels where Linux refuses the process its "
                                               "tile state); only touched neuron rows updated (lazy adam)"),
    (("avx512f",), "float", "fp32", "; products in fp32: precision=bf16 asks for AMX tiles, which this machine has "
                                    "not"),
    (("avx512f", "amx_bf16"), "double", "fp32", "; products in double: precision=bf16 needs a float scalar"),
])
def test_bf16_products_where_the_machine_has_amx_tiles_and_the_scalar_is_float(isa, real_type, products, note):
    text = (FASHION.replace("activation=softmax)", "activation=softmax, sparsity=0.05, precision=bf16)")
            .replace("classes[10]", "classes[1000]").replace("(hidden, 10,", "(hidden, 1000,"))
    machine = dataclasses.replace(probe(), isa=isa)
    planned = plan(check(parse(text, "f.bolt")), machine, real_type=real_type)
    output = planned.layers[1]
    assert output.lsh.active_sets == "batch" and output.products == products
    assert notes_of(planned, output)[0].endswith(note)
    assert plan_of(text.replace(", precision=bf16", "")).layers[1].products == "fp32"
