/* boltc runtime: the vector primitives every generated kernel is written in.
 *
 * The includer defines real_t (float or double) and BOLT_REAL_IS_DOUBLE first. Lengths are plain arguments, but
 * generated code always passes compile-time constants and these functions are static inline, so each call is
 * specialised, unrolled and vectorised for its layer's exact width.
 */
#ifndef BOLT_MATH_H
#define BOLT_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "bolt_omp.h"
#include "bolt_simd.h"

#if BOLT_REAL_IS_DOUBLE
#define BOLT_EXP exp
#define BOLT_LOG log
#define BOLT_LOG1P log1p
#define BOLT_TANH tanh
#define BOLT_SQRT sqrt
#define BOLT_FABS fabs
#else
#define BOLT_EXP expf
#define BOLT_LOG logf
#define BOLT_LOG1P log1pf
#define BOLT_TANH tanhf
#define BOLT_SQRT sqrtf
#define BOLT_FABS fabsf
#endif

static inline void bolt_zero(size_t n, real_t *restrict x) { memset(x, 0, n * sizeof(real_t)); }

static inline void bolt_add(int32_t n, const real_t *restrict x, real_t *restrict y)
{
    BOLT_SIMD
    for (int32_t j = 0; j < n; ++j)
        y[j] += x[j];
}

/* The largest of n >= 1 values; NaN if any is NaN. */
static inline real_t bolt_max(int32_t n, const real_t *restrict x)
{
    const int32_t full = n / BOLT_LANES * BOLT_LANES;
    real_t top = x[0];
    if (full > 0) {
        bolt_vec tops = bolt_load(x);
        for (int32_t j = BOLT_LANES; j < full; j += BOLT_LANES)
            tops = bolt_vmax(tops, bolt_load(x + j));
        top = bolt_hmax(tops);
    }
    for (int32_t j = full; j < n; ++j)
        top = x[j] > top || x[j] != x[j] ? x[j] : top;
    return top;
}

/* The sum over j < n of e^(x[j] - shift), for x[j] - shift <= 88. */
static inline real_t bolt_sum_exp(int32_t n, const real_t *restrict x, real_t shift)
{
    const int32_t full = n / BOLT_LANES * BOLT_LANES;
    bolt_vec sums = (bolt_vec){0};
    for (int32_t j = 0; j < full; j += BOLT_LANES)
        sums += bolt_vexp(bolt_load(x + j) - shift);
    real_t sum = bolt_hsum(sums);
    for (int32_t j = full; j < n; ++j)
        sum += BOLT_EXP(x[j] - shift);
    return sum;
}

/* x[j] = e^(x[j] - shift) for j < n, in place, for x[j] - shift <= 88. */
static inline void bolt_exp_shifted(int32_t n, real_t *restrict x, real_t shift)
{
    const int32_t full = n / BOLT_LANES * BOLT_LANES;
    for (int32_t j = 0; j < full; j += BOLT_LANES)
        bolt_store(x + j, bolt_vexp(bolt_load(x + j) - shift));
    for (int32_t j = full; j < n; ++j)
        x[j] = BOLT_EXP(x[j] - shift);
}

/* Activations in place over one row, and their derivatives expressed through the activation's output a, so that
 * backward needs no pre-activation copy. */
static inline void bolt_relu(int32_t n, real_t *restrict x)
{
    BOLT_SIMD
    for (int32_t j = 0; j < n; ++j)
        x[j] = x[j] > 0 ? x[j] : 0;
}

static inline void bolt_tanh(int32_t n, real_t *restrict x)
{
    for (int32_t j = 0; j < n; ++j)
        x[j] = BOLT_TANH(x[j]);
}

static inline void bolt_sigmoid(int32_t n, real_t *restrict x)
{
    for (int32_t j = 0; j < n; ++j)
        x[j] = 1 / (1 + BOLT_EXP(-x[j]));
}

static inline void bolt_relu_grad(int32_t n, const real_t *restrict a, real_t *restrict g)
{
    BOLT_SIMD
    for (int32_t j = 0; j < n; ++j)
        g[j] = a[j] > 0 ? g[j] : 0;
}

static inline void bolt_tanh_grad(int32_t n, const real_t *restrict a, real_t *restrict g)
{
    BOLT_SIMD
    for (int32_t j = 0; j < n; ++j)
        g[j] *= 1 - a[j] * a[j];
}

static inline void bolt_sigmoid_grad(int32_t n, const real_t *restrict a, real_t *restrict g)
{
    BOLT_SIMD
    for (int32_t j = 0; j < n; ++j)
        g[j] *= a[j] * (1 - a[j]);
}

/* A well-mixed 32-bit hash of a value (the finaliser of MurmurHash3): reproducible choices without a generator. */
static inline uint32_t bolt_mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
}

#endif /* BOLT_MATH_H */
