/* boltc runtime: the optimiser step of one parameter from the gradient shares of every worker of a distributed step.
 *
 * Each worker's backward collected its gradient rows instead of stepping (bolt_update.collect). The workers' shares,
 * each its touched rows' ids (ascending) and gradients, are summed here in rank order into the parameter's exchange
 * buffer and every row of their union is stepped once, as one process's backward would have stepped it. Threads
 * take ranges of row ids, so that a row's sum has one order whatever the thread count, and every worker, given the
 * same shares, makes the same bits.
 */
#ifndef BOLT_EXCHANGE_H
#define BOLT_EXCHANGE_H

#include "bolt_abi.h"
#include "bolt_math.h"
#include "bolt_omp.h"
#include "bolt_optim.h"

enum { BOLT_STEP_ADAM = 0, BOLT_STEP_ADAM_BF16 = 1, BOLT_STEP_SGD = 2 };

/* A parameter [rows][width] as the step sees it: its values, its moments (by `optimizer`), the exchange buffer its
 * sums are made in, and, for a parameter exchanged by rows, the stamps that mark a row summed and stepped. */
typedef struct bolt_exchanged {
    real_t *values;
    void *m, *v;
    real_t *sums;
    int64_t *stamps; /* NULL: the parameter is exchanged whole */
    int64_t rows;
    int32_t width;
    int32_t optimizer;
} bolt_exchanged;

/* The workers' shares of one parameter: share s holds counts[s] rows, ids[s] (NULL where the parameter is sent
 * whole: then counts[s] is rows or 0) and their gradients grads[s] [counts[s]][width]. */
typedef struct bolt_shares {
    int32_t count;
    const int64_t *const *ids;
    const int64_t *counts;
    const real_t *const *grads;
} bolt_shares;

/* The optimiser step of row `row` from its summed gradient `grad`. */
static inline void bolt_exchanged_step(const bolt_exchanged *p, const bolt_update *u, int64_t row,
                                       const real_t *grad)
{
    const size_t at = (size_t)row * (size_t)p->width;
    if (p->optimizer == BOLT_STEP_ADAM)
        bolt_adam_row(p->width, u, grad, p->values + at, (real_t *)p->m + at, (real_t *)p->v + at);
    else if (p->optimizer == BOLT_STEP_ADAM_BF16)
        bolt_adam_row_bf16(p->width, u, grad, p->values + at, (bolt_bf16 *)p->m + at, (bolt_bf16 *)p->v + at,
                           (uint32_t)at);
    else
        bolt_sgd_row(p->width, u, grad, p->values + at);
}

/* A worker's share of a parameter exchanged by rows: the ids of the rows its backward stamped with `step`
 * (ascending) and their gradients, copied from the exchange buffer into `ids` and `grads` (room for every row).
 * Threads take ranges of rows, count theirs, then copy them to their place; returns the rows. */
static inline int64_t bolt_collect_rows(const bolt_exchanged *p, int64_t step, int64_t *restrict ids,
                                        real_t *restrict grads, int32_t threads)
{
    enum { MOST_THREADS = 256 };
    int64_t starts[MOST_THREADS + 1] = {0};
    threads = threads < MOST_THREADS ? (threads > 0 ? threads : 1) : MOST_THREADS;
    const int32_t width = p->width;
    BOLT_OMP(parallel num_threads(threads))
    {
        BOLT_OMP(for schedule(static, 1))
        for (int32_t part = 0; part < threads; ++part) {
            const int64_t low = p->rows * part / threads, high = p->rows * (part + 1) / threads;
            int64_t found = 0;
            for (int64_t row = low; row < high; ++row)
                found += p->stamps[row] == step;
            starts[part + 1] = found;
        }
        BOLT_OMP(single)
        for (int32_t part = 0; part < threads; ++part)
            starts[part + 1] += starts[part];
        BOLT_OMP(for schedule(static, 1))
        for (int32_t part = 0; part < threads; ++part) {
            const int64_t low = p->rows * part / threads, high = p->rows * (part + 1) / threads;
            int64_t at = starts[part];
            for (int64_t row = low; row < high; ++row)
                if (p->stamps[row] == step) {
                    ids[at] = row;
                    memcpy(grads + (size_t)at * width, p->sums + (size_t)row * width, sizeof(real_t) * (size_t)width);
                    ++at;
                }
        }
    }
    return starts[threads];
}

