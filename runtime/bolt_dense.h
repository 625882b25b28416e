/* boltc runtime: register-blocked matrix kernels for a batch of rows.
 *
 * Every kernel keeps a small tile of results in SIMD registers while it sweeps the shared dimension once, so each
 * weight loaded from cache feeds several rows (GEMM-style blocking) instead of one. Sizes are plain arguments, but
 * the generated code passes compile-time constants and the tile functions are always inlined, so every call is
 * specialised to its layer: loops over the tile are fully unrolled and the accumulators live in registers.
 *
 * Shapes: weights W are input-major [K][N] (one contiguous row per input), activations are row-major per sample.
 */
#ifndef BOLT_DENSE_H
#define BOLT_DENSE_H

#include <stddef.h>
#include <stdint.h>

#include "bolt_simd.h"

#define BOLT_ROW_BLOCK 6 /* rows of X per tile in Y += X W (6 x BOLT_TILE_VECTORS accumulators) */
/* Vectors of columns per tile: a 6 x 4 tile of accumulators plus 4 weight vectors fits AVX-512's 32 registers,
 * 6 x 2 plus 2 fits the 16 of AVX2, SSE and NEON. */
#if BOLT_VEC_BYTES >= 64
#define BOLT_TILE_VECTORS 4
#else
#define BOLT_TILE_VECTORS 2
#endif
#define BOLT_DOT_BLOCK 4 /* rows x weight rows per tile in dX += dZ W^T: 4 x 4 accumulators */
#define BOLT_GRAD_BLOCK BOLT_ROW_BLOCK /* weight rows per tile of the weight gradient: the same micro-kernel */
#define BOLT_GATHER_BLOCK 8 /* vectors of one output row accumulated at once in the sparse kernels */

/* The left operand of the micro-kernel: A(m, k) = data[m * row + k * step], so one kernel serves X W (rows of X:
 * row = ldx, step = 1) and the weight gradient X^T dZ (columns of X: row = 1, step = K). */
typedef struct {
    const real_t *data;
    int32_t row;
    int32_t step;
} bolt_strided;

/* Where the micro-kernel's sums go, rows `ld` apart, and what they start from: S(m, columns) = start[m * start_row
 * + columns], or zero when start is NULL. The sums themselves (start = data, start_row = ld) accumulate, and a bias
 * row (start_row = 0) starts every row from the bias, in registers, with no pass over the sums before the product. */
typedef struct {
    real_t *data;
    int32_t ld;
    const real_t *start;
    int32_t start_row;
} bolt_sums;

/* The sums of `out` moved `columns` to the right and `rows` down. */
static BOLT_ALWAYS_INLINE bolt_sums bolt_sums_at(bolt_sums out, int32_t rows, int32_t columns)
{
    const real_t *start = out.start ? out.start + (size_t)rows * out.start_row + columns : NULL;
    return (bolt_sums){out.data + (size_t)rows * out.ld + columns, out.ld, start, out.start_row};
}

/* The one register-blocked micro-kernel: C[m][columns] = S(m, columns) + the sum over k < depth of A(m, k) *
 * B[k][columns], for m < mr and nv vectors of columns, the last holding `tail` lanes (tail == BOLT_LANES for a full
 * tile); B has row stride ldb. */
