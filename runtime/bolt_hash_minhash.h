/* boltc runtime: the densified MinHash family (boltc/hashing/minhash.py).
 *
 * MinHash of a vector's support: the set of its positive coordinates (a sparse binary input's present features, a
 * ReLU layer's firing units, a neuron's positive weights). Two sets collide in one hash with probability their
 * Jaccard similarity. One permutation is cut into bins of 8 coordinates (as DWTA's are), and a bin's hash is the
 * position of the first of its coordinates, in the bin's random order, that is in the set: the minimum of the
 * permutation over the set, within the bin. A bin holding none of the set borrows the next bin's hash
 * (densification), so a sparse set still fills every key.
 */
#ifndef BOLT_HASH_MINHASH_H
#define BOLT_HASH_MINHASH_H

#include "bolt_lsh.h"

/* The position of the first positive of a bin's 8 values, or -1 when none is: selects from the last to the first,
 * without branches, so that the loops calling it vectorise. */
static inline int32_t bolt_minhash_bin(real_t v0, real_t v1, real_t v2, real_t v3, real_t v4, real_t v5, real_t v6,
                                       real_t v7)
{
    int32_t first = v7 > 0 ? 7 : -1;
    first = v6 > 0 ? 6 : first;
    first = v5 > 0 ? 5 : first;
    first = v4 > 0 ? 4 : first;
    first = v3 > 0 ? 3 : first;
    first = v2 > 0 ? 2 : first;
    first = v1 > 0 ? 1 : first;
    return v0 > 0 ? 0 : first;
}

BOLT_BINNED_FAMILY(minhash, bolt_minhash_bin)

#endif
