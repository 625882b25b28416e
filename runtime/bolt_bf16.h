/* boltc runtime: bf16 numbers, for storage (Adam's moments) and for matrix products on AMX tiles.
 *
 * A layer with precision=bf16 multiplies bf16 copies of its operands and sums the products in fp32 (weights,
 * moments and updates stay in real_t). The products run on Intel AMX (Sapphire Rapids and later): one tile
 * instruction multiplies a 16 x 32 block by a 32 x 16 block, 16 times the work of an AVX-512 FMA. Where the compiler
 * targets no AMX, or the kernel does not grant the process its tile state (Linux asks for it since 5.16), the layer
 * keeps its fp32 kernels: bolt_amx_ready() says which at run time, as PyTorch's "medium" float32 matmul precision
 * uses bf16 only where it is fast.
 *
 * Operands (bf16, zero-padded to whole tiles): A [M][K] and B [K][N], K a multiple of 32 and M, N of 16, B in AMX's
 * pair layout (elements k and k + 1 of a column side by side); bolt_tiles says where their tiles lie. Products
 * C = A B come out in fp32 blocks of 16 x 16.
 */
#ifndef BOLT_BF16_H
#define BOLT_BF16_H

#include <stdint.h>
#include <string.h>
#if defined(__AVX512BF16__) && !defined(BOLT_SCALAR_ONLY)
#include <immintrin.h>
#endif

/* bf16: the upper 16 bits of a float (same exponent range, 8 significant bits). */
typedef uint16_t bolt_bf16;

#define BOLT_BF16_K 32 /* the depth one tile multiplies: products' K dimensions are padded to it */
#define BOLT_BF16_N 16 /* a tile's columns (and rows): products' M and N dimensions are padded to it */

static inline float bolt_bf16_to_float(bolt_bf16 h)
{
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Stochastic rounding to bf16: adding 16 random bits below the kept ones rounds up with the probability of the cut
 * fraction, so that the expected stored value is exact. Round to nearest would freeze Adam's second moment: with
 * beta2 = 0.999 each step changes it by about 0.1%, below bf16's resolution of 0.4%. Infinities and NaN are kept. */
static inline bolt_bf16 bolt_float_to_bf16(float f, uint32_t random)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const uint32_t special = (bits & 0x7f800000u) == 0x7f800000u;
    bits += special ? 0 : (random & 0xffffu);
    return (bolt_bf16)(bits >> 16);
}

/* Rounding to the nearest bf16, ties to even, for products' operands; a NaN stays a NaN (quiet), infinities stay. */
static inline bolt_bf16 bolt_bf16_nearest(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (bolt_bf16)(bits >> 16 | 0x40u);
    bits += 0x7fffu + (bits >> 16 & 1u);
    return (bolt_bf16)(bits >> 16);
}

/* Length of a product dimension padded to `multiple` (BOLT_BF16_K or BOLT_BF16_N). */
static inline int32_t bolt_bf16_padded(int32_t n, int32_t multiple) { return (n + multiple - 1) / multiple * multiple; }

/* dst[0..n) = src[0..n) rounded to the nearest bf16: 32 at a time with AVX-512 BF16's conversion where the target
 * has it (which treats subnormal inputs as zero). */
static inline void bolt_bf16_convert(int32_t n, const real_t *restrict src, bolt_bf16 *restrict dst)
{
    int32_t j = 0;
#if defined(__AVX512BF16__) && !defined(BOLT_SCALAR_ONLY) && !BOLT_REAL_IS_DOUBLE
    for (; j + 32 <= n; j += 32) {
        const __m512bh both = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + j + 16), _mm512_loadu_ps(src + j));
        _mm512_storeu_si512((void *)(dst + j), (__m512i)both);
    }
#endif
    for (; j < n; ++j)
        dst[j] = bolt_bf16_nearest((float)src[j]);
}