static BOLT_ALWAYS_INLINE void bolt_tile(int32_t mr, int32_t nv, int32_t tail, int32_t depth, bolt_strided left,
                                         const real_t *restrict B, int32_t ldb, bolt_sums out)
{
    const real_t *restrict A = left.data;
    const int32_t a_row = left.row, a_step = left.step;
    real_t *C = out.data;
    const int32_t ldc = out.ld, start_row = out.start_row;
    const real_t *start = out.start;
    bolt_vec acc[BOLT_ROW_BLOCK][BOLT_TILE_VECTORS];
    for (int32_t m = 0; m < mr; ++m)
        for (int32_t v = 0; v < nv; ++v) {
            if (!start) {
                acc[m][v] = (bolt_vec){0};
                continue;
            }
            const real_t *from = start + (size_t)m * start_row + v * BOLT_LANES;
            acc[m][v] = v == nv - 1 && tail < BOLT_LANES ? bolt_load_part(from, tail) : bolt_load(from);
        }
    for (int32_t k = 0; k < depth; ++k) {
        bolt_vec b[BOLT_TILE_VECTORS];
        for (int32_t v = 0; v < nv; ++v)
            b[v] = v == nv - 1 && tail < BOLT_LANES ? bolt_load_part(B + (size_t)k * ldb + v * BOLT_LANES, tail)
                                                    : bolt_load(B + (size_t)k * ldb + v * BOLT_LANES);
        for (int32_t m = 0; m < mr; ++m) {
            const real_t a = A[(size_t)m * a_row + (size_t)k * a_step];
            for (int32_t v = 0; v < nv; ++v)
                acc[m][v] += a * b[v];
        }
    }
    for (int32_t m = 0; m < mr; ++m)
        for (int32_t v = 0; v < nv; ++v) {
            if (v == nv - 1 && tail < BOLT_LANES)
                bolt_store_part(C + (size_t)m * ldc + v * BOLT_LANES, acc[m][v], tail);
            else
                bolt_store(C + (size_t)m * ldc + v * BOLT_LANES, acc[m][v]);
        }
}

/* bolt_tile over `width` columns: groups of BOLT_TILE_VECTORS full vectors, then single full vectors, then the
 * partial tail (width is a compile-time constant at every call, so each variant is specialised). */
static BOLT_ALWAYS_INLINE void bolt_tile_columns(int32_t mr, int32_t width, int32_t depth, bolt_strided left,
                                                 const real_t *restrict B, int32_t ldb, bolt_sums out)
{
    const int32_t group = BOLT_TILE_VECTORS * BOLT_LANES, groups_end = width / group * group;
    for (int32_t n0 = 0; n0 < groups_end; n0 += group)
        bolt_tile(mr, BOLT_TILE_VECTORS, BOLT_LANES, depth, left, B + n0, ldb, bolt_sums_at(out, 0, n0));
    int32_t n0 = groups_end;
    for (; width - n0 >= BOLT_LANES; n0 += BOLT_LANES)
        bolt_tile(mr, 1, BOLT_LANES, depth, left, B + n0, ldb, bolt_sums_at(out, 0, n0));
    if (width % BOLT_LANES)
        bolt_tile(mr, 1, width % BOLT_LANES, depth, left, B + n0, ldb, bolt_sums_at(out, 0, n0));
}

/* Y = S + X[rows][K] W[K][chunk] for one chunk of `width` columns (`out` says where Y is and what S is: Y itself, a
 * bias row, or zero); X has row stride ldx, W row stride N, and W and Y are offset to the chunk. */
static BOLT_ALWAYS_INLINE void bolt_xw_onto(int32_t rows, int32_t K, int32_t N, int32_t width,
                                            const real_t *restrict X, int32_t ldx, const real_t *restrict W,
                                            bolt_sums out)
{
    int32_t r = 0;
    for (; r + BOLT_ROW_BLOCK <= rows; r += BOLT_ROW_BLOCK)
        bolt_tile_columns(BOLT_ROW_BLOCK, width, K, (bolt_strided){X + (size_t)r * ldx, ldx, 1}, W, N,
                          bolt_sums_at(out, r, 0));
    for (; r < rows; ++r)
        bolt_tile_columns(1, width, K, (bolt_strided){X + (size_t)r * ldx, ldx, 1}, W, N, bolt_sums_at(out, r, 0));
}

/* Y[rows][chunk] += X[rows][K] W[K][chunk] (bolt_xw_onto starting from Y, rows N apart). */
static BOLT_ALWAYS_INLINE void bolt_xw(int32_t rows, int32_t K, int32_t N, int32_t width, const real_t *restrict X,
                                       int32_t ldx, const real_t *restrict W, real_t *Y)
{
    bolt_xw_onto(rows, K, N, width, X, ldx, W, (bolt_sums){Y, N, Y, N});
}

/* Values of W that one depth chunk of bolt_xw_deep reads: 32 KB of floats (64 KB of doubles), which stay in a
 * level-1 data cache (32 KB or more on current x86-64 and arm64 cores) while every row block of X goes by. */
#define BOLT_DEPTH_CHUNK_FLOATS 8192

