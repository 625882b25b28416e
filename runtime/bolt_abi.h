/* boltc runtime: the types that generated modules and the Python runtime share.
 *
 * build.py reads the block between the BOLT_CDEF markers as the cffi declarations, so this header is the single
 * source of truth for the ABI. Python owns every array; C only receives pointers.
 */
#ifndef BOLT_ABI_H
#define BOLT_ABI_H

#include <stdint.h>

/* BOLT_CDEF_BEGIN */
/* One model input over a whole data set: a dense row-major matrix, or CSR rows. */
typedef struct bolt_input {
    const float *dense;     /* [n_rows][dim], or NULL when the input is given as CSR */
    const int64_t *indptr;  /* CSR: row r holds entries indptr[r] .. indptr[r + 1] - 1 */
    const int32_t *indices; /* feature id of each entry, < dim */
    const float *values;    /* value of each entry, or NULL when every present feature counts 1 */
} bolt_input;

/* The rows of a data set that form one batch, with their labels. */
typedef struct bolt_batch {
    int32_t rows;               /* rows in this batch, at most the compiled batch size */
    int32_t threads;            /* OpenMP threads to use */
    const int64_t *row_ids;     /* data-set row of each batch row */
    const bolt_input *inputs;   /* one per model input, in spec order */
    const int64_t *label_indptr; /* labels of data-set row r: label_ids[label_indptr[r] .. label_indptr[r + 1] - 1] */
    const int32_t *label_ids;   /* NULL when the data has no labels (prediction) */
    int32_t sparse;             /* inference: score only the neurons LSH selects in sparse layers */
    int32_t lsh_candidates;     /* sparse inference: LSH candidates per row besides the heavy rows (at most the
                                 * compiled count, which a negative value stands for) */
    int32_t mean_rows;          /* training: rows the loss is averaged over, 0 for this batch's own (a worker's
                                 * share of a distributed step gives the global batch's count) */
} bolt_batch;

/* Scratch for regrouping a batch's sparse entries by feature, so that weight rows are updated without races. */
typedef struct bolt_workspace {
    int64_t capacity;       /* entries each array below holds: at least the non-zeros of any batch */
    int32_t *feature_slot;  /* [largest input dim], all zero between calls */
    int32_t *features;      /* [capacity] distinct features present in the batch */
    int64_t *starts;        /* [capacity + 1] where each feature's entries begin */
    int32_t *entry_rows;    /* [capacity] batch row of each entry, grouped by feature */
    float *entry_values;    /* [capacity] value of each entry, grouped by feature */
} bolt_workspace;

/* Settings for one training step. */
typedef struct bolt_step {
    double learning_rate;
    double beta1;
    double beta2;
    double eps;
    int64_t step;          /* 1-based count of updates so far, for Adam's bias correction */
    int32_t insert_labels; /* the hash tables are frozen: each row's labels join the buckets its input hashes to */
    int32_t collect_gradients; /* distributed training: 1, the backward writes each parameter's gradient rows into
                                * its exchange buffers (and stamps the rows it wrote) instead of stepping; 2, it adds
                                * them to what earlier batches of the same step wrote (gradient accumulation); the
                                * workers' shares are then stepped by bolt_step_shares */
} bolt_step;
/* What the entry points return (Python reads the values from the compiled library). */
enum bolt_status {
    BOLT_OK = 0,
    BOLT_ERROR_BATCH_TOO_LARGE = 1,
    BOLT_ERROR_WORKSPACE_TOO_SMALL = 2,
    BOLT_ERROR_BAD_ARGUMENT = 3,
    BOLT_ERROR_NONFINITE_LOSS = 4,
    BOLT_ERROR_BAD_SHARES = 5
};
/* BOLT_CDEF_END */

#endif /* BOLT_ABI_H */