/* Where a bf16 operand's tiles lie: the tile of 16 rows (A) or 16 columns (B) number t, over depth step s (32 deep),
 * starts at base + t * tile + s * step, its 16 rows `row` elements apart. An A operand in row-major order [M][lda]
 * is {16 lda, 32, lda}; a B operand in pair rows [K / 2][ldb] is {32, 16 ldb, ldb}; either stored tile by tile, each
 * tile 1 KB in one piece (K deep in all), is {16 K, 512, 32}: a tile then loads from 16 consecutive cache lines
 * rather than from 16 lines as far apart as the operand is wide, which costs the loads of a wide operand most of
 * their time. */
typedef struct bolt_tiles {
    bolt_bf16 *base;
    size_t tile, step, row;
} bolt_tiles;

/* The same operand from its tile `first` on (tiles counted along the operand's rows for A, its columns for B). */
static inline bolt_tiles bolt_tiles_from(bolt_tiles t, int32_t first)
{
    return (bolt_tiles){t.base + (size_t)first * t.tile, t.tile, t.step, t.row};
}

static inline bolt_tiles bolt_tiles_row_major_a(bolt_bf16 *base, int32_t lda)
{
    return (bolt_tiles){base, (size_t)BOLT_BF16_N * lda, BOLT_BF16_K, (size_t)lda};
}

static inline bolt_tiles bolt_tiles_pair_rows_b(bolt_bf16 *base, int32_t ldb)
{
    return (bolt_tiles){base, 2 * BOLT_BF16_N, (size_t)BOLT_BF16_N * ldb, (size_t)ldb};
}

static inline bolt_tiles bolt_tiles_tile_major(bolt_bf16 *base, int32_t depth)
{
    return (bolt_tiles){base, (size_t)BOLT_BF16_N * depth, BOLT_BF16_N * BOLT_BF16_K, BOLT_BF16_K};
}

/* Where element (i, k) of an A operand lies: row i, depth k. */
static inline bolt_bf16 *bolt_tiles_a_at(bolt_tiles to, int32_t i, int32_t k)
{
    return to.base + (size_t)(i / BOLT_BF16_N) * to.tile + (size_t)(k / BOLT_BF16_K) * to.step
           + (size_t)(i % BOLT_BF16_N) * to.row + k % BOLT_BF16_K;
}

/* Where the pair (k, k + 1) at column n of a B operand lies (k even). */
static inline bolt_bf16 *bolt_tiles_b_at(bolt_tiles to, int32_t k, int32_t n)
{
    return to.base + (size_t)(n / BOLT_BF16_N) * to.tile + (size_t)(k / BOLT_BF16_K) * to.step
           + (size_t)(k % BOLT_BF16_K / 2) * to.row + 2 * (n % BOLT_BF16_N);
}

/* Values the packers below convert at once: rows longer than this go in pieces. */
#define BOLT_BF16_PIECE 4096

/* Rows r0 .. r1 of an A operand from row-major values: element (r, k) = src[r][k] in bf16 for k < cols, zeros from
 * cols to depth (a multiple of 32). */
static inline void bolt_bf16_pack_rows(int32_t r0, int32_t r1, int32_t cols, int32_t depth, const real_t *restrict src,
                                       int32_t lds, bolt_tiles to)
{
    bolt_bf16 piece[BOLT_BF16_PIECE];
    for (int32_t r = r0; r < r1; ++r)
        for (int32_t k0 = 0; k0 < depth; k0 += BOLT_BF16_PIECE) {
            const int32_t width = depth - k0 < BOLT_BF16_PIECE ? depth - k0 : BOLT_BF16_PIECE;
            const int32_t given = cols <= k0 ? 0 : cols - k0 < width ? cols - k0 : width;
            bolt_bf16_convert(given, src + (size_t)r * lds + k0, piece);
            memset(piece + given, 0, sizeof(bolt_bf16) * (size_t)(width - given));
            for (int32_t k = 0; k < width; k += BOLT_BF16_K)
                memcpy(bolt_tiles_a_at(to, r, k0 + k), piece + k, sizeof(bolt_bf16) * BOLT_BF16_K);
        }
}

/* dst[c][r] = src[r][c] in bf16 for c < cols and rows r0 .. r1 (the caller zeroes rows from the last to ldd): a
 * row-major A operand from the transpose of row-major values. */
