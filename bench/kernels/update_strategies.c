/* Weight-update strategies for an LSH-sparse output layer, measured in isolation.
 *
 * The layer: N neurons of DIM inputs each (W[N][DIM], Adam moments M and V the same shape), a batch of B rows, each
 * row with A active neurons. Per batch, B * A (row, neuron, coefficient) entries come out of the loss: the
 * coefficient of entry (b, a) is dZ[b][a], its neuron active[b][a]. The backward step of the layer is then
 *
 *     dX[b][:]  = sum over a of dZ[b][a] * W_old[active[b][a]][:]          (input gradient, with W before the update)
 *     grad_n[:] = sum over entries (b, a) with active[b][a] == n of dZ[b][a] * X[b][:]
 *     Adam(W[n], M[n], V[n], grad_n) for every neuron n touched by the batch (lazy Adam: untouched rows not visited)
 *
 * At the Amazon-670K shape (N = 670091, DIM = 128, B = 256, A = 3351) a batch has 857,856 entries over ~484,000
 * distinct neurons, so the update reads and writes ~72% of three 343 MB arrays in 512-byte rows: the step is a
 * memory-bandwidth problem and the strategies below differ in how many bytes they move and in what order.
 *
 *   grouped            Serial counting sort of the entries by neuron (bolt_group_entries of runtime/bolt_lsh.h: groups
 *                      in first-seen order), then one thread per group sums the neuron's gradient in registers from
 *                      the (L2-resident) X rows and applies Adam to its row at once. No gradient is ever stored, so
 *                      each touched W/M/V row is read and written exactly once. dX is a separate pass that gathers
 *                      W_old rows per batch row. The reference every other strategy is compared with.
 *   grouped-idorder    The same, but the counting sort lists the groups in ascending neuron id (a sweep over the count
 *                      array), so the update walks W/M/V nearly sequentially (72% of rows are touched) instead of in
 *                      random order: DRAM pages and hardware prefetchers are used well. Same sums, bit for bit.
 *   grouped-fused      grouped-idorder, with dX computed inside the update loop (the way templates/fc_sparse.c.j2 does
 *                      it): the thread that holds W_old[n] in registers scatters dZ * W_old[n] into its own B x DIM
 *                      dX buffer (128 KB, stays in L2) before updating the row. This removes the separate dX gather
 *                      pass (B * A random 512-byte reads); the per-thread buffers are added at the end.
 *   grouped-parts      grouped-fused with the grouping made parallel (as the template's parts, but by ranges of
 *                      consecutive ids): a parallel radix pass buckets the entries by id range (part), then one task
 *                      per part counting-sorts its own entries by neuron (ascending id) and updates its groups at
 *                      once. Removes the serial grouping pass, which costs a whole single-threaded sweep of the
 *                      entries with random access into slot[N].
 *   hogwild            SLIDE/BOLT style: a shared gradient G[N][DIM]; threads take batch rows and add
 *                      dZ[b][a] * X[b] into G[n] with no atomics (concurrent updates of one row may lose a term:
 *                      that is the accepted race), and mark n in a touched flag. Then a parallel sweep over the flags
 *                      (ascending id, like SLIDE's loop over all neurons) applies Adam from G[n] and zeroes G[n]
 *                      (lazy zeroing: only touched rows are cleared). G costs one extra read-modify-write of a
 *                      512-byte row per entry plus a read and a clearing write per touched neuron. dX as in grouped.
 *   hogwild-fused      hogwild with dX computed in the row loop: the thread reads W_old[n] anyway (Adam has not run
 *                      yet), so dX needs no separate pass over the entries.
 *   perthread          Each thread its own G_t[N][DIM] and flags: no races, but T x 343 MB of buffers, and the Adam
 *                      sweep reads and clears every touched G_t row of every thread.
 *
 * The process generates a few different batches (realistic active sets: 5 Zipf-distributed "labels" per row, the
 * rest uniform distinct ids) and cycles through them, so that no iteration finds the previous one's rows in cache.
 * Each strategy has its own W/M/V (all start from the same deterministic values) and runs the same batch sequence;
 * the strategies run interleaved, one batch each in turn (the first one rotating), so on a shared machine they all
 * see the same background load, and a strategy's batch always follows other strategies' batches on other arrays
 * (cold caches, as in training where the other layers run in between). The final W/M/V and the last batch's dX are
 * compared with grouped's. A STREAM-like probe of 512-byte row gathers gives the memory limit.
 *
 * Prints one JSON object on stdout (bench/kernels/run_update_strategies.py formats it).
 * Build: gcc -O3 -fno-math-errno -fno-trapping-math -march=native -fopenmp -Iruntime this.c -lm
 */
#define _GNU_SOURCE
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef float real_t;
#define BOLT_REAL_IS_DOUBLE 0
#include "bolt_simd.h"  /* bolt_vec, bolt_load, bolt_store */
#include "bolt_dense.h" /* bolt_prefetch_row */

#ifndef DIM
#define DIM 128
#endif
#define VECS (DIM / BOLT_LANES)
#define ROW_BYTES ((int64_t)DIM * (int64_t)sizeof(real_t))
_Static_assert(DIM % BOLT_LANES == 0, "DIM must be a whole number of SIMD vectors");

#define N_LABELS 5       /* Zipf-distributed ids at the head of each row's active set */
#define ZIPF_OFFSET 50.0 /* p(k) ~ 1 / (k + ZIPF_OFFSET) over a random permutation of ids */
#define MAX_ITERS 256

/* ------------------------------------------------------------------------------------------------------------ */
/* Configuration and small helpers                                                                               */

typedef struct {
    int64_t n;           /* neurons */
    int32_t b, a;        /* batch rows, active per row */
    int32_t n_batches;   /* distinct generated batches, cycled */
    int32_t warmup, iters;
    int32_t prefetch;    /* rows prefetched ahead in the gather/scatter loops; 0 = none */
    int32_t thp;         /* madvise(MADV_HUGEPAGE) the big arrays, as numpy does for boltc's buffers */
    int32_t stream_reps;
    uint64_t seed;
    const char *only;    /* comma-separated strategy names, or NULL for all */
    int32_t perthread;   /* run the per-thread strategy (its buffers are T x N x DIM floats) */
    int32_t parts;       /* grouped-parts: at most this many parts of consecutive neuron ids */
} config;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double uniform(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1.0p-53; }

static uint32_t mix32(uint32_t h) /* MurmurHash3 finaliser: deterministic initial values without a generator */
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
}

static int64_t big_bytes_total = 0;

/* Large arrays: 2 MB aligned, optionally huge-page advised, and touched once (written) so no page fault is timed. */
static void *big_alloc(size_t bytes, int thp)
{
    const size_t align = 2u << 20;
    size_t rounded = (bytes + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded);
    if (!p) {
        fprintf(stderr, "out of memory allocating %zu bytes\n", bytes);
        exit(2);
    }
    if (thp)
        madvise(p, rounded, MADV_HUGEPAGE);
    char *c = (char *)p;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < rounded; i += 4096)
        memset(c + i, 0, 4096);
    big_bytes_total += (int64_t)rounded;
    return p;
}

