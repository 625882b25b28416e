/* boltc runtime: one SIMD vector of real_t, through the GCC/Clang vector extension.
 *
 * The width follows the target the module is compiled for (-march=native): 64 bytes with AVX-512, 32 with AVX,
 * 16 otherwise (SSE2 is the x86-64 baseline, NEON the arm64 one). Compilers without the extension, or a build with
 * -DBOLT_SCALAR_ONLY, get a one-lane "vector" and the same kernels compile to plain scalar code, which the tests
 * also build and check.
 */
#ifndef BOLT_SIMD_H
#define BOLT_SIMD_H

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
#define BOLT_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
typedef real_t bolt_vec;
#define BOLT_LANES 1
static inline real_t bolt_hsum(bolt_vec v) { return v; }
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