static inline void bolt_bf16_transposed(int32_t r0, int32_t r1, int32_t cols, const real_t *restrict src, int32_t lds,
                                        bolt_bf16 *restrict dst, int32_t ldd)
{
    bolt_bf16 piece[BOLT_BF16_PIECE];
    for (int32_t r = r0; r < r1; ++r)
        for (int32_t c0 = 0; c0 < cols; c0 += BOLT_BF16_PIECE) {
            const int32_t width = cols - c0 < BOLT_BF16_PIECE ? cols - c0 : BOLT_BF16_PIECE;
            bolt_bf16_convert(width, src + (size_t)r * lds + c0, piece);
            for (int32_t c = 0; c < width; ++c)
                dst[(size_t)(c0 + c) * ldd + r] = piece[c];
        }
}

/* fp32 rows to be packed: row k starts at base + at[k] * stride, or, when at is NULL, at base + k * stride. */
typedef struct bolt_source_rows {
    const real_t *base;
    const int32_t *at;
    int32_t stride;
} bolt_source_rows;

static inline const real_t *bolt_source_row(bolt_source_rows src, int32_t k)
{
    return src.base + (size_t)(src.at ? src.at[k] : k) * src.stride;
}

/* Pair rows p0 .. p1 of a B operand whose depth runs down the rows `row(k)`: element (k, n) = row(k)[n] in bf16 for
 * n < cols, zeros for k >= rows and for n from cols to the end of its tile. */
static inline void bolt_bf16_pack_row_pairs(int32_t p0, int32_t p1, int32_t rows, int32_t cols, bolt_source_rows src,
                                            bolt_tiles to)
{
    const int32_t width = (cols + BOLT_BF16_N - 1) / BOLT_BF16_N * BOLT_BF16_N;
    bolt_bf16 pair[2][BOLT_BF16_PIECE];
    for (int32_t p = p0; p < p1; ++p)
        for (int32_t n0 = 0; n0 < width; n0 += BOLT_BF16_PIECE) {
            const int32_t count = width - n0 < BOLT_BF16_PIECE ? width - n0 : BOLT_BF16_PIECE;
            const int32_t given = cols - n0 < count ? cols - n0 : count;
            for (int32_t j = 0; j < 2; ++j) {
                const int32_t k = 2 * p + j;
                const int32_t converted = k < rows ? given : 0;
                if (converted)
                    bolt_bf16_convert(converted, bolt_source_row(src, k) + n0, pair[j]);
                memset(pair[j] + converted, 0, sizeof(bolt_bf16) * (size_t)(count - converted));
            }
            for (int32_t t = 0; t < count; t += BOLT_BF16_N) { /* one tile's row of 16 pairs */
                bolt_bf16 *out = bolt_tiles_b_at(to, 2 * p, n0 + t);
                for (int32_t n = 0; n < BOLT_BF16_N; ++n) {
                    out[2 * n] = pair[0][t + n];
                    out[2 * n + 1] = pair[1][t + n];
                }
            }
        }
}

/* Columns n0 .. n1 of a B operand whose depth runs along the rows `row(n)` (the product takes their transpose):
 * element (k, n) = row(n)[k] in bf16 for k < depth, zeros for k from depth to 2 pairs and for n >= rows. A pair of
 * bf16 is moved as one 32-bit word. */
static inline void bolt_bf16_pack_column_pairs(int32_t n0, int32_t n1, int32_t rows, int32_t depth, int32_t pairs,
                                               bolt_source_rows src, bolt_tiles to)
{
    uint32_t piece[BOLT_BF16_PIECE / 2];
    for (int32_t n = n0; n < n1; ++n)
        for (int32_t p0 = 0; p0 < pairs; p0 += BOLT_BF16_PIECE / 2) {
            const int32_t count = pairs - p0 < BOLT_BF16_PIECE / 2 ? pairs - p0 : BOLT_BF16_PIECE / 2;
            const int32_t k0 = 2 * p0, given = n >= rows || depth <= k0 ? 0 : depth - k0 < 2 * count ? depth - k0 : 2 * count;
            memset(piece, 0, sizeof(uint32_t) * (size_t)count);
            if (given)
                bolt_bf16_convert(given, bolt_source_row(src, n) + k0, (bolt_bf16 *)piece);
            for (int32_t p = 0; p < count; ++p)
                memcpy(bolt_tiles_b_at(to, 2 * (p0 + p), n), piece + p, sizeof(uint32_t));
        }
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__linux__) && !defined(BOLT_SCALAR_ONLY) \
    && !BOLT_REAL_IS_DOUBLE
