/* boltc runtime: the DWTA hash family (densified winner-take-all; boltc/hashing/dwta.py).
 *
 * A bin is 8 coordinates of the vector; its hash is the position of the largest of them (3 bits). Bins whose 8
 * values are all zero (common for ReLU activations) borrow the hash of the next non-empty bin, so sparse vectors
 * still get full keys. Ranks neurons by the shape of their weight rows where the largest inputs are.
 */
#ifndef BOLT_HASH_DWTA_H
#define BOLT_HASH_DWTA_H

#include "bolt_lsh.h"

/* The position of the largest of a bin's 8 values (the lowest on ties), or -1 when they are all zero: a
 * branch-free tournament, so that the loops calling it become vector compares and blends. */
static inline int32_t bolt_dwta_bin(real_t v0, real_t v1, real_t v2, real_t v3, real_t v4, real_t v5, real_t v6,
                                    real_t v7)
{
    const real_t m01 = v1 > v0 ? v1 : v0, m23 = v3 > v2 ? v3 : v2;
    const real_t m45 = v5 > v4 ? v5 : v4, m67 = v7 > v6 ? v7 : v6;
    const int32_t i01 = v1 > v0 ? 1 : 0, i23 = v3 > v2 ? 3 : 2, i45 = v5 > v4 ? 5 : 4, i67 = v7 > v6 ? 7 : 6;
    const real_t m03 = m23 > m01 ? m23 : m01, m47 = m67 > m45 ? m67 : m45;
    const int32_t i03 = m23 > m01 ? i23 : i01, i47 = m67 > m45 ? i67 : i45;
    const int32_t best = m47 > m03 ? i47 : i03;
    const int nonzero = (v0 != 0) | (v1 != 0) | (v2 != 0) | (v3 != 0) | (v4 != 0) | (v5 != 0) | (v6 != 0) |
                        (v7 != 0);
    return nonzero ? best : -1;
}

BOLT_BINNED_FAMILY(dwta, bolt_dwta_bin)

#endif
