/* boltc runtime: reading model inputs, and regrouping a batch's sparse input entries by feature.
 *
 * A layer fed by a sparse input owns one weight row per feature. Grouping the batch's entries by feature lets each
 * present row be summed and updated by exactly one thread, in a fixed order: no atomics, no per-thread copies of the
 * weights, results independent of the thread count, and work proportional to the batch's non-zeros, not to the
 * input dimension.
 */
#ifndef BOLT_CSR_H
#define BOLT_CSR_H

#include <string.h>

#include "bolt_abi.h"

/* One data-set row of a model input as dense values: from a dense matrix, or scattered from CSR. */
static inline void bolt_input_row(const bolt_input *input, int64_t row, int32_t dim, real_t *restrict out)
{
    if (input->dense) {
        const float *x = input->dense + (size_t)row * dim;
        for (int32_t i = 0; i < dim; ++i)
            out[i] = (real_t)x[i];
        return;
    }
    memset(out, 0, (size_t)dim * sizeof(real_t));
    for (int64_t p = input->indptr[row]; p < input->indptr[row + 1]; ++p)
        out[input->indices[p]] += input->values ? (real_t)input->values[p] : 1;
}

/* Returns the number of distinct features, or -1 when the workspace is too small. */
static inline int64_t bolt_group_by_feature(const bolt_batch *batch, const bolt_input *input, bolt_workspace *ws)
{
    int32_t *slot = ws->feature_slot;
    int64_t n_features = 0, n_entries = 0;
    if (!ws->starts || !slot)
        return -1;
    for (int32_t b = 0; b < batch->rows; ++b) {
        int64_t row = batch->row_ids[b];
        for (int64_t p = input->indptr[row]; p < input->indptr[row + 1]; ++p) {
            int32_t f = input->indices[p];
            if (slot[f] == 0) {
                if (n_features >= ws->capacity)
                    goto too_small;
                ws->features[n_features] = f;
                ws->starts[n_features] = 0;
                slot[f] = (int32_t)++n_features; /* slot is 1-based so that 0 means absent */
            }
            ws->starts[slot[f] - 1] += 1;
            ++n_entries;
        }
    }
    if (n_entries > ws->capacity)
        goto too_small;
    /* counts -> start offsets, then place every entry at its feature's cursor */
    int64_t offset = 0;
    for (int64_t k = 0; k < n_features; ++k) {
        int64_t count = ws->starts[k];
        ws->starts[k] = offset;
        offset += count;
    }
    ws->starts[n_features] = offset;
    for (int32_t b = 0; b < batch->rows; ++b) {
        int64_t row = batch->row_ids[b];
        for (int64_t p = input->indptr[row]; p < input->indptr[row + 1]; ++p) {
            int64_t k = slot[input->indices[p]] - 1;
            int64_t at = ws->starts[k]++;
            ws->entry_rows[at] = b;
            ws->entry_values[at] = input->values ? input->values[p] : 1.0f;
        }
    }
    /* the cursors advanced to each group's end: shift back to starts, and leave feature_slot all zero again */
    for (int64_t k = n_features; k > 0; --k)
        ws->starts[k] = ws->starts[k - 1];
    ws->starts[0] = 0;
    for (int64_t k = 0; k < n_features; ++k)
        slot[ws->features[k]] = 0;
    return n_features;

too_small:
    for (int64_t k = 0; k < n_features; ++k)
        slot[ws->features[k]] = 0;
    return -1;
}

#endif /* BOLT_CSR_H */
