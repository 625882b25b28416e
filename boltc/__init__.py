"""boltc: compile a .bolt model spec into specialised C, train it and serve it on CPUs.

    model = boltc.load("model.bolt")      # parse -> check -> plan -> emit -> build
    model.fit("train.txt", validation="test.txt")
    model.fit(boltc.TextFile("rows.csv", delimiter=";", quoting="csv"))   # a CSV/TSV file, written as said
    model.fit(boltc.Stream("big.txt.gz"))   # an XMC file read in chunks, never whole
    ids, scores = model.predict(X, top_k=5)
    ids, scores = model.predict(boltc.Records([{"title": "red shoes", "price": 20}]))   # typed columns, in memory
    model.save("model.boltm"); boltc.load_model("model.boltm")
"""

__version__ = "0.1.0"


def load(path, **options):
    from boltc.pipeline import load as _load

    return _load(path, **options)


def load_model(path, **options):
    from boltc.pipeline import load_model as _load_model

    return _load_model(path, **options)


def __getattr__(name):
    # imported when first used: `import boltc` stays cheap for the CLI
    if name == "TextFile":
        from boltc.columns import TextFile

        return TextFile
    if name == "Stream":
        from boltc.streaming import Stream

        return Stream
    if name == "Records":
        from boltc.tables import Records

        return Records
    raise AttributeError(f"module 'boltc' has no attribute {name!r}")


__all__ = ["__version__", "Records", "Stream", "TextFile", "load", "load_model"]