#define BOLT_HAS_AMX 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BOLT_ARCH_REQ_XCOMP_PERM 0x1023 /* arch_prctl: ask for an extended state component */
#define BOLT_XFEATURE_XTILEDATA 18      /* the AMX tile data */

/* <unistd.h> declares syscall only for _DEFAULT_SOURCE, which -std=c11 leaves out: glibc's own prototype. */
extern long syscall(long number, ...);

/* Whether this process may use AMX tiles: asks Linux once; later calls answer from the first. */
static inline int bolt_amx_ready(void)
{
    static int granted = -1;
    if (granted < 0)
        granted = syscall(SYS_arch_prctl, BOLT_ARCH_REQ_XCOMP_PERM, BOLT_XFEATURE_XTILEDATA) == 0;
    return granted;
}

/* Every tile 16 rows of 64 bytes: tiles 0-3 hold a 32 x 32 block of C (fp32), 4-5 two row blocks of A, 6-7 two
 * column blocks of B (bf16 pairs). Tile configuration is per thread: each thread loads it before its first tile
 * instruction and releases the tiles after its last. */
static inline void bolt_amx_configure(void)
{
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t bytes_per_row[16];
        uint8_t rows[16];
    } __attribute__((packed, aligned(64))) config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; ++t) {
        config.rows[t] = 16;
        config.bytes_per_row[t] = 64;
    }
    _tile_loadconfig(&config);
}

static inline void bolt_amx_release(void) { _tile_release(); }

/* One block of C = A B with up to 2 x 2 tiles (m_tiles, n_tiles in 1..2): C[0 .. 16 m_tiles)[0 .. 16 n_tiles) from
 * A's first row tiles and B's first column tiles (bolt_tiles_from picks others) over depth K (a multiple of 32),
 * written to C (row stride ldc floats). */
static inline void bolt_amx_block(int32_t m_tiles, int32_t n_tiles, int32_t K, bolt_tiles a, bolt_tiles b, float *C,
                                  int32_t ldc)
{
    const bolt_bf16 *a_first = a.base, *b_first = b.base;
    const size_t a_stride = sizeof(bolt_bf16) * a.row, b_stride = sizeof(bolt_bf16) * b.row;
    const size_t c_stride = sizeof(float) * (size_t)ldc, c_down = (size_t)BOLT_BF16_N * ldc;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int32_t s = 0; s < K / BOLT_BF16_K; ++s) {
        const bolt_bf16 *a_step = a_first + (size_t)s * a.step, *b_step = b_first + (size_t)s * b.step;
        _tile_loadd(4, a_step, a_stride);
        _tile_loadd(6, b_step, b_stride);
        _tile_dpbf16ps(0, 4, 6);
        if (n_tiles > 1) {
            _tile_loadd(7, b_step + b.tile, b_stride);
            _tile_dpbf16ps(1, 4, 7);
        }
        if (m_tiles > 1) {
            _tile_loadd(5, a_step + a.tile, a_stride);
            _tile_dpbf16ps(2, 5, 6);
            if (n_tiles > 1)
                _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, C, c_stride);
    if (n_tiles > 1)
        _tile_stored(1, C + BOLT_BF16_N, c_stride);
    if (m_tiles > 1)
        _tile_stored(2, C + c_down, c_stride);
    if (m_tiles > 1 && n_tiles > 1)
        _tile_stored(3, C + c_down + BOLT_BF16_N, c_stride);
}
#else
#define BOLT_HAS_AMX 0
static inline int bolt_amx_ready(void) { return 0; }
#endif

#endif /* BOLT_BF16_H */
