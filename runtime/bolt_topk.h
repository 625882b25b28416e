/* boltc runtime: the k best scores of a row, best first; ties go to the lower id so results are reproducible. */
#ifndef BOLT_TOPK_H
#define BOLT_TOPK_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

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

/* A score and its id, for sorting the k best of bolt_topk_many: best first, ties at the lower id. */
typedef struct bolt_scored {
    float score;
    int32_t id;
} bolt_scored;

static int bolt_scored_order(const void *a, const void *b)
{
    const bolt_scored *x = (const bolt_scored *)a, *y = (const bolt_scored *)b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* The value that would stand at place k (0-based) of `values` sorted best first (quickselect; `values` is
 * reordered). */
static inline float bolt_kth_largest(float *restrict values, int32_t n, int32_t k)
{
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const float a = values[lo], b = values[lo + (hi - lo) / 2], c = values[hi];
        const float pivot = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b)); /* the median */
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (values[i] > pivot)
                ++i;
            while (values[j] < pivot)
                --j;
            if (i <= j) {
                const float swapped = values[i];
                values[i++] = values[j];
                values[j--] = swapped;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return values[k];
    }
    return values[k];
}

/* bolt_topk for k in the thousands, where inserting every newcomer into a sorted list of k would shift it whole:
 * the k-th best value by selection, then the k best sorted (NaN counts as the worst score). `scratch` holds
 * max(n, 2k) floats. */
static inline void bolt_topk_many(int32_t n, int32_t k, const real_t *restrict row, int32_t *restrict ids,
                                  float *restrict scores, float *restrict scratch)
{
    for (int32_t j = 0; j < n; ++j)
        scratch[j] = isnan((float)row[j]) ? -INFINITY : (float)row[j];
    const float threshold = bolt_kth_largest(scratch, n, k - 1);
    bolt_scored *best = (bolt_scored *)(void *)scratch;
    int32_t count = 0;
    for (int32_t j = 0; j < n; ++j) /* row[j] > threshold is false for NaN */
        if ((float)row[j] > threshold)
            best[count++] = (bolt_scored){(float)row[j], j};
    for (int32_t j = 0; j < n && count < k; ++j) /* then ties at the threshold, lowest ids first */
        if ((isnan((float)row[j]) ? -INFINITY : (float)row[j]) == threshold)
            best[count++] = (bolt_scored){threshold, j};
    qsort(best, (size_t)count, sizeof(bolt_scored), bolt_scored_order);
    for (int32_t a = 0; a < count; ++a) {
        ids[a] = best[a].id;
        scores[a] = best[a].score;
    }
}

#endif /* BOLT_TOPK_H */