static void *small_alloc(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memset(p, 0, bytes);
    return p;
}

static int cmp_double(const void *x, const void *y)
{
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}
static double median(const double *v, int n)
{
    double t[MAX_ITERS];
    memcpy(t, v, (size_t)n * sizeof(double));
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}
static int cmp_i32(const void *x, const void *y)
{
    const int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Batches                                                                                                       */

typedef struct {
    int32_t *active; /* [B][A] neuron ids, distinct within a row */
    real_t *dz;      /* [B][A] output gradients (the entries' coefficients) */
    real_t *x;       /* [B][DIM] layer input (hidden activations) */
    int64_t distinct;
} batch_t;

/* Each row: N_LABELS "label" ids drawn from p(k) ~ 1/(k + 50) over a random permutation of ids (so a few neurons
 * are hot across rows, as labels are), then uniform random ids distinct within the row. The coefficients look like
 * a sigmoid-BCE gradient (labels: p - 1 < 0; the rest small positive p); X like ReLU output (about half zeros). */
static void make_batches(const config *c, batch_t *batches, uint64_t seed)
{
    const int64_t n = c->n;
    int32_t *perm = (int32_t *)small_alloc((size_t)n * sizeof(int32_t));
    double *cdf = (double *)small_alloc((size_t)n * sizeof(double));
    int32_t *stamp = (int32_t *)small_alloc((size_t)n * sizeof(int32_t));
    uint64_t s = seed;
    for (int64_t i = 0; i < n; ++i)
        perm[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; --i) {
        const int64_t j = (int64_t)(splitmix(&s) % (uint64_t)(i + 1));
        const int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    double total = 0;
    for (int64_t k = 0; k < n; ++k)
        cdf[k] = (total += 1.0 / ((double)k + ZIPF_OFFSET));
    int32_t mark = 0;
    const int32_t labels = c->a < N_LABELS ? c->a : N_LABELS;
    for (int32_t q = 0; q < c->n_batches; ++q) {
        batch_t *bt = &batches[q];
        bt->active = (int32_t *)small_alloc((size_t)c->b * c->a * sizeof(int32_t));
        bt->dz = (real_t *)small_alloc((size_t)c->b * c->a * sizeof(real_t));
        bt->x = (real_t *)small_alloc((size_t)c->b * DIM * sizeof(real_t));
        for (int32_t b = 0; b < c->b; ++b) {
            int32_t *row = bt->active + (size_t)b * c->a;
            real_t *dz = bt->dz + (size_t)b * c->a;
            ++mark;
            int32_t count = 0;
            while (count < labels) {
                const double u = uniform(&s) * total;
                int64_t lo = 0, hi = n - 1; /* first k with cdf[k] >= u */
                while (lo < hi) {
                    const int64_t mid = (lo + hi) / 2;
                    if (cdf[mid] < u)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                const int32_t id = perm[lo];
                if (stamp[id] != mark) {
                    stamp[id] = mark;
                    dz[count] = (real_t)(-0.3 - 0.7 * uniform(&s));
                    row[count++] = id;
                }
            }
            while (count < c->a) {
                const int32_t id = (int32_t)(splitmix(&s) % (uint64_t)n);
                if (stamp[id] != mark) {
                    stamp[id] = mark;
                    dz[count] = (real_t)(0.05 * uniform(&s));
                    row[count++] = id;
                }
            }
            for (int32_t j = 0; j < DIM; ++j) {
                const double u = uniform(&s);
                bt->x[(size_t)b * DIM + j] = (real_t)(u < 0.5 ? 0.0 : 2.0 * (u - 0.5));
            }
        }
        ++mark; /* distinct neurons of the whole batch */
        int64_t distinct = 0;
        for (int64_t e = 0; e < (int64_t)c->b * c->a; ++e)
            if (stamp[bt->active[e]] != mark) {
                stamp[bt->active[e]] = mark;
                ++distinct;
            }
        bt->distinct = distinct;
    }
    free(perm);
    free(cdf);
    free(stamp);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Model state and the shared kernels                                                                            */

typedef struct {
    real_t lr, b1, c1, b2, c2, eps, s1, s2;
} adam_t;

static adam_t adam_of(int64_t step)
{
    const double beta1 = 0.9, beta2 = 0.999;
    adam_t u = {(real_t)1e-4, (real_t)beta1, (real_t)(1 - beta1), (real_t)beta2, (real_t)(1 - beta2), (real_t)1e-7,
                (real_t)(1.0 / (1.0 - pow(beta1, (double)step))), (real_t)(1.0 / (1.0 - pow(beta2, (double)step)))};
    return u;
}

/* Adam on one row, the same expression as bolt_adam_row in runtime/bolt_optim.h. */
static inline void adam_row(const adam_t *u, const real_t *restrict g, real_t *restrict w, real_t *restrict m,
                            real_t *restrict v)
{
    const real_t lr = u->lr, b1 = u->b1, c1 = u->c1, b2 = u->b2, c2 = u->c2, eps = u->eps, s1 = u->s1, s2 = u->s2;
#pragma omp simd
    for (int32_t j = 0; j < DIM; ++j) {
        const real_t gj = g[j];
        const real_t mj = b1 * m[j] + c1 * gj;
        const real_t vj = b2 * v[j] + c2 * gj * gj;
        m[j] = mj;
        v[j] = vj;
        w[j] -= lr * (mj * s1) / (sqrtf(vj * s2) + eps);
    }
}

typedef struct {
    int64_t n;
    int32_t b, a, threads, prefetch;
    real_t *w, *m, *v; /* [N][DIM] */
    real_t *dx;        /* [B][DIM] */
    /* grouped */
    int32_t *slot, *groups, *starts, *entry_rows;
    real_t *entry_coefs;
    real_t *dx_threads; /* [T][B][DIM] for the fused variants */
    /* grouped-parts */
    int32_t parts, part_shift;
    int64_t *part_hist, *part_offsets; /* [T][parts], [parts + 1] */
    int32_t *part_entries;             /* [E] */
    /* hogwild */
    real_t *g;
    uint8_t *flag;
    /* perthread */
    real_t *g_threads;    /* [T][N][DIM] */
    uint8_t *flag_threads; /* [T][N] */
} state_t;

static void init_params(state_t *st)
{
    const int64_t total = st->n * DIM;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < total; ++i) {
        const uint32_t h = mix32((uint32_t)i * 3u + 1u), hm = mix32((uint32_t)i * 3u + 2u);
        const uint32_t hv = mix32((uint32_t)i * 3u + 3u);
        st->w[i] = (real_t)(((double)h * 0x1.0p-32 - 0.5) * 0.1);
        st->m[i] = (real_t)(((double)hm * 0x1.0p-32 - 0.5) * 1e-3);
        st->v[i] = (real_t)((double)hv * 0x1.0p-32 * 1e-5);
    }
}

/* dX[b] = sum over a of dZ[b][a] * W_old[active[b][a]]: one batch row per task, the DIM sums in registers, the W
 * rows (random, 512 bytes each) prefetched a few entries ahead. */
static void dx_gather(state_t *st, const batch_t *bt)
{
    const int32_t A = st->a, pf = st->prefetch;
#pragma omp parallel for schedule(dynamic, 2)
    for (int32_t b = 0; b < st->b; ++b) {
        const int32_t *ids = bt->active + (size_t)b * A;
        const real_t *dz = bt->dz + (size_t)b * A;
        bolt_vec acc[VECS];
        for (int32_t v = 0; v < VECS; ++v)
            acc[v] = (bolt_vec){0};
        for (int32_t a = 0; a < A; ++a) {
            if (pf && a + pf < A)
                bolt_prefetch_row(st->w + (size_t)ids[a + pf] * DIM, DIM);
            const real_t c = dz[a];
            const real_t *w = st->w + (size_t)ids[a] * DIM;
            for (int32_t v = 0; v < VECS; ++v)
                acc[v] += c * bolt_load(w + v * BOLT_LANES);
        }
        for (int32_t v = 0; v < VECS; ++v)
            bolt_store(st->dx + (size_t)b * DIM + v * BOLT_LANES, acc[v]);
    }
}

/* A copy of bolt_group_entries (runtime/bolt_lsh.h): groups in first-seen order, entries of a group in row order. */
static int32_t group_first_seen(state_t *st, const batch_t *bt)
{
    const int32_t n_entries = st->b * st->a, A = st->a;
    int32_t *restrict slot = st->slot, *restrict groups = st->groups, *restrict starts = st->starts;
    int32_t n_groups = 0;
    for (int32_t e = 0; e < n_entries; ++e) {
        const int32_t id = bt->active[e];
        if (slot[id] == 0) {
            groups[n_groups] = id;
            starts[n_groups] = 0;
            slot[id] = ++n_groups;
        }
        starts[slot[id] - 1] += 1;
    }
    int32_t offset = 0;
    for (int32_t g = 0; g < n_groups; ++g) {
        const int32_t count = starts[g];
        starts[g] = offset;
        offset += count;
    }
    for (int32_t e = 0; e < n_entries; ++e) {
        const int32_t at = starts[slot[bt->active[e]] - 1]++;
        st->entry_rows[at] = e / A;
        st->entry_coefs[at] = bt->dz[e];
    }
    for (int32_t g = n_groups; g > 0; --g)
        starts[g] = starts[g - 1];
    starts[0] = 0;
    for (int32_t g = 0; g < n_groups; ++g)
        slot[groups[g]] = 0;
    return n_groups;
}

/* Counting sort by neuron id: the same groups (entries still in row order, so the same sums bit for bit) but listed
 * in ascending id. The extra cost is one sweep over the N counts. */
static int32_t group_id_order(state_t *st, const batch_t *bt)
{
    const int32_t n_entries = st->b * st->a, A = st->a;
    int32_t *restrict count = st->slot, *restrict groups = st->groups, *restrict starts = st->starts;
    for (int32_t e = 0; e < n_entries; ++e)
        count[bt->active[e]] += 1;
    int32_t n_groups = 0, offset = 0;
    for (int64_t n = 0; n < st->n; ++n) {
        const int32_t c = count[n];
        if (c) {
            groups[n_groups] = (int32_t)n;
            starts[n_groups++] = offset;
            count[n] = offset; /* becomes the neuron's write cursor */
            offset += c;
        }
    }
    starts[n_groups] = offset;
    for (int32_t e = 0; e < n_entries; ++e) {
        const int32_t at = count[bt->active[e]]++;
        st->entry_rows[at] = e / A;
        st->entry_coefs[at] = bt->dz[e];
    }
    for (int32_t g = 0; g < n_groups; ++g)
        count[groups[g]] = 0;
    return n_groups;
}

/* One group: the neuron's gradient summed from the X rows of its entries in registers, then Adam on its row. With
 * my_dx (fused dX), the same loop also adds dZ * W_old[n] into that per-thread dX buffer before the row changes. */
static inline void update_one_group(const state_t *st, const batch_t *bt, const adam_t *u,
                                    const int32_t *restrict groups, const int32_t *restrict starts,
                                    const int32_t *restrict entry_rows, const real_t *restrict entry_coefs,
                                    int32_t g, int32_t n_groups, real_t *restrict my_dx)
{
    const int32_t pf = st->prefetch; /* groups ahead (3 rows each), as the runtime's BOLT_PREFETCH_ROWS */
    if (pf && g + pf < n_groups) {
        const size_t next = (size_t)groups[g + pf] * DIM;
        bolt_prefetch_row(st->w + next, DIM);
        bolt_prefetch_row(st->m + next, DIM);
        bolt_prefetch_row(st->v + next, DIM);
    }
    const size_t at = (size_t)groups[g] * DIM;
    const int32_t first = starts[g], last = starts[g + 1];
    bolt_vec acc[VECS];
    for (int32_t v = 0; v < VECS; ++v)
        acc[v] = (bolt_vec){0};
    if (!my_dx) {
        for (int32_t e = first; e < last; ++e) {
            const real_t c = entry_coefs[e];
            const real_t *x = bt->x + (size_t)entry_rows[e] * DIM;
            for (int32_t v = 0; v < VECS; ++v)
                acc[v] += c * bolt_load(x + v * BOLT_LANES);
        }
    } else {
        bolt_vec w[VECS];
        for (int32_t v = 0; v < VECS; ++v)
            w[v] = bolt_load(st->w + at + v * BOLT_LANES);
        for (int32_t e = first; e < last; ++e) {
            const real_t c = entry_coefs[e];
            const int32_t r = entry_rows[e];
            const real_t *x = bt->x + (size_t)r * DIM;
            real_t *d = my_dx + (size_t)r * DIM;
            for (int32_t v = 0; v < VECS; ++v) {
                acc[v] += c * bolt_load(x + v * BOLT_LANES);
                bolt_store(d + v * BOLT_LANES, bolt_load(d + v * BOLT_LANES) + c * w[v]);
            }
        }
    }
    real_t grad[DIM] __attribute__((aligned(64)));
    for (int32_t v = 0; v < VECS; ++v)
        bolt_store(grad + v * BOLT_LANES, acc[v]);
    adam_row(u, grad, st->w + at, st->m + at, st->v + at);
}

/* dX = the sum of the per-thread dX buffers (fused variants). */
static void reduce_dx(state_t *st)
{
    const int32_t threads = st->threads;
#pragma omp parallel for schedule(static)
    for (int32_t b = 0; b < st->b; ++b)
        for (int32_t j = 0; j < DIM; ++j) {
            real_t s = 0;
            for (int32_t t = 0; t < threads; ++t)
                s += st->dx_threads[((size_t)t * st->b + b) * DIM + j];
            st->dx[(size_t)b * DIM + j] = s;
        }
}

/* One thread per group (dynamic chunks of 16 groups), over the groups of a serial grouping pass. */
static void update_groups(state_t *st, const batch_t *bt, int32_t n_groups, const adam_t *u, int fuse_dx)
{
#pragma omp parallel
    {
        real_t *restrict my_dx = fuse_dx ? st->dx_threads + (size_t)omp_get_thread_num() * st->b * DIM : NULL;
        if (my_dx)
            memset(my_dx, 0, (size_t)st->b * DIM * sizeof(real_t));
#pragma omp for schedule(dynamic, 16)
        for (int32_t g = 0; g < n_groups; ++g)
            update_one_group(st, bt, u, st->groups, st->starts, st->entry_rows, st->entry_coefs, g, n_groups, my_dx);
    }
    if (fuse_dx)
        reduce_dx(st);
}

/* grouped-parts, step 1: the grouping made parallel. Neuron ids are cut into parts of 2^shift consecutive ids; a
 * parallel radix pass (per-thread counts per part, a prefix, a scatter over the same static chunks of entries)
 * lists each part's entry indices in ascending entry order, i.e. row order, so the sums stay bit for bit those of
 * grouped. */
static void bucket_entries(state_t *st, const batch_t *bt)
{
    const int64_t n_entries = (int64_t)st->b * st->a;
    const int32_t parts = st->parts, shift = st->part_shift, threads = st->threads;
    int64_t *restrict hist = st->part_hist; /* [T][parts] */
#pragma omp parallel
    {
        const int32_t t = omp_get_thread_num();
        int64_t *restrict mine = hist + (size_t)t * parts;
        for (int32_t p = 0; p < parts; ++p)
            mine[p] = 0;
#pragma omp for schedule(static)
        for (int64_t e = 0; e < n_entries; ++e)
            mine[bt->active[e] >> shift] += 1;
#pragma omp single
        {
            int64_t offset = 0;
            for (int32_t p = 0; p < parts; ++p) {
                st->part_offsets[p] = offset;
                for (int32_t u = 0; u < threads; ++u) {
                    const int64_t count = hist[(size_t)u * parts + p];
                    hist[(size_t)u * parts + p] = offset;
                    offset += count;
                }
            }
            st->part_offsets[parts] = offset;
        }
#pragma omp for schedule(static)
        for (int64_t e = 0; e < n_entries; ++e)
            st->part_entries[mine[bt->active[e] >> shift]++] = (int32_t)e;
    }
}

/* grouped-parts, step 2: one task per part groups the part's entries by neuron (counting sort over the part's id
 * range, so groups come in ascending id) and updates its groups right away, dX fused. Parts own disjoint id ranges,
 * so the slot array and the W/M/V rows need no synchronisation. Returns the number of groups. */
static int64_t update_parts(state_t *st, const batch_t *bt, const adam_t *u)
{
    const int32_t parts = st->parts, shift = st->part_shift, A = st->a;
    int64_t total_groups = 0;
#pragma omp parallel reduction(+ : total_groups)
    {
        real_t *restrict my_dx = st->dx_threads + (size_t)omp_get_thread_num() * st->b * DIM;
        memset(my_dx, 0, (size_t)st->b * DIM * sizeof(real_t));
#pragma omp for schedule(dynamic, 1)
        for (int32_t p = 0; p < parts; ++p) {
            const int64_t base = st->part_offsets[p], count = st->part_offsets[p + 1] - base;
            const int32_t *restrict entries = st->part_entries + base;
            int32_t *restrict groups = st->groups + base, *restrict starts = st->starts + base + p;
            int32_t *restrict rows = st->entry_rows + base;
            real_t *restrict coefs = st->entry_coefs + base;
            int32_t *restrict slot = st->slot;
            for (int64_t i = 0; i < count; ++i)
                slot[bt->active[entries[i]]] += 1;
            const int64_t lo = (int64_t)p << shift, hi = lo + ((int64_t)1 << shift) < st->n ? lo + ((int64_t)1 << shift)
                                                                                            : st->n;
            int32_t n_groups = 0, offset = 0;
            for (int64_t n = lo; n < hi; ++n) {
                const int32_t c = slot[n];
                if (c) {
                    groups[n_groups] = (int32_t)n;
                    starts[n_groups++] = offset;
                    slot[n] = offset;
                    offset += c;
                }
            }
            starts[n_groups] = offset;
            for (int64_t i = 0; i < count; ++i) {
                const int32_t e = entries[i];
                const int32_t at = slot[bt->active[e]]++;
                rows[at] = e / A;
                coefs[at] = bt->dz[e];
            }
            for (int32_t g = 0; g < n_groups; ++g)
                slot[groups[g]] = 0;
            for (int32_t g = 0; g < n_groups; ++g)
                update_one_group(st, bt, u, groups, starts, rows, coefs, g, n_groups, my_dx);
            total_groups += n_groups;
        }
    }
    reduce_dx(st);
    return total_groups;
}

/* Hogwild accumulation: G[n] += dZ[b][a] * X[b] for every entry, rows of the batch spread over threads, no atomics.
 * With fuse_dx the same loop gathers dX[b] from W_old[n], which it is next to anyway. */
static void hogwild_accumulate(state_t *st, const batch_t *bt, int fuse_dx)
{
    const int32_t A = st->a, pf = st->prefetch;
#pragma omp parallel for schedule(dynamic, 2)
    for (int32_t b = 0; b < st->b; ++b) {
        const int32_t *ids = bt->active + (size_t)b * A;
        const real_t *dz = bt->dz + (size_t)b * A;
        bolt_vec x[VECS], acc[VECS];
        for (int32_t v = 0; v < VECS; ++v) {
            x[v] = bolt_load(bt->x + (size_t)b * DIM + v * BOLT_LANES);
            acc[v] = (bolt_vec){0};
        }
        for (int32_t a = 0; a < A; ++a) {
            if (pf && a + pf < A) {
                bolt_prefetch_row(st->g + (size_t)ids[a + pf] * DIM, DIM);
                if (fuse_dx)
                    bolt_prefetch_row(st->w + (size_t)ids[a + pf] * DIM, DIM);
            }
            const int32_t n = ids[a];
            const real_t c = dz[a];
            real_t *g = st->g + (size_t)n * DIM;
            for (int32_t v = 0; v < VECS; ++v) /* the intentional race: a concurrent += of the same row may be lost */
                bolt_store(g + v * BOLT_LANES, bolt_load(g + v * BOLT_LANES) + c * x[v]);
            __atomic_store_n(&st->flag[n], 1, __ATOMIC_RELAXED); /* a plain byte store on x86 */
            if (fuse_dx) {
                const real_t *w = st->w + (size_t)n * DIM;
                for (int32_t v = 0; v < VECS; ++v)
                    acc[v] += c * bolt_load(w + v * BOLT_LANES);
            }
        }
        if (fuse_dx)
            for (int32_t v = 0; v < VECS; ++v)
                bolt_store(st->dx + (size_t)b * DIM + v * BOLT_LANES, acc[v]);
    }
}

/* Adam over the touched neurons, found by a sweep of the flags in ascending id; each G row is cleared after use
 * (lazy zeroing), so G is all zero again for the next batch. Returns the number of rows updated. */
static int64_t hogwild_adam(state_t *st, const adam_t *u)
{
    int64_t touched = 0;
#pragma omp parallel for schedule(dynamic, 2048) reduction(+ : touched)
    for (int64_t n = 0; n < st->n; ++n) {
        if (!st->flag[n])
            continue;
        st->flag[n] = 0;
        const size_t at = (size_t)n * DIM;
        adam_row(u, st->g + at, st->w + at, st->m + at, st->v + at);
        memset(st->g + at, 0, (size_t)ROW_BYTES);
        ++touched;
    }
    return touched;
}

/* Per-thread buffers: thread t adds into its own G_t and flags, so no entry is ever lost. */
static void perthread_accumulate(state_t *st, const batch_t *bt)
{
    const int32_t A = st->a, pf = st->prefetch;
#pragma omp parallel
    {
        const int32_t t = omp_get_thread_num();
        real_t *restrict gt = st->g_threads + (size_t)t * st->n * DIM;
        uint8_t *restrict ft = st->flag_threads + (size_t)t * st->n;
#pragma omp for schedule(dynamic, 2)
        for (int32_t b = 0; b < st->b; ++b) {
            const int32_t *ids = bt->active + (size_t)b * A;
            const real_t *dz = bt->dz + (size_t)b * A;
            bolt_vec x[VECS];
            for (int32_t v = 0; v < VECS; ++v)
                x[v] = bolt_load(bt->x + (size_t)b * DIM + v * BOLT_LANES);
            for (int32_t a = 0; a < A; ++a) {
                if (pf && a + pf < A)
                    bolt_prefetch_row(gt + (size_t)ids[a + pf] * DIM, DIM);
                const int32_t n = ids[a];
                const real_t c = dz[a];
                real_t *g = gt + (size_t)n * DIM;
                for (int32_t v = 0; v < VECS; ++v)
                    bolt_store(g + v * BOLT_LANES, bolt_load(g + v * BOLT_LANES) + c * x[v]);
                ft[n] = 1;
            }
        }
    }
}

/* The gradient of a touched neuron is the sum of its rows in every thread's buffer that touched it (in thread
 * order); each of those rows is read once and cleared. *partial_rows counts them. Returns the neurons updated. */
static int64_t perthread_adam(state_t *st, const adam_t *u, int64_t *partial_rows)
{
    int64_t touched = 0, partials = 0;
    const int32_t threads = st->threads;
#pragma omp parallel for schedule(dynamic, 2048) reduction(+ : touched, partials)
    for (int64_t n = 0; n < st->n; ++n) {
        const size_t at = (size_t)n * DIM;
        bolt_vec acc[VECS];
        for (int32_t v = 0; v < VECS; ++v)
            acc[v] = (bolt_vec){0};
        int any = 0;
        for (int32_t t = 0; t < threads; ++t) {
            uint8_t *f = st->flag_threads + (size_t)t * st->n + n;
            if (!*f)
                continue;
            *f = 0;
            real_t *g = st->g_threads + (size_t)t * st->n * DIM + at;
            for (int32_t v = 0; v < VECS; ++v)
                acc[v] += bolt_load(g + v * BOLT_LANES);
            memset(g, 0, (size_t)ROW_BYTES);
            any = 1;
            ++partials;
        }
        if (!any)
            continue;
        real_t grad[DIM] __attribute__((aligned(64)));
        for (int32_t v = 0; v < VECS; ++v)
            bolt_store(grad + v * BOLT_LANES, acc[v]);
        adam_row(u, grad, st->w + at, st->m + at, st->v + at);
        ++touched;
    }
    *partial_rows = partials;
    return touched;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Strategies                                                                                                    */

enum { GROUPED, GROUPED_IDORDER, GROUPED_FUSED, GROUPED_PARTS, HOGWILD, HOGWILD_FUSED, PERTHREAD, N_STRATEGIES };
static const char *const strategy_names[N_STRATEGIES] = {"grouped", "grouped-idorder", "grouped-fused", "grouped-parts",
                                                         "hogwild", "hogwild-fused",   "perthread"};
enum { PH_DX, PH_GROUP, PH_ACCUM, PH_ADAM, N_PHASES }; /* timed phases of one batch */
static const char *const phase_names[N_PHASES] = {"dx", "group", "accumulate", "update"};

typedef struct {
    double phase[N_PHASES];
    double bytes; /* the bytes this batch moves to and from memory, by the model in batch_bytes */
} batch_result;

/* Bytes per batch if every access to a 512-byte row of the N-row arrays goes to memory (no reuse in cache; X, dX
 * and the per-thread dX buffers are cache resident and not counted; the entry arrays are). E entries, U distinct
 * neurons, P per-thread partial rows (perthread), R = 512 bytes:
 *   dX gather                       E R read
 *   grouping                        E (4 + 4) read, E (4 + 4) written and read again
 *   grouped Adam                    U 3R read + U 3R written
 *   G += dZ x (hogwild, perthread)  E R read + E R written
 *   hogwild Adam                    U (3R + R) read + U (3R + R) written (G read and cleared)
 *   perthread Adam                  U 3R read + U 3R written + P R read + P R written */
static double batch_bytes(int s, int64_t e, int64_t u, int64_t p)
{
    const double R = (double)ROW_BYTES, E = (double)e, U = (double)u, P = (double)p;
    const double dx = E * R, grouping = E * 24, adam = U * 6 * R, accumulate = E * 2 * R, ids = E * 8;
    switch (s) {
    case GROUPED:
    case GROUPED_IDORDER:
        return dx + grouping + adam;
    case GROUPED_FUSED:
        return grouping + adam;
    case GROUPED_PARTS:
        return grouping + E * 12 + adam; /* + the radix pass: ids read twice, entry indices written */
    case HOGWILD:
        return dx + ids + accumulate + U * 8 * R;
    case HOGWILD_FUSED:
        return dx + ids + accumulate + U * 8 * R; /* W rows are still read once per entry, now in the same loop */
    default:
        return dx + ids + accumulate + adam + P * 2 * R;
    }
}

static batch_result run_batch(int s, state_t *st, const batch_t *bt, int64_t step)
{
    batch_result r = {{0}, 0};
    const adam_t u = adam_of(step);
    const int64_t entries = (int64_t)st->b * st->a;
    double t0 = omp_get_wtime(), t1;
    int64_t distinct = 0, partials = 0;
    switch (s) {
    case GROUPED:
    case GROUPED_IDORDER:
    case GROUPED_FUSED: {
        if (s != GROUPED_FUSED) {
            dx_gather(st, bt);
            t1 = omp_get_wtime();
            r.phase[PH_DX] = t1 - t0;
            t0 = t1;
        }
        const int32_t n_groups = s == GROUPED ? group_first_seen(st, bt) : group_id_order(st, bt);
        t1 = omp_get_wtime();
        r.phase[PH_GROUP] = t1 - t0;
        t0 = t1;
        update_groups(st, bt, n_groups, &u, s == GROUPED_FUSED);
        r.phase[PH_ADAM] = omp_get_wtime() - t0;
        distinct = n_groups;
        break;
    }
    case GROUPED_PARTS:
        bucket_entries(st, bt);
        t1 = omp_get_wtime();
        r.phase[PH_GROUP] = t1 - t0;
        t0 = t1;
        distinct = update_parts(st, bt, &u);
        r.phase[PH_ADAM] = omp_get_wtime() - t0;
        break;
    case HOGWILD:
    case HOGWILD_FUSED:
        if (s == HOGWILD) {
            dx_gather(st, bt);
            t1 = omp_get_wtime();
            r.phase[PH_DX] = t1 - t0;
            t0 = t1;
        }
        hogwild_accumulate(st, bt, s == HOGWILD_FUSED);
        t1 = omp_get_wtime();
        r.phase[PH_ACCUM] = t1 - t0;
        t0 = t1;
        distinct = hogwild_adam(st, &u);
        r.phase[PH_ADAM] = omp_get_wtime() - t0;
        break;
    default:
        dx_gather(st, bt);
        t1 = omp_get_wtime();
        r.phase[PH_DX] = t1 - t0;
        t0 = t1;
        perthread_accumulate(st, bt);
        t1 = omp_get_wtime();
        r.phase[PH_ACCUM] = t1 - t0;
        t0 = t1;
        distinct = perthread_adam(st, &u, &partials);
        r.phase[PH_ADAM] = omp_get_wtime() - t0;
        break;
    }
    r.bytes = batch_bytes(s, entries, distinct, partials);
    return r;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* STREAM-like probe: 512-byte rows at random (or sorted) ids on all threads                                      */

typedef struct {
    double gbps;
    double bytes;
} probe;

static double probe_sink = 0;

static probe probe_read(const real_t *w, const int32_t *ids, int64_t count, int32_t pf, int reps)
{
    double times[MAX_ITERS], sink = 0;
    for (int r = 0; r < reps; ++r) {
        const double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
        {
            bolt_vec acc[VECS];
            for (int32_t v = 0; v < VECS; ++v)
                acc[v] = (bolt_vec){0};
#pragma omp for schedule(dynamic, 256)
            for (int64_t i = 0; i < count; ++i) {
                if (pf && i + pf < count)
                    bolt_prefetch_row(w + (size_t)ids[i + pf] * DIM, DIM);
                const real_t *row = w + (size_t)ids[i] * DIM;
                for (int32_t v = 0; v < VECS; ++v)
                    acc[v] += bolt_load(row + v * BOLT_LANES);
            }
            for (int32_t v = 0; v < VECS; ++v)
                sink += bolt_hsum(acc[v]);
        }
        times[r] = omp_get_wtime() - t0;
    }
    probe_sink += sink;
    const double bytes = (double)count * ROW_BYTES;
    return (probe){bytes / median(times, reps) / 1e9, bytes};
}

/* Read-modify-write of the W, M and V rows of each id (an Adam-like update without a gradient). */
static probe probe_rmw3(real_t *w, real_t *m, real_t *v, const int32_t *ids, int64_t count, int32_t pf, int reps)
{
    double times[MAX_ITERS];
    const int32_t pfg = pf;
    for (int r = 0; r < reps; ++r) {
        const double t0 = omp_get_wtime();
#pragma omp parallel for schedule(dynamic, 256)
        for (int64_t i = 0; i < count; ++i) {
            if (pfg && i + pfg < count) {
                const size_t next = (size_t)ids[i + pfg] * DIM;
                bolt_prefetch_row(w + next, DIM);
                bolt_prefetch_row(m + next, DIM);
                bolt_prefetch_row(v + next, DIM);
            }
            const size_t at = (size_t)ids[i] * DIM;
            real_t *restrict wr = w + at, *restrict mr = m + at, *restrict vr = v + at;
#pragma omp simd
            for (int32_t j = 0; j < DIM; ++j) {
                const real_t g = wr[j] * 1e-3f;
                mr[j] = 0.9f * mr[j] + 0.1f * g;
                vr[j] = 0.999f * vr[j] + 0.001f * g * g;
                wr[j] -= 1e-9f * mr[j] / (sqrtf(vr[j]) + 1e-7f);
            }
        }
        times[r] = omp_get_wtime() - t0;
    }
    const double bytes = (double)count * ROW_BYTES * 6;
    return (probe){bytes / median(times, reps) / 1e9, bytes};
}

/* Sequential read of a whole N x DIM array: contiguous halves per thread, VECS independent vector sums. */
static probe probe_seq_read(const real_t *w, int64_t n, int reps)
{
    double times[MAX_ITERS], sink = 0;
    for (int r = 0; r < reps; ++r) {
        const double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
        {
            bolt_vec acc[VECS];
            for (int32_t v = 0; v < VECS; ++v)
                acc[v] = (bolt_vec){0};
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n; ++i)
                for (int32_t v = 0; v < VECS; ++v)
                    acc[v] += bolt_load(w + (size_t)i * DIM + v * BOLT_LANES);
            for (int32_t v = 0; v < VECS; ++v)
                sink += bolt_hsum(acc[v]);
        }
        times[r] = omp_get_wtime() - t0;
    }
    probe_sink += sink;
    const double bytes = (double)n * ROW_BYTES;
    return (probe){bytes / median(times, reps) / 1e9, bytes};
}

/* ------------------------------------------------------------------------------------------------------------ */

static double max_abs_diff(const real_t *x, const real_t *y, int64_t count)
{
    double d = 0;
#pragma omp parallel for schedule(static) reduction(max : d)
    for (int64_t i = 0; i < count; ++i) {
        const double t = fabs((double)x[i] - (double)y[i]);
        d = t > d ? t : d;
    }
    return d;
}

static int wanted(const config *c, int s)
{
    if (s == PERTHREAD && !c->perthread)
        return 0;
    if (!c->only)
        return 1;
    const char *name = strategy_names[s];
    const size_t len = strlen(name);
    for (const char *p = c->only; (p = strstr(p, name)) != NULL; p += len)
        if ((p == c->only || p[-1] == ',') && (p[len] == ',' || p[len] == 0))
            return 1;
    return 0;
}

static int64_t anon_huge_kb(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    int64_t kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void usage(void)
{
    fprintf(stderr, "usage: update_strategies [--neurons N] [--rows B] [--active A] [--distinct-batches K] "
                    "[--warmup W] [--iters I] [--prefetch P] [--no-thp] [--no-perthread] [--only a,b] "
                    "[--stream-reps R] [--seed S] [--parts P]\n");
    exit(1);
}

int main(int argc, char **argv)
{
    config c = {670091, 256, 3351, 8, 2, 12, 4, 1, 5, 12345, NULL, 1, 64};
    for (int i = 1; i < argc; ++i) {
        const char *k = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name, field, conv)                                                                                        \
    if (!strcmp(k, name)) {                                                                                         \
        if (!val)                                                                                                   \
            usage();                                                                                                \
        c.field = conv(val);                                                                                        \
        ++i;                                                                                                        \
        continue;                                                                                                   \
    }
        ARG("--neurons", n, atoll)
        ARG("--rows", b, atoi)
        ARG("--active", a, atoi)
        ARG("--distinct-batches", n_batches, atoi)
        ARG("--warmup", warmup, atoi)
        ARG("--iters", iters, atoi)
        ARG("--prefetch", prefetch, atoi)
        ARG("--stream-reps", stream_reps, atoi)
        ARG("--seed", seed, (uint64_t)atoll)
        ARG("--parts", parts, atoi)
#undef ARG
        if (!strcmp(k, "--only") && val) {
            c.only = val;
            ++i;
            continue;
        }
        if (!strcmp(k, "--no-thp")) {
            c.thp = 0;
            continue;
        }
        if (!strcmp(k, "--no-perthread")) {
            c.perthread = 0;
            continue;
        }
        usage();
    }
    if (c.n < 1 || c.n > INT32_MAX || c.b < 1 || c.a < 1 || c.a > c.n || c.n_batches < 1 || c.warmup < 0 ||
        c.iters < 1 || c.parts < 1 || c.warmup + c.iters > MAX_ITERS || c.stream_reps < 1 || c.stream_reps > MAX_ITERS ||
        (int64_t)c.b * c.a > INT32_MAX)
        usage();

    const int32_t threads = omp_get_max_threads();
    const int64_t entries = (int64_t)c.b * c.a, nd = c.n * DIM;
    const double t_setup = omp_get_wtime();

    batch_t *batches = (batch_t *)calloc((size_t)c.n_batches, sizeof(batch_t));
    make_batches(&c, batches, c.seed);

    state_t st = {0};
    st.n = c.n;
    st.b = c.b;
    st.a = c.a;
    st.threads = threads;
    st.prefetch = c.prefetch;
    st.w = (real_t *)big_alloc((size_t)nd * sizeof(real_t), c.thp);
    st.m = (real_t *)big_alloc((size_t)nd * sizeof(real_t), c.thp);
    st.v = (real_t *)big_alloc((size_t)nd * sizeof(real_t), c.thp);
    st.dx = (real_t *)small_alloc((size_t)c.b * DIM * sizeof(real_t));
    int64_t extra[N_STRATEGIES];
    /* grouped: slot [N], groups [E], starts [E + 1], entry rows and coefficients [E] */
    st.slot = (int32_t *)small_alloc((size_t)c.n * sizeof(int32_t));
    st.groups = (int32_t *)small_alloc((size_t)entries * sizeof(int32_t));
    st.starts = (int32_t *)small_alloc((size_t)(entries + c.parts + 2) * sizeof(int32_t)); /* + one per part */
    st.entry_rows = (int32_t *)small_alloc((size_t)entries * sizeof(int32_t));
    st.entry_coefs = (real_t *)small_alloc((size_t)entries * sizeof(real_t));
    st.dx_threads = (real_t *)small_alloc((size_t)threads * c.b * DIM * sizeof(real_t));
    extra[GROUPED] = extra[GROUPED_IDORDER] = c.n * 4 + entries * 16 + 4;
    extra[GROUPED_FUSED] = extra[GROUPED] + (int64_t)threads * c.b * DIM * (int64_t)sizeof(real_t);
    /* grouped-parts: parts of 2^shift consecutive ids, about c.parts of them */
    st.part_shift = 0;
    while ((((c.n - 1) >> st.part_shift) + 1) > c.parts)
        ++st.part_shift;
    st.parts = (int32_t)(((c.n - 1) >> st.part_shift) + 1);
    st.part_hist = (int64_t *)small_alloc((size_t)threads * st.parts * sizeof(int64_t));
    st.part_offsets = (int64_t *)small_alloc((size_t)(st.parts + 1) * sizeof(int64_t));
    st.part_entries = (int32_t *)small_alloc((size_t)entries * sizeof(int32_t));
    extra[GROUPED_PARTS] = extra[GROUPED_FUSED] + entries * 4 + (int64_t)st.parts * 4;
    extra[HOGWILD] = extra[HOGWILD_FUSED] = nd * (int64_t)sizeof(real_t) + c.n;
    extra[PERTHREAD] = threads * extra[HOGWILD];
    int any_hogwild = wanted(&c, HOGWILD) || wanted(&c, HOGWILD_FUSED);
    if (any_hogwild) {
        st.g = (real_t *)big_alloc((size_t)nd * sizeof(real_t), c.thp);
        st.flag = (uint8_t *)small_alloc((size_t)c.n);
    }
    if (wanted(&c, PERTHREAD)) {
        st.g_threads = (real_t *)big_alloc((size_t)threads * nd * sizeof(real_t), c.thp);
        st.flag_threads = (uint8_t *)small_alloc((size_t)threads * c.n);
    }
    /* every strategy its own W, M, V and dX, so that the strategies can run interleaved batch by batch (each then
     * sees the same background load on a shared machine) and be compared with grouped's arrays at the end */
    int ns = 0, order[N_STRATEGIES];
    state_t sts[N_STRATEGIES];
    for (int s = 0; s < N_STRATEGIES; ++s) {
        if (s != GROUPED && !wanted(&c, s)) /* grouped always runs: it is the reference */
            continue;
        order[ns++] = s;
        sts[s] = st;
        if (s != GROUPED) {
            sts[s].w = (real_t *)big_alloc((size_t)nd * sizeof(real_t), c.thp);
            sts[s].m = (real_t *)big_alloc((size_t)nd * sizeof(real_t), c.thp);
            sts[s].v = (real_t *)big_alloc((size_t)nd * sizeof(real_t), c.thp);
            sts[s].dx = (real_t *)small_alloc((size_t)c.b * DIM * sizeof(real_t));
        }
    }
    const int64_t huge_kb = anon_huge_kb();

    printf("{\n  \"config\": {\"neurons\": %ld, \"dim\": %d, \"rows\": %d, \"active\": %d, \"entries\": %ld, "
           "\"distinct_batches\": %d, \"warmup\": %d, \"iters\": %d, \"threads\": %d, \"prefetch\": %d, \"thp\": %d, "
           "\"anon_huge_kb\": %ld, \"lanes\": %d, \"parts\": %d},\n",
           (long)c.n, DIM, c.b, c.a, (long)entries, c.n_batches, c.warmup, c.iters, threads, c.prefetch, c.thp,
           (long)huge_kb, (int)BOLT_LANES, (int)st.parts);
    printf("  \"distinct\": [");
    for (int q = 0; q < c.n_batches; ++q)
        printf("%s%ld", q ? ", " : "", (long)batches[q].distinct);
    printf("],\n");

    /* STREAM-like probe: ids of batch 0 (E entries with repeats; its U distinct neurons), random and sorted */
    {
        int32_t *ids = (int32_t *)small_alloc((size_t)entries * sizeof(int32_t));
        int32_t *uniq = (int32_t *)small_alloc((size_t)entries * sizeof(int32_t));
        uint64_t s = c.seed ^ 0xabcdefull;
        for (int64_t i = 0; i < entries; ++i)
            ids[i] = (int32_t)(splitmix(&s) % (uint64_t)c.n);
        int64_t n_uniq = group_first_seen(&st, &batches[0]); /* groups = distinct ids in first-seen order */
        memcpy(uniq, st.groups, (size_t)n_uniq * sizeof(int32_t));
        const int32_t pf = c.prefetch, reps = c.stream_reps;
        int32_t *ids_sorted = (int32_t *)small_alloc((size_t)entries * sizeof(int32_t));
        int32_t *uniq_sorted = (int32_t *)small_alloc((size_t)entries * sizeof(int32_t));
        int32_t *all = (int32_t *)small_alloc((size_t)c.n * sizeof(int32_t)); /* every row, in order */
        memcpy(ids_sorted, ids, (size_t)entries * sizeof(int32_t));
        memcpy(uniq_sorted, uniq, (size_t)n_uniq * sizeof(int32_t));
        qsort(ids_sorted, (size_t)entries, sizeof(int32_t), cmp_i32);
        qsort(uniq_sorted, (size_t)n_uniq, sizeof(int32_t), cmp_i32);
        for (int64_t i = 0; i < c.n; ++i)
            all[i] = (int32_t)i;
        /* the probes take turns, one pass each per round, so they share the background load; median per probe */
        probe p[8];
        double rates[8][MAX_ITERS];
        for (int r = 0; r < reps; ++r) {
            probe q[8];
            q[0] = probe_seq_read(st.w, c.n, 1);
            q[1] = probe_read(st.w, ids, entries, pf, 1);
            q[2] = probe_read(st.w, batches[0].active, entries, pf, 1);
            q[3] = probe_rmw3(st.w, st.m, st.v, uniq, n_uniq, pf, 1);
            q[4] = probe_read(st.w, ids_sorted, entries, pf, 1);
            q[5] = probe_rmw3(st.w, st.m, st.v, uniq_sorted, n_uniq, pf, 1);
            q[6] = probe_rmw3(st.w, st.m, st.v, uniq_sorted, n_uniq, 0, 1);
            q[7] = probe_rmw3(st.w, st.m, st.v, all, c.n, 0, 1);
            for (int i = 0; i < 8; ++i) {
                rates[i][r] = q[i].gbps;
                p[i].bytes = q[i].bytes;
            }
        }
        for (int i = 0; i < 8; ++i)
            p[i].gbps = median(rates[i], reps);
        free(ids_sorted);
        free(uniq_sorted);
        free(all);
        const char *names[8] = {"seq_read_W",        "gather_read_random",  "gather_read_batch_order",
                                "rmw3_random_order", "gather_read_sorted",  "rmw3_id_order",
                                "rmw3_id_order_no_prefetch", "rmw3_all_rows_sequential"};
        printf("  \"stream\": [");
        for (int i = 0; i < 8; ++i)
            printf("%s\n    {\"name\": \"%s\", \"gbps\": %.3f, \"mb\": %.1f}", i ? "," : "", names[i], p[i].gbps,
                   p[i].bytes / 1e6);
        printf("\n  ],\n");
        free(ids);
        free(uniq);
    }

    for (int k = 0; k < ns; ++k) /* after the probe, which changes the first arrays */
        init_params(&sts[order[k]]);
    static batch_result res[N_STRATEGIES][MAX_ITERS];
    const int total = c.warmup + c.iters;
    for (int it = 0; it < total; ++it) /* round robin, the first strategy rotating from one batch to the next */
        for (int k = 0; k < ns; ++k) {
            const int s = order[(k + it) % ns];
            res[s][it] = run_batch(s, &sts[s], &batches[it % c.n_batches], it + 1);
        }

    printf("  \"strategies\": [");
    for (int k = 0; k < ns; ++k) {
        const int s = order[k];
        const state_t *x = &sts[s], *ref = &sts[GROUPED];
        double diff_w = 0, diff_m = 0, diff_v = 0, diff_dx = 0;
        if (s != GROUPED) {
            diff_w = max_abs_diff(x->w, ref->w, nd);
            diff_m = max_abs_diff(x->m, ref->m, nd);
            diff_v = max_abs_diff(x->v, ref->v, nd);
            diff_dx = max_abs_diff(x->dx, ref->dx, (int64_t)c.b * DIM);
        }
        double total_t[MAX_ITERS], ph[N_PHASES][MAX_ITERS], bytes = 0;
        for (int it = 0; it < c.iters; ++it) {
            const batch_result *r = &res[s][c.warmup + it];
            total_t[it] = 0;
            for (int p = 0; p < N_PHASES; ++p) {
                ph[p][it] = r->phase[p];
                total_t[it] += r->phase[p];
            }
            bytes += r->bytes / c.iters;
        }
        const double t_med = median(total_t, c.iters);
        printf("%s\n    {\"name\": \"%s\", \"ms_median\": %.3f, \"ms\": [", k ? "," : "", strategy_names[s],
               t_med * 1e3);
        for (int it = 0; it < c.iters; ++it)
            printf("%s%.2f", it ? ", " : "", total_t[it] * 1e3);
        printf("], \"phases_ms\": {");
        for (int p = 0; p < N_PHASES; ++p)
            printf("%s\"%s\": %.3f", p ? ", " : "", phase_names[p], median(ph[p], c.iters) * 1e3);
        printf("}, \"mb_moved\": %.1f, \"gbps\": %.3f, \"extra_mb\": %.1f, \"max_diff\": {\"W\": %.3g, \"M\": %.3g, "
               "\"V\": %.3g, \"dX\": %.3g}, \"reference\": %s}",
               bytes / 1e6, bytes / t_med / 1e9, (double)extra[s] / 1e6, diff_w, diff_m, diff_v, diff_dx,
               s == GROUPED ? "true" : "false");
    }
    printf("\n  ],\n  \"big_alloc_mb\": %.1f, \"setup_and_run_s\": %.2f, \"sink\": %g\n}\n",
           (double)big_bytes_total / 1e6, omp_get_wtime() - t_setup, probe_sink);
    return 0;
}
