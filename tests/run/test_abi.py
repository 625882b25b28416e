"""The Python side of the ABI reads the status codes from the compiled library: every error the runtime's header
declares has its message, and the codes are the library's, not numbers written twice."""

from __future__ import annotations

from pathlib import Path

import boltc
from boltc.abi import STATUS_MESSAGES, status_message

REPO = Path(__file__).resolve().parents[2]


def test_every_status_the_runtime_declares_has_its_message():
    lib = boltc.load(REPO / "specs" / "demo.bolt", tune=False).library.lib
    declared = {name for name in dir(lib) if name.startswith("BOLT_ERROR_")}
    assert declared == set(STATUS_MESSAGES) and lib.BOLT_OK == 0
    for name, message in STATUS_MESSAGES.items():
        assert status_message(lib, getattr(lib, name)) == message
    assert status_message(lib, 99) == "status 99"
