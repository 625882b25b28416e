"""Densified MinHash (runtime/bolt_hash_minhash.h): a bin's hash is the first of its coordinates, in a random order,
where the vector is positive. Two vectors collide with the Jaccard similarity of their positive supports: the family
for sparse binary inputs and ReLU layers whose pattern of firing units, not their values, carries the similarity."""

from boltc.hashing import BinnedFamily

FAMILY = BinnedFamily(
    name="minhash",
    summary="densified MinHash: each hash is the first of 8 randomly ordered coordinates where the vector is "
            "positive (Jaccard similarity of positive supports); empty bins borrow a neighbour's",
)
