/* boltc runtime: the k best scores of a row, best first; ties go to the lower id so results are reproducible. */
#ifndef BOLT_TOPK_H
#define BOLT_TOPK_H

#include <stdint.h>

#include "bolt_simd.h"

/* Offer n scores, of ids first_id .. first_id + n - 1, to a best-first buffer of k slots that holds *filled
 * entries. Insertion into the sorted buffer; once it is full, a whole vector of scores none of which beats its last
 * entry is passed over with one comparison, which is almost every vector of a long row. Offering ids in increasing
 * order keeps ties at the lower id. */
static inline void bolt_topk_offer(int32_t n, int32_t first_id, int32_t k, const real_t *restrict row,
                                   int32_t *restrict ids, float *restrict scores, int32_t *restrict filled)
{
    for (int32_t j0 = 0; j0 < n; j0 += BOLT_LANES) {
        const int32_t stop = n - j0 < BOLT_LANES ? n : j0 + BOLT_LANES;
        if (*filled == k && stop - j0 == BOLT_LANES &&
            !bolt_any_greater(bolt_load(row + j0), (bolt_vec){0} + (real_t)scores[k - 1]))
            continue;
        for (int32_t j = j0; j < stop; ++j) {
            const float s = (float)row[j];
            if (*filled == k && !(s > scores[k - 1]))
                continue;
            int32_t at = *filled < k ? (*filled)++ : k - 1;
            while (at > 0 && s > scores[at - 1]) {
                scores[at] = scores[at - 1];
                ids[at] = ids[at - 1];
                --at;
            }
            scores[at] = s;
            ids[at] = first_id + j;
        }
    }
}

/* The k best of a row of n >= k scores. */
static inline void bolt_topk(int32_t n, int32_t k, const real_t *restrict row, int32_t *restrict ids,
                             float *restrict scores)
{
    int32_t filled = 0;
    bolt_topk_offer(n, 0, k, row, ids, scores, &filled);
}

#endif /* BOLT_TOPK_H */
