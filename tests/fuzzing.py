"""How hard the fuzz tests try. CI runs each with the examples its test names; ``BOLTC_FUZZ_SCALE=N`` multiplies
them all, for a longer run on demand:

    BOLTC_FUZZ_SCALE=50 python -m pytest -q -k "fuzz or mutated or any_bytes or soup or arbitrary"
"""

from __future__ import annotations

import os


def examples(count: int) -> int:
    scale = os.environ.get("BOLTC_FUZZ_SCALE", "1")
    if not scale.isdigit() or int(scale) < 1:
        raise ValueError(f"BOLTC_FUZZ_SCALE must be a positive whole number, got {scale!r}")
    return count * int(scale)
