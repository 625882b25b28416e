"""DWTA, densified winner-take-all (runtime/bolt_hash_dwta.h): a bin's hash is the position of its largest value.
BOLT's and SLIDE's family for ReLU activations; the default."""

from boltc.hashing import BinnedFamily

FAMILY = BinnedFamily(
    name="dwta",
    summary="DWTA: each hash is the position of the largest of 8 input coordinates; empty bins borrow a neighbour's",
)