/* Y[rows][N] += X[rows][K] W[K][N] for a long shared dimension K (W and Y row stride N, X row stride ldx): K is
 * taken in chunks whose slice of W stays in the level-1 cache while all the rows use it, so W is read from memory
 * once rather than once per row block. Each row sums its chunks in order: the result does not depend on how the
 * rows are split between threads. */
static BOLT_ALWAYS_INLINE void bolt_xw_deep(int32_t rows, int32_t K, int32_t N, const real_t *restrict X, int32_t ldx,
                                            const real_t *restrict W, real_t *Y)
{
    const int32_t chunk = BOLT_DEPTH_CHUNK_FLOATS / N > 0 ? BOLT_DEPTH_CHUNK_FLOATS / N : 1;
    for (int32_t k0 = 0; k0 < K; k0 += chunk)
        bolt_xw(rows, K - k0 < chunk ? K - k0 : chunk, N, N, X + k0, ldx, W + (size_t)k0 * N, Y);
}

/* dX[0..mr)[i0 .. i0 + ni) += dZ[0..mr)[0..N) . W[i0 .. i0 + ni)[0..N): a tile of dot products, dZ and W with row
 * stride ld >= N. Used when N fills vectors well; narrow layers instead multiply by a transposed copy of W with
 * bolt_xw. */
static BOLT_ALWAYS_INLINE void bolt_dzwt_tile(int32_t mr, int32_t ni, int32_t K, int32_t N, int32_t ld,
                                              const real_t *restrict dZ, const real_t *restrict W,
                                              real_t *restrict dX)
{
    bolt_vec acc[BOLT_DOT_BLOCK][BOLT_DOT_BLOCK];
    for (int32_t m = 0; m < mr; ++m)
        for (int32_t t = 0; t < ni; ++t)
            acc[m][t] = (bolt_vec){0};
    const int32_t full = N / BOLT_LANES * BOLT_LANES;
    for (int32_t j = 0; j < full; j += BOLT_LANES) {
        bolt_vec w[BOLT_DOT_BLOCK];
        for (int32_t t = 0; t < ni; ++t)
            w[t] = bolt_load(W + (size_t)t * ld + j);
        for (int32_t m = 0; m < mr; ++m) {
            const bolt_vec d = bolt_load(dZ + (size_t)m * ld + j);
            for (int32_t t = 0; t < ni; ++t)
                acc[m][t] += d * w[t];
        }
    }
    if (N % BOLT_LANES) {
        for (int32_t m = 0; m < mr; ++m) {
            const bolt_vec d = bolt_load_part(dZ + (size_t)m * ld + full, N % BOLT_LANES);
            for (int32_t t = 0; t < ni; ++t)
                acc[m][t] += d * bolt_load_part(W + (size_t)t * ld + full, N % BOLT_LANES);
        }
    }
    for (int32_t m = 0; m < mr; ++m)
        for (int32_t t = 0; t < ni; ++t)
            dX[(size_t)m * K + t] += bolt_hsum(acc[m][t]);
}

static BOLT_ALWAYS_INLINE void bolt_dzwt_row_block(int32_t mr, int32_t K, int32_t N, int32_t ld,
                                                   const real_t *restrict dZ, const real_t *restrict W,
                                                   real_t *restrict dX)
{
    int32_t i = 0;
    for (; i + BOLT_DOT_BLOCK <= K; i += BOLT_DOT_BLOCK)
        bolt_dzwt_tile(mr, BOLT_DOT_BLOCK, K, N, ld, dZ, W + (size_t)i * ld, dX + i);
    for (; i < K; ++i)
        bolt_dzwt_tile(mr, 1, K, N, ld, dZ, W + (size_t)i * ld, dX + i);
}

/* dX[rows][K] += dZ[rows][N] W[K][N]^T, dZ and W with row stride ld >= N */
static BOLT_ALWAYS_INLINE void bolt_dzwt(int32_t rows, int32_t K, int32_t N, int32_t ld, const real_t *restrict dZ,
                                         const real_t *restrict W, real_t *restrict dX)
{
    int32_t r = 0;
    for (; r + BOLT_DOT_BLOCK <= rows; r += BOLT_DOT_BLOCK)
        bolt_dzwt_row_block(BOLT_DOT_BLOCK, K, N, ld, dZ + (size_t)r * ld, W, dX + (size_t)r * K);
    for (; r < rows; ++r)
        bolt_dzwt_row_block(1, K, N, ld, dZ + (size_t)r * ld, W, dX + (size_t)r * K);
}

