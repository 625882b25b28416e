#!/usr/bin/env python3
"""Convert the Fashion-MNIST idx files into the extreme-classification text format.

Output (one file per split)::

    N_POINTS N_FEATURES N_LABELS
    label f:v f:v ...

Feature ids are 0-based pixel indices (row-major, 28x28 -> 784) in increasing order,
values are pixel/255 with at most 4 decimals and trailing zeros stripped; zero pixels
are omitted.

The idx files come from the Debian package ``dataset-fashion-mnist``; by default they
are located through ``dpkg -L dataset-fashion-mnist``.

Usage (from the repository root)::

    python bench/fashion_mnist/convert.py [--out DIR] [--source DIR] [--force]
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bench"))
from common import prepare_arguments, write_atomic  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "bench" / "data" / "fashion_mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
FALLBACK_DIRS = [Path("/usr/share/datasets/fashion-mnist")]

N_LABELS = 10

# split name -> (images file stem, labels file stem)
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

IDX_DTYPES = {0x08: np.uint8}


def _dpkg_dirs(package: str) -> list[Path]:
    """Directories that hold an idx file of ``package`` according to dpkg."""
    try:
        proc = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    except OSError:
        return []
    if proc.returncode != 0:
        return []
    dirs: list[Path] = []
    for line in proc.stdout.splitlines():
        path = Path(line.strip())
        if "-idx" in path.name and path.is_file() and path.parent not in dirs:
            dirs.append(path.parent)
    return dirs


def _find_in(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def locate_sources(source: Path | None) -> dict[str, tuple[Path, Path]]:
    """Return ``{split: (images_path, labels_path)}`` or raise FileNotFoundError."""
    if source is not None:
        search = [source]
    else:
        search = _dpkg_dirs(DEBIAN_PACKAGE) + [d for d in FALLBACK_DIRS]
    for directory in search:
        found = {}
        for split, (img_stem, lbl_stem) in SPLITS.items():
            img = _find_in(directory, img_stem)
            lbl = _find_in(directory, lbl_stem)
            if img is None or lbl is None:
                break
            found[split] = (img, lbl)
        else:
            return found
    where = ", ".join(str(d) for d in search) or "(nowhere: dpkg lists no idx files)"
    raise FileNotFoundError(
        f"Fashion-MNIST idx files not found in {where}. "
        f"Install them with `apt-get install {DEBIAN_PACKAGE}` or pass --source DIR."
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_DTYPES:
        raise ValueError(f"{path}: unsupported idx element type 0x{type_code:02x}")
    header_end = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=IDX_DTYPES[type_code], offset=header_end)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} elements, found {data.size}")
    return data.reshape(shape)


def _value_strings() -> np.ndarray:
    """String for pixel p (0..255): p/255 with at most 4 decimals, trailing zeros stripped."""
    out = []
    for p in range(256):
        s = f"{p / 255.0:.4f}".rstrip("0").rstrip(".")
        out.append(s)
    return np.array(out, dtype=object)


def format_split(images: np.ndarray, labels: np.ndarray, n_labels: int = N_LABELS) -> str:
    """Render one split as extreme-classification text (vectorised, one big join)."""
    n = images.shape[0]
    x = images.reshape(n, -1)
    n_features = x.shape[1]
    if labels.shape != (n,):
        raise ValueError(f"{n} images but labels of shape {labels.shape}")

    values = _value_strings()
    # token table: index f * 256 + p -> " f:v"
    feat = np.repeat(np.arange(n_features), 256)
    pix = np.tile(np.arange(256), n_features)
    table = np.array([f" {f}:{values[p]}" for f, p in zip(feat.tolist(), pix.tolist())], dtype=object)

    rows, cols = np.nonzero(x)  # row-major: sorted by row, then by column
    tokens = table[cols * 256 + x[rows, cols].astype(np.int64)]

    counts = np.bincount(rows, minlength=n)
    nnz_start = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=nnz_start[1:])
    row_ids = np.arange(n, dtype=np.int64)

    # layout per row: label, its tokens, "\n"  -> two extra slots per row
    out = np.empty(tokens.size + 2 * n, dtype=object)
    out[np.arange(tokens.size, dtype=np.int64) + 2 * rows + 1] = tokens
    label_strs = np.array([str(i) for i in range(int(labels.max()) + 1)], dtype=object)
    out[nnz_start + 2 * row_ids] = label_strs[labels.astype(np.int64)]
    out[nnz_start + counts + 2 * row_ids + 1] = "\n"

    header = f"{n} {n_features} {n_labels}\n"
    return header + "".join(out.tolist())


def _up_to_date(outputs: list[Path], sources: list[Path]) -> bool:
    if not all(p.is_file() for p in outputs):
        return False
    newest_source = max(p.stat().st_mtime for p in sources)
    return min(p.stat().st_mtime for p in outputs) > newest_source


def convert(out_dir: Path = DEFAULT_OUT, source: Path | None = None, force: bool = False,
            verbose: bool = True) -> dict[str, Path]:
    """Write train.txt / test.txt into ``out_dir``; return ``{split: path}``."""
    out_dir = Path(out_dir)
    sources = locate_sources(source)
    outputs = {split: out_dir / f"{split}.txt" for split in SPLITS}
    all_sources = [p for pair in sources.values() for p in pair]
    if not force and _up_to_date(list(outputs.values()), all_sources):
        if verbose:
            print(f"up to date: {', '.join(str(p) for p in outputs.values())}")
        return outputs

    out_dir.mkdir(parents=True, exist_ok=True)
    for split, (img_path, lbl_path) in sources.items():
        t0 = time.perf_counter()
        images = read_idx(img_path)
        labels = read_idx(lbl_path)
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{split}: unexpected shapes {images.shape} / {labels.shape}")
        if labels.size and int(labels.max()) >= N_LABELS:
            raise ValueError(f"{split}: label {int(labels.max())} out of range 0..{N_LABELS - 1}")
        text = format_split(images, labels)
        target = outputs[split]
        write_atomic(target, text)
        if verbose:
            print(f"wrote {target} ({images.shape[0]} points, {len(text) / 1e6:.1f} MB) "
                  f"in {time.perf_counter() - t0:.2f}s from {img_path.parent}")
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = prepare_arguments(__doc__.split("\n\n")[0], DEFAULT_OUT, REPO_ROOT)
    parser.add_argument("--source", type=Path, default=None,
                        help="directory holding the idx(.gz) files (default: from dpkg -L "
                             f"{DEBIAN_PACKAGE})")
    args = parser.parse_args(argv)
    try:
        convert(args.out, args.source, args.force)
    except (FileNotFoundError, ValueError) as exc:
        print(f"convert.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
