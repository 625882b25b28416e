"""``boltc export``: the C inference library builds warning-free and predicts exactly as the Python model does; its
loader refuses damaged or hostile weights with a message instead of crashing; what cannot be exported says why."""

from __future__ import annotations

import shutil
import struct
import subprocess
import textwrap

import numpy as np
import pytest

import boltc
from boltc import export
from boltc.build import compile_flags
from boltc.diagnostics import UsageError
from boltc.machine import probe

XMC_SPEC = """\
model small_xmc {
    input  words:  sparse[500]
    target labels: multilabel[900]
    hidden = dense(words, 32, activation=relu)
    scores = dense(hidden, 900, activation=softmax, sparsity=0.05)
    loss   cross_entropy(scores, labels)
    train  { batch_size = 64, epochs = 2, seed = 3 }
}
"""

DENSE_SPEC = """\
model small_dense {
    input  x: dense[12]
    target y: classes[400]
    h = dense(x, 16, activation=relu)
    o = dense(h, 400, activation=softmax, sparsity=0.1)
    loss cross_entropy(o, y)
    train { batch_size = 32, epochs = 2, seed = 4 }
}
"""

WARNINGS = "-Wall -Wextra -Werror"


def _xmc_file(path, rows: int, seed: int) -> None:
    """Rows whose labels follow a topic their features hint at, in the XMC text format."""
    rng = np.random.default_rng(seed)
    lines = [f"{rows} 500 900"]
    for _ in range(rows):
        topic = int(rng.integers(0, 90))
        labels = sorted({topic * 10 + int(k) for k in rng.integers(0, 10, size=3)})
        features = sorted({topic * 5 + int(k) for k in rng.integers(0, 5, size=4)} |
                          {int(k) for k in rng.integers(0, 500, size=4)})
        lines.append(",".join(map(str, labels)) + " " + " ".join(f"{f}:{rng.random():.3f}" for f in features))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def xmc(tmp_path_factory):
    """A trained XMC model, its export, and 1,000 test rows."""
    folder = tmp_path_factory.mktemp("export")
    spec = folder / "small_xmc.bolt"
    spec.write_text(XMC_SPEC)
    _xmc_file(folder / "train.txt", 6000, 0)
    _xmc_file(folder / "test.txt", 1000, 1)
    model = boltc.load(spec, tune=False)
    model.fit(str(folder / "train.txt"), learning_rate=0.005, validation=False)
    export.export_library(model, folder / "lib")
    return model, folder


