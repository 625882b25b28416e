/* boltc runtime: one SIMD vector of real_t, through the GCC/Clang vector extension.
 *
 * The width follows the target the module is compiled for (-march=native): 64 bytes with AVX-512, 32 with AVX,
 * 16 otherwise (SSE2 is the x86-64 baseline, NEON the arm64 one). Compilers without the extension, or a build with
 * -DBOLT_SCALAR_ONLY, get a one-lane "vector" and the same kernels compile to plain scalar code, which the tests
 * also build and check.
 */
#ifndef BOLT_SIMD_H
#define BOLT_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(BOLT_SCALAR_ONLY)
#if defined(__AVX512F__)
#define BOLT_VEC_BYTES 64
#elif defined(__AVX__)
#define BOLT_VEC_BYTES 32
#else
#define BOLT_VEC_BYTES 16
#endif
typedef real_t bolt_vec __attribute__((vector_size(BOLT_VEC_BYTES)));
#define BOLT_LANES ((int32_t)(BOLT_VEC_BYTES / sizeof(real_t)))

static inline real_t bolt_hsum(bolt_vec v)
{
    real_t sum = 0;
    for (int32_t l = 0; l < BOLT_LANES; ++l)
        sum += v[l];
    return sum;
}

static inline real_t bolt_lane(bolt_vec v, int32_t lane) { return v[lane]; }

/* The largest lane; NaN if any lane is NaN. */
static inline real_t bolt_hmax(bolt_vec v)
{
    real_t top = v[0];
    for (int32_t l = 1; l < BOLT_LANES; ++l)
        top = v[l] > top || v[l] != v[l] ? v[l] : top;
    return top;
}

/* Lanes of a where mask is set (all bits), else of b: the vector form of ?:, which C does not have. */
#if BOLT_REAL_IS_DOUBLE
typedef int64_t bolt_ivec __attribute__((vector_size(BOLT_VEC_BYTES)));
#else
typedef int32_t bolt_ivec __attribute__((vector_size(BOLT_VEC_BYTES)));
#endif
static inline bolt_vec bolt_select(bolt_ivec mask, bolt_vec a, bolt_vec b)
{
    return (bolt_vec)(((bolt_ivec)a & mask) | ((bolt_ivec)b & ~mask));
}

/* The larger of acc and v in every lane, for running maxima: a NaN in v is taken and a NaN in acc stays, so a
 * non-finite score is never hidden. */
static inline bolt_vec bolt_vmax(bolt_vec acc, bolt_vec v) { return bolt_select((v > acc) | (v != v), v, acc); }

/* Whether any lane of a is greater than the same lane of b. */
static inline int bolt_any_greater(bolt_vec a, bolt_vec b)
{
    const bolt_ivec greater = (bolt_ivec)(a > b);
    for (int32_t l = 0; l < BOLT_LANES; ++l)
        if (greater[l])
            return 1;
    return 0;
}

#if BOLT_REAL_IS_DOUBLE
static inline bolt_vec bolt_vexp(bolt_vec x)
{
    for (int32_t l = 0; l < BOLT_LANES; ++l)
        x[l] = exp(x[l]);
    return x;
}
#else
/* e^x in every lane: x = n ln2 + r with |r| <= ln2 / 2, e^r from its Taylor series to r^6 (relative error below
 * 2e-7, about float's own), and 2^n written straight into the exponent bits. ln2 is split in two so that n ln2 is
 * subtracted without rounding. x is clamped to [-87, 88.5] (e^-87 is about 1.6e-38; e^88.5 about 2.7e38), and a
 * NaN stays NaN. */
static inline bolt_vec bolt_vexp(bolt_vec x)
{
    const bolt_vec lowest = (bolt_vec){0} - 87.0f, highest = (bolt_vec){0} + 88.5f;
    x = bolt_select(x < lowest, lowest, bolt_select(x > highest, highest, x));
    const bolt_vec half_up = x * 1.44269504088896341f + 0.5f;
    bolt_vec n = __builtin_convertvector(__builtin_convertvector(half_up, bolt_ivec), bolt_vec); /* towards 0 */
    n += __builtin_convertvector((bolt_ivec)(n > half_up), bolt_vec); /* floor(x log2(e) + 1/2): true is -1 */
    const bolt_vec r = (x - n * 0.693359375f) - n * -2.12194440054690583e-4f;
    bolt_vec poly = r * (1.0f / 720) + (1.0f / 120);
    poly = poly * r + (1.0f / 24);
    poly = poly * r + (1.0f / 6);
    poly = poly * r + 0.5f;
    poly = poly * r * r + r + 1.0f;
    const bolt_ivec exponent = (__builtin_convertvector(n, bolt_ivec) + 127) << 23;
    return poly * (bolt_vec)exponent;
}
#endif
#define BOLT_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
typedef real_t bolt_vec;
#define BOLT_LANES 1
static inline real_t bolt_hsum(bolt_vec v) { return v; }
static inline real_t bolt_hmax(bolt_vec v) { return v; }
static inline real_t bolt_lane(bolt_vec v, int32_t lane) { return (void)lane, v; }
static inline bolt_vec bolt_vmax(bolt_vec acc, bolt_vec v) { return v > acc || v != v ? v : acc; }
static inline int bolt_any_greater(bolt_vec a, bolt_vec b) { return a > b; }
#if BOLT_REAL_IS_DOUBLE
static inline bolt_vec bolt_vexp(bolt_vec x) { return exp(x); }
#else
static inline bolt_vec bolt_vexp(bolt_vec x) { return expf(x); }
#endif
#define BOLT_ALWAYS_INLINE inline
#endif

/* Unaligned loads and stores; the _part forms move only the first n lanes (n < BOLT_LANES), for row tails. */
static inline bolt_vec bolt_load(const real_t *p)
{
    bolt_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline bolt_vec bolt_load_part(const real_t *p, int32_t n)
{
    bolt_vec v;
    memset(&v, 0, sizeof v);
    memcpy(&v, p, (size_t)n * sizeof(real_t));
    return v;
}

static inline void bolt_store(real_t *p, bolt_vec v) { memcpy(p, &v, sizeof v); }

static inline void bolt_store_part(real_t *p, bolt_vec v, int32_t n) { memcpy(p, &v, (size_t)n * sizeof(real_t)); }

#endif /* BOLT_SIMD_H */