/* The first of `n` ascending ids that is at least `id`. */
static inline int64_t bolt_lower_bound(const int64_t *ids, int64_t n, int64_t id)
{
    int64_t low = 0, high = n;
    while (low < high) {
        const int64_t middle = low + (high - low) / 2;
        if (ids[middle] < id)
            low = middle + 1;
        else
            high = middle;
    }
    return low;
}

/* Whether every share's ids ascend strictly within [0, rows) (or, sent whole, have all rows or none). */
static inline int bolt_shares_valid(const bolt_exchanged *p, const bolt_shares *shares)
{
    for (int32_t s = 0; s < shares->count; ++s) {
        const int64_t n = shares->counts[s];
        if (n == 0)
            continue;
        if (n < 0 || !shares->grads[s])
            return 0;
        if (!p->stamps || !shares->ids[s]) {
            if (p->stamps || shares->ids[s] || n != p->rows)
                return 0;
            continue;
        }
        for (int64_t i = 0; i < n; ++i)
            if (shares->ids[s][i] < (i ? shares->ids[s][i - 1] + 1 : 0) || shares->ids[s][i] >= p->rows)
                return 0;
    }
    return 1;
}

/* Every row of the shares' union stepped once from its gradients summed in rank order; returns the union's rows,
 * or -1 for shares that break bolt_shares_valid. A row only one share has is stepped from that share's gradient;
 * one that several have is summed into p->sums first. The row's stamp says which, in four values below 0 that are
 * the step's own (the step's backward stamped its rows with the step, above 0). */
static inline int64_t bolt_apply_shares(const bolt_exchanged *p, const bolt_shares *shares, const bolt_update *u,
                                        int32_t threads)
{
    if (!bolt_shares_valid(p, shares))
        return -1;
    const int32_t width = p->width;
    int64_t applied = 0;
    (void)threads; /* read only by OpenMP */
    if (!p->stamps) {
        int32_t first = -1;
        for (int32_t s = 0; s < shares->count && first < 0; ++s)
            first = shares->counts[s] ? s : -1;
        if (first < 0)
            return 0;
        BOLT_OMP(parallel for num_threads(threads) schedule(static))
        for (int64_t row = 0; row < p->rows; ++row) {
            real_t *restrict sum = p->sums + (size_t)row * width;
            memcpy(sum, shares->grads[first] + (size_t)row * width, sizeof(real_t) * (size_t)width);
            for (int32_t s = first + 1; s < shares->count; ++s)
                if (shares->counts[s])
                    bolt_add(width, shares->grads[s] + (size_t)row * width, sum);
            bolt_exchanged_step(p, u, row, sum);
        }
        return p->rows;
    }
    const int64_t once = -4 * u->step, several = once - 1, summing = once - 2, stepped = once - 3;
    BOLT_OMP(parallel for num_threads(threads) schedule(static, 1) reduction(+ : applied))
    for (int32_t part = 0; part < threads; ++part) {
        const int64_t low = p->rows * part / threads, high = p->rows * (part + 1) / threads;
#define BOLT_EACH_ROW_OF_PART                                                                                      \
    for (int32_t s = 0; s < shares->count; ++s)                                                                    \
        for (int64_t i = bolt_lower_bound(shares->ids[s], shares->counts[s], low);                                 \
             i < shares->counts[s] && shares->ids[s][i] < high; ++i)
        BOLT_EACH_ROW_OF_PART { /* how many shares have the row */
            int64_t *stamp = p->stamps + shares->ids[s][i];
            *stamp = *stamp == once || *stamp == several ? several : once;
        }
        BOLT_EACH_ROW_OF_PART { /* the sums of rows several shares have, first rank first */
            const int64_t row = shares->ids[s][i];
            real_t *restrict sum = p->sums + (size_t)row * width;
            if (p->stamps[row] == several) {
                p->stamps[row] = summing;
                memcpy(sum, shares->grads[s] + (size_t)i * width, sizeof(real_t) * (size_t)width);
            } else if (p->stamps[row] == summing) {
                bolt_add(width, shares->grads[s] + (size_t)i * width, sum);
            }
        }
        BOLT_EACH_ROW_OF_PART {
            const int64_t row = shares->ids[s][i];
            if (p->stamps[row] == once || p->stamps[row] == summing) {
                bolt_exchanged_step(p, u, row, p->stamps[row] == once ? shares->grads[s] + (size_t)i * width :
                                                                        p->sums + (size_t)row * width);
                p->stamps[row] = stepped;
                ++applied;
            }
        }
#undef BOLT_EACH_ROW_OF_PART
    }
    return applied;
}

#endif /* BOLT_EXCHANGE_H */