def _make(lib, cflags: str, compiler: str = "cc", ldflags: str | None = None) -> None:
    """The library and its example built with `cflags` (and `ldflags`, or the Makefile's)."""
    settings = [f"CC={compiler}", f"CFLAGS={cflags}"] + ([] if ldflags is None else [f"LDFLAGS={ldflags}"])
    built = subprocess.run(["make", "-C", str(lib), "clean", "all", *settings], capture_output=True, text=True,
                           check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "warning" not in built.stderr


def _predicted(lib, data, *options: str) -> tuple[np.ndarray, np.ndarray]:
    with open(data) as rows:
        ran = subprocess.run([str(lib / "predict"), str(lib / "weights.bin"), "--labelled", *options], stdin=rows,
                             capture_output=True, text=True, check=False, timeout=120)
    assert ran.returncode == 0, ran.stderr
    pairs = [[entry.split(":") for entry in line.split()] for line in ran.stdout.splitlines()]
    return (np.array([[int(i) for i, _ in row] for row in pairs]),
            np.array([[float(s) for _, s in row] for row in pairs], dtype=np.float32))


def _machine_flags() -> str:
    return " ".join(f for f in compile_flags(probe())[0] if not f.startswith("-fsanitize") and f != "-g")


def test_the_library_predicts_exactly_as_python(xmc):
    model, folder = xmc
    lib = folder / "lib"
    _make(lib, f"{_machine_flags()} {WARNINGS}")
    for sparse, options in ((True, ()), (False, ("--dense",))):
        want_ids, want_scores = model.predict(str(folder / "test.txt"), top_k=5, sparse=sparse)
        ids, scores = _predicted(lib, folder / "test.txt", "--top-k", "5", "--threads", "2", *options)
        assert ids.shape == (1000, 5)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(scores, want_scores)  # printed with 9 digits: float32 read back exactly


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_the_library_builds_warning_free_with_portable_flags(xmc, compiler, tmp_path):
    if not shutil.which(compiler):
        pytest.skip(f"{compiler} is not installed")
    model, folder = xmc
    lib = tmp_path / "lib"
    shutil.copytree(folder / "lib", lib)
    _make(lib, f"-O2 -std=gnu11 {WARNINGS}", compiler, ldflags="")  # no OpenMP: the runtime falls back to one thread
    ids, _ = _predicted(lib, folder / "test.txt", "--dense")
    want, _ = model.predict(str(folder / "test.txt"), top_k=1)
    # other vector widths round sums differently: a near tie may rank the other way, nothing more
    assert (ids == want).mean() > 0.99


def _rewritten_weights(lib, tmp_path, change) -> object:
    """A copy of the library's weights file with `change(bytearray, entries)` applied; entries are its array
    table's (slot, bytes, offset, checksum) rows."""
    data = bytearray((lib / "weights.bin").read_bytes())
    count = struct.unpack_from("<I", data, 12)[0]
    entries = [struct.unpack_from("<IIQQQ", data, 24 + 32 * e) for e in range(count)]
    change(data, [(slot, size, offset, checksum) for slot, _, size, offset, checksum in entries])
    out = tmp_path / "weights.bin"
    out.write_bytes(bytes(data))
    return out


def _refused(lib, weights) -> str:
    ran = subprocess.run([str(lib / "predict"), str(weights)], input="1:1\n", capture_output=True, text=True,
                         check=False, timeout=60)
    assert ran.returncode == 1
    return ran.stderr.strip()


def _ids_array(model, role: str):
    return next(spec for spec in model.buffers if spec.layer == 1 and spec.role == role)


def _sanitizers() -> bool:
    """Whether cc builds and runs programs with AddressSanitizer and UBSan here."""
    probe = subprocess.run(["cc", "-fsanitize=address,undefined", "-x", "c", "-", "-o", "/dev/null"],
                           input="int main(void) { return 0; }", capture_output=True, text=True, check=False)
    return probe.returncode == 0


def test_damaged_or_hostile_weights_are_refused_by_the_loader(xmc, tmp_path):
    """Built with AddressSanitizer and UBSan where the compiler has them: a refusal must not come after a bad read."""
    model, folder = xmc
    lib = tmp_path / "lib"
    shutil.copytree(folder / "lib", lib)
    checked = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    if _sanitizers():
        _make(lib, f"{_machine_flags()} -g {checked}", ldflags=f"-fopenmp {checked}")  # the same sums as Python
    else:
        _make(lib, _machine_flags())
    ids, _ = _predicted(lib, folder / "test.txt", "--top-k", "5")
    np.testing.assert_array_equal(ids, model.predict(str(folder / "test.txt"), top_k=5, sparse=True)[0])
    tmp_path = tmp_path / "rewritten"
    tmp_path.mkdir()
    table_ids = _ids_array(model, "table_ids")
    (slot, size, offset, _), = [e for e in _entries(lib) if e[0] == table_ids.slot]

    def flip(data, entries):
        data[offset + 100] ^= 1

    def hostile(data, entries):  # an id past the layer's neurons, with the checksum made to match
        struct.pack_into("<i", data, offset + 8, 900)
        array = np.frombuffer(bytes(data[offset:offset + size]), dtype="<i4")
        at = 24 + 32 * [e[0] for e in entries].index(slot)
        struct.pack_into("<Q", data, at + 24, export.weighted_sum(array))

    order = _ids_array(model, "lsh_order")
    (order_slot, order_size, order_offset, _), = [e for e in _entries(lib) if e[0] == order.slot]

    def repeated_order(data, entries):  # ids in range, but not each neuron once: top-ups would never end
        data[order_offset:order_offset + order_size] = bytes(order_size)
        at = 24 + 32 * [e[0] for e in entries].index(order_slot)
        struct.pack_into("<Q", data, at + 24, export.weighted_sum(np.zeros(order_size // 4, dtype="<i4")))

    weights_spec = _ids_array(model, "weights")
    (weights_slot, weights_size, weights_offset, _), = [e for e in _entries(lib) if e[0] == weights_spec.slot]

    def not_finite(data, entries):  # a NaN parameter, with the checksum made to match
        struct.pack_into("<f", data, weights_offset + 40, float("nan"))
        array = np.frombuffer(bytes(data[weights_offset:weights_offset + weights_size]), dtype="<u8")
        at = 24 + 32 * [e[0] for e in entries].index(weights_slot)
        struct.pack_into("<Q", data, at + 24, export.weighted_sum(array))

    weights = str(tmp_path / "weights.bin")
    assert _refused(lib, _rewritten_weights(lib, tmp_path, not_finite)) == \
        f"array {weights_slot} holds a value that is not finite"
    assert _refused(lib, _rewritten_weights(lib, tmp_path, repeated_order)) == \
        f"array {order_slot} is not an order of its 900 ids"
    assert _refused(lib, _rewritten_weights(lib, tmp_path, flip)) == \
        f"{weights}: corrupted (array {slot} fails its checksum)"
    assert _refused(lib, _rewritten_weights(lib, tmp_path, hostile)) == \
        f"array {slot} holds id 900, outside 0 .. 899"
    assert _refused(lib, _rewritten_weights(lib, tmp_path, lambda data, entries: data.__delitem__(
        slice(len(data) - 10, None)))).endswith("is cut short)")
    assert _refused(lib, _rewritten_weights(lib, tmp_path, lambda data, entries: data.__setitem__(
        slice(0, 8), b"NOTBOLT\n"))) == f"{weights}: not a boltc weights file"


def _entries(lib):
    data = (lib / "weights.bin").read_bytes()
    count = struct.unpack_from("<I", data, 12)[0]
    return [(slot, size, offset, checksum)
            for slot, _, size, offset, checksum in (struct.unpack_from("<IIQQQ", data, 24 + 32 * e)
                                                     for e in range(count))]


DENSE_HARNESS = textwrap.dedent("""\
    #include <stdio.h>
    #include <stdlib.h>
    #include "boltc_model.h"
    /* rows of BOLTC dims[0] floats from a raw file; prints each row's top 3 as id:score */
    int main(int argc, char **argv)
    {
        char error[256];
        boltc_model *model = boltc_load(argv[1], error, sizeof error);
        if (!model) { fprintf(stderr, "%s\\n", error); return 1; }
        if (argc > 3) boltc_set_sparse(model, 0);
        FILE *in = fopen(argv[2], "rb");
        static float x[1000 * 12];
        const int rows = (int)fread(x, sizeof(float) * 12, 1000, in);
        fclose(in);
        boltc_rows given = {x, NULL, NULL, NULL};
        static int32_t ids[1000 * 3];
        static float scores[1000 * 3];
        if (boltc_predict(model, rows, &given, 3, ids, scores) != BOLTC_OK) {
            fprintf(stderr, "%s\\n", boltc_error(model)); return 1;
        }
        for (int i = 0; i < rows * 3; ++i) printf("%d:%.9g%c", ids[i], scores[i], i % 3 == 2 ? '\\n' : ' ');
        boltc_free(model);
        return 0;
    }
    """)


@pytest.mark.parametrize("frozen", [False, True], ids=["tables rebuilt", "tables frozen with labels inserted"])
def test_a_standardised_dense_input_is_scaled_by_the_library(write_spec, tmp_path, frozen):
    spec = DENSE_SPEC.replace("seed = 4 }", "seed = 4, freeze_tables_after = 1 }") if frozen else DENSE_SPEC
    model = boltc.load(write_spec(spec, "small_dense.bolt"), tune=False)
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(400, 12)).astype(np.float32)
    labels = rng.integers(0, 400, size=4000)
    features = (centres[labels] + rng.normal(size=(4000, 12)) + 50.0).astype(np.float32)  # far from standard
    model.fit((features, labels), learning_rate=0.01, validation=False)
    assert model.input_scaling, "the spec's dense input is standardised"
    lib = tmp_path / "lib"
    export.export_library(model, lib)
    (lib / "harness.c").write_text(DENSE_HARNESS)
    _make(lib, f"{_machine_flags()} {WARNINGS}")
    built = subprocess.run(f"cc {_machine_flags()} {WARNINGS} -I. harness.c libboltc_model.a -fopenmp -lm -o harness",
                           shell=True, cwd=lib, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    rows = (centres[rng.integers(0, 400, size=1000)] + rng.normal(size=(1000, 12)) + 50.0).astype(np.float32)
    (tmp_path / "rows.bin").write_bytes(rows.tobytes())
    for sparse, extra in ((True, []), (False, ["dense"])):
        ran = subprocess.run([str(lib / "harness"), str(lib / "weights.bin"), str(tmp_path / "rows.bin"), *extra],
                             capture_output=True, text=True, check=False, timeout=60)
        assert ran.returncode == 0, ran.stderr
        got = np.array([[int(entry.split(":")[0]) for entry in line.split()] for line in ran.stdout.splitlines()])
        want, _ = model.predict(rows, top_k=3, sparse=sparse)
        np.testing.assert_array_equal(got, want)


def test_typed_column_models_are_refused_with_the_reason(write_spec, tmp_path):
    spec = write_spec("""\
model reviews {
    input  review: text(features=4096)
    target stars:  classes[3]
    scores = dense(review, 3, activation=softmax)
    loss   cross_entropy(scores, stars)
}
""", "reviews.bolt")
    model = boltc.load(spec, tune=False)
    with pytest.raises(UsageError) as caught:
        export.export_library(model, tmp_path / "lib")
    assert str(caught.value) == (
        "model 'reviews' reads typed columns, whose featurizer (CSV/TSV parsing, label names, histories and "
        "neighbourhoods) runs in Python: the C library takes feature ids or dense vectors; serve this model with "
        "`boltc serve` instead")
    assert not (tmp_path / "lib").exists()
