"""boltc: compile a .bolt model spec into specialised C, train it and serve it on CPUs.

    model = boltc.load("model.bolt")      # parse -> check -> plan -> emit -> build
    model.fit("train.txt", validation="test.txt")
    ids, scores = model.predict(X, top_k=5)
    model.save("model.boltm"); boltc.load_model("model.boltm")
"""

__version__ = "0.1.0"


def load(path, **options):
    from boltc.pipeline import load as _load

    return _load(path, **options)


def load_model(path, **options):
    from boltc.pipeline import load_model as _load_model

    return _load_model(path, **options)


__all__ = ["__version__", "load", "load_model"]