/* G[0..mi)[0..width) = sum over rows r of X[r][m] * dZ[r][0..width): the weight gradient of mi consecutive inputs
 * over one chunk of columns (X and dZ offset to the first input and column; X's row stride K, dZ's row stride N; `G`
 * says where the sums go and what they start from), summed in row order so results do not depend on the thread
 * count. */
static BOLT_ALWAYS_INLINE void bolt_xtdz(int32_t mi, int32_t rows, int32_t width, const real_t *restrict X, int32_t K,
                                         const real_t *restrict dZ, int32_t N, bolt_sums G)
{
    bolt_tile_columns(mi, width, rows, (bolt_strided){X, 1, K}, dZ, N, G);
}

#define BOLT_PREFETCH_ROWS 4 /* gathered rows fetched this far ahead */

/* Ask for `bytes` of memory that will be read soon, one cache line at a time. */
static inline void bolt_prefetch_bytes(const void *start, size_t bytes)
{
#if defined(__GNUC__)
    for (size_t offset = 0; offset < bytes; offset += 64)
        __builtin_prefetch((const char *)start + offset);
#else
    (void)start;
    (void)bytes;
#endif
}

/* Ask for a row of n values that will be read soon. */
static inline void bolt_prefetch_row(const real_t *row, int32_t n)
{
    bolt_prefetch_bytes(row, (size_t)n * sizeof(real_t));
}

/* x . y over n values, in vectors. */
static BOLT_ALWAYS_INLINE real_t bolt_dot(int32_t n, const real_t *restrict x, const real_t *restrict y)
{
    bolt_vec acc = (bolt_vec){0};
    const int32_t full = n / BOLT_LANES * BOLT_LANES;
    for (int32_t j = 0; j < full; j += BOLT_LANES)
        acc += bolt_load(x + j) * bolt_load(y + j);
    if (n % BOLT_LANES)
        acc += bolt_load_part(x + full, n % BOLT_LANES) * bolt_load_part(y + full, n % BOLT_LANES);
    return bolt_hsum(acc);
}

/* The coefficient of entry e: a float value from data, a real_t from the model, or 1 when neither is given. */
static BOLT_ALWAYS_INLINE real_t bolt_coef(const float *coef_f, const real_t *coef_r, int64_t e)
{
    return coef_r ? coef_r[e] : coef_f ? (real_t)coef_f[e] : 1;
}

/* y[0..width) += sum over entries e of coef[e] * M[row[e]][0..width): rows of M gathered by index. The shape of a
 * sparse input's forward (M = weights, coefficients from data) and of every weight gradient built from a list of
 * (row, coefficient) entries (M = output gradients or layer inputs). */
static BOLT_ALWAYS_INLINE void bolt_gather_add(int64_t count, const int32_t *restrict row, const float *restrict coef_f,
                                               const real_t *restrict coef_r, const real_t *restrict M, int32_t ldm,
                                               int32_t width, real_t *restrict y)
{
    const int32_t full = width / BOLT_LANES;
    int32_t v0 = 0;
    for (; v0 + BOLT_GATHER_BLOCK <= full; v0 += BOLT_GATHER_BLOCK) {
        bolt_vec acc[BOLT_GATHER_BLOCK];
        for (int32_t v = 0; v < BOLT_GATHER_BLOCK; ++v)
            acc[v] = bolt_load(y + (v0 + v) * BOLT_LANES);
        for (int64_t e = 0; e < count; ++e) {
            if (e + BOLT_PREFETCH_ROWS < count) /* gathered rows are scattered: fetch a few ahead */
                bolt_prefetch_row(M + (size_t)row[e + BOLT_PREFETCH_ROWS] * ldm + v0 * BOLT_LANES,
                                  BOLT_GATHER_BLOCK * BOLT_LANES);
            const real_t a = bolt_coef(coef_f, coef_r, e);
            const real_t *source = M + (size_t)row[e] * ldm + v0 * BOLT_LANES;
            for (int32_t v = 0; v < BOLT_GATHER_BLOCK; ++v)
                acc[v] += a * bolt_load(source + v * BOLT_LANES);
        }
        for (int32_t v = 0; v < BOLT_GATHER_BLOCK; ++v)
            bolt_store(y + (v0 + v) * BOLT_LANES, acc[v]);
    }
    /* counted down rather than to `full`: gcc's loop analysis then sees no overflow in the tail (-Werror builds) */
    for (int32_t rest = full - v0; rest > 0; --rest, ++v0) {
        bolt_vec acc = bolt_load(y + v0 * BOLT_LANES);
        for (int64_t e = 0; e < count; ++e)
            acc += bolt_coef(coef_f, coef_r, e) * bolt_load(M + (size_t)row[e] * ldm + v0 * BOLT_LANES);
        bolt_store(y + v0 * BOLT_LANES, acc);
    }
    if (width % BOLT_LANES) {
        const int32_t tail = width % BOLT_LANES, at = full * BOLT_LANES;
        bolt_vec acc = bolt_load_part(y + at, tail);
        for (int64_t e = 0; e < count; ++e)
            acc += bolt_coef(coef_f, coef_r, e) * bolt_load_part(M + (size_t)row[e] * ldm + at, tail);
        bolt_store_part(y + at, acc, tail);
    }
}

