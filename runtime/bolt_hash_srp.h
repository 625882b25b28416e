/* boltc runtime: the SRP hash family (signed random projections, SimHash; boltc/hashing/srp.py).
 *
 * Bit k of table t's key is whether x lies on the positive side of hyperplane t * hashes + k; the functions array
 * holds tables * hashes rows of dim random +-1 values. Suited to dense inputs whose sign pattern carries the
 * similarity; it costs tables * hashes dot products per vector where the binned families cost comparisons.
 */
#ifndef BOLT_HASH_SRP_H
#define BOLT_HASH_SRP_H

#include "bolt_dense.h"
#include "bolt_lsh.h"

/* keys[t] for t < tables (the scratch a binned family needs is not used). */
static inline void bolt_srp_keys(const bolt_hash_functions *fn, const real_t *restrict x, int32_t *restrict scratch,
                                 int32_t *restrict keys)
{
    (void)scratch;
    const real_t *restrict planes = (const real_t *)fn->functions;
    for (int32_t t = 0; t < fn->tables; ++t) {
        int32_t key = 0;
        for (int32_t k = 0; k < fn->hashes; ++k)
            key |= (bolt_dot(fn->dim, planes + (size_t)(t * fn->hashes + k) * fn->dim, x) > 0) << k;
        keys[t] = key;
    }
}

/* The keys of rows first .. first + count - 1, gathered row-major in scratch (count * tables ints) and written out
 * table by table, so that the writes into ids are sequential runs rather than one scattered store per table and
 * row. */
static inline void bolt_srp_hash_rows(const bolt_hash_functions *fn, const real_t *restrict rows, int32_t first,
                                      int32_t count, int64_t stride, real_t *restrict scratch, int32_t *restrict ids)
{
    int32_t *restrict keys = (int32_t *)scratch;
    for (int32_t r = 0; r < count; ++r)
        bolt_srp_keys(fn, rows + (size_t)(first + r) * fn->dim, NULL, keys + (size_t)r * fn->tables);
    for (int32_t t = 0; t < fn->tables; ++t)
        for (int32_t r = 0; r < count; ++r)
            ids[(size_t)t * stride + first + r] = keys[(size_t)r * fn->tables + t];
}

#endif
