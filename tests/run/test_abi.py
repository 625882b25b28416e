"""The Python side of the ABI reads the status codes from the compiled library: every error the runtime's header
declares has its message, and the codes are the library's, not numbers written twice."""

from __future__ import annotations

import boltc
from boltc.abi import STATUS_MESSAGES, status_message

SPEC = """\
model tiny {
    input  x: dense[3]
    target y: classes[2]
    o = dense(x, 2, activation=softmax)
    loss cross_entropy(o, y)
    optimizer adam(learning_rate=0.01)
}
"""


def test_every_status_the_runtime_declares_has_its_message(write_spec):
    lib = boltc.load(write_spec(SPEC), tune=False).library.lib
    declared = {name for name in dir(lib) if name.startswith("BOLT_ERROR_")}
    assert declared == set(STATUS_MESSAGES) and lib.BOLT_OK == 0
    for name, message in STATUS_MESSAGES.items():
        assert status_message(lib, getattr(lib, name)) == message
    assert status_message(lib, 99) == "status 99"