/* Y[row[e]][0..width) += coef[e] * v[0..width) for every entry e: one vector added into scattered rows (the
 * transpose of bolt_gather_add). Two entries at a time, so that each load of v serves two target rows; every target
 * row is read and written once. */
static BOLT_ALWAYS_INLINE void bolt_scatter_add(int64_t count, const int32_t *restrict row,
                                                const real_t *restrict coef, const real_t *restrict v,
                                                int32_t width, real_t *restrict Y, int32_t ldy)
{
    const int32_t full = width / BOLT_LANES, tail = width % BOLT_LANES, at = full * BOLT_LANES;
    const bolt_vec v_tail = tail ? bolt_load_part(v + at, tail) : (bolt_vec){0};
    int64_t e = 0;
    for (; e + 2 <= count; e += 2) { /* two entries share each load of v */
        real_t *first = Y + (size_t)row[e] * ldy, *second = Y + (size_t)row[e + 1] * ldy;
        const real_t a = coef[e], b = coef[e + 1];
        for (int32_t k = 0; k < full; ++k) {
            const bolt_vec held = bolt_load(v + k * BOLT_LANES);
            bolt_store(first + k * BOLT_LANES, bolt_load(first + k * BOLT_LANES) + a * held);
            bolt_store(second + k * BOLT_LANES, bolt_load(second + k * BOLT_LANES) + b * held);
        }
        if (tail) {
            bolt_store_part(first + at, bolt_load_part(first + at, tail) + a * v_tail, tail);
            bolt_store_part(second + at, bolt_load_part(second + at, tail) + b * v_tail, tail);
        }
    }
    for (; e < count; ++e) {
        real_t *target = Y + (size_t)row[e] * ldy;
        for (int32_t k = 0; k < full; ++k)
            bolt_store(target + k * BOLT_LANES,
                       bolt_load(target + k * BOLT_LANES) + coef[e] * bolt_load(v + k * BOLT_LANES));
        if (tail)
            bolt_store_part(target + at, bolt_load_part(target + at, tail) + coef[e] * v_tail, tail);
    }
}

/* T[N][K] = W[K][N]^T, for rows k0 .. k0 + count of W. */
static inline void bolt_transpose_rows(int32_t k0, int32_t count, int32_t K, int32_t N, const real_t *restrict W,
                                       real_t *restrict T)
{
    for (int32_t k = k0; k < k0 + count; ++k)
        for (int32_t n = 0; n < N; ++n)
            T[(size_t)n * K + k] = W[(size_t)k * N + n];
}

/* Columns first .. first + count - 1 of W [K][N] as the rows of R [count][K]. */
static inline void bolt_columns_as_rows(int32_t K, int32_t N, int32_t first, int32_t count, const real_t *restrict W,
                                        real_t *restrict R)
{
    for (int32_t k = 0; k < K; ++k)
        for (int32_t c = 0; c < count; ++c)
            R[(size_t)c * K + k] = W[(size_t)k * N + first + c];
}

#endif /* BOLT_DENSE_H */
