/* boltc runtime: optimiser updates of one parameter row from its gradient.
 *
 * Updates are applied row by row right after the row's gradient is summed over the batch, so a layer's gradient is
 * never stored whole and rows a batch did not touch are never visited (lazy Adam: their moments stay as they are).
 * In distributed training the same rows are instead copied out (bolt_update.collect), summed over the workers, and
 * stepped by the same functions from the generated bolt_apply_gradients.
 */
#ifndef BOLT_OPTIM_H
#define BOLT_OPTIM_H

#include "bolt_abi.h"
#include "bolt_bf16.h"
#include "bolt_math.h"

/* Per-update constants, computed once per batch from bolt_step. */
typedef struct bolt_update {
    real_t learning_rate;
    real_t beta1, one_minus_beta1;
    real_t beta2, one_minus_beta2;
    real_t eps;
    real_t first_moment_scale;  /* 1 / (1 - beta1^t): Adam's bias correction */
    real_t second_moment_scale; /* 1 / (1 - beta2^t) */
    uint32_t salt;              /* differs from step to step: seeds stochastic rounding */
    int32_t collect;            /* gradients go to the exchange buffers; nothing is stepped (bolt_step) */
    int64_t step;               /* stamps the rows whose gradients were collected */
} bolt_update;

static inline bolt_update bolt_update_of(const bolt_step *step)
{
    bolt_update u;
    double t = (double)(step->step > 0 ? step->step : 1);
    u.learning_rate = (real_t)step->learning_rate;
    u.beta1 = (real_t)step->beta1;
    u.one_minus_beta1 = (real_t)(1.0 - step->beta1);
    u.beta2 = (real_t)step->beta2;
    u.one_minus_beta2 = (real_t)(1.0 - step->beta2);
    u.eps = (real_t)step->eps;
    u.first_moment_scale = (real_t)(1.0 / (1.0 - pow(step->beta1, t)));
    u.second_moment_scale = (real_t)(1.0 / (1.0 - pow(step->beta2, t)));
    u.salt = (uint32_t)step->step * 2654435761u;
    u.collect = step->collect_gradients;
    u.step = step->step;
    return u;
}

/* What a row's loss gradient is multiplied by: the loss is the mean over the batch, or over the global batch that
 * this batch is one worker's share of. */
static inline real_t bolt_gradient_scale(const bolt_batch *batch)
{
    return (real_t)1 / (real_t)(batch->mean_rows > 0 ? batch->mean_rows : batch->rows);
}

static inline void bolt_adam_row(int32_t n, const bolt_update *u, const real_t *restrict grad,
                                 real_t *restrict weight, real_t *restrict m, real_t *restrict v)
{
    const real_t lr = u->learning_rate, b1 = u->beta1, c1 = u->one_minus_beta1;
    const real_t b2 = u->beta2, c2 = u->one_minus_beta2, eps = u->eps;
    const real_t s1 = u->first_moment_scale, s2 = u->second_moment_scale;
    BOLT_SIMD
    for (int32_t j = 0; j < n; ++j) {
        real_t g = grad[j];
        real_t mj = b1 * m[j] + c1 * g;
        real_t vj = b2 * v[j] + c2 * g * g;
        m[j] = mj;
        v[j] = vj;
        weight[j] -= lr * (mj * s1) / (BOLT_SQRT(vj * s2) + eps);
    }
}

/* bolt_adam_row with both moments stored in bf16; `row` (e.g. the row's offset) and the step's salt pick the
 * rounding's random bits, so results are reproducible and independent of the thread count. */
static inline void bolt_adam_row_bf16(int32_t n, const bolt_update *u, const real_t *restrict grad,
                                      real_t *restrict weight, bolt_bf16 *restrict m, bolt_bf16 *restrict v,
                                      uint32_t row)
{
    const real_t lr = u->learning_rate, b1 = u->beta1, c1 = u->one_minus_beta1;
    const real_t b2 = u->beta2, c2 = u->one_minus_beta2, eps = u->eps;
    const real_t s1 = u->first_moment_scale, s2 = u->second_moment_scale;
    const uint32_t seed = u->salt ^ row * 0x9e3779b9u;
    for (int32_t j = 0; j < n; ++j) {
        const real_t g = grad[j];
        const real_t mj = b1 * (real_t)bolt_bf16_to_float(m[j]) + c1 * g;
        const real_t vj = b2 * (real_t)bolt_bf16_to_float(v[j]) + c2 * g * g;
        const uint32_t random = bolt_mix32(seed + (uint32_t)j);
        m[j] = bolt_float_to_bf16((float)mj, random);
        v[j] = bolt_float_to_bf16((float)vj, random >> 16 | random << 16);
        weight[j] -= lr * (mj * s1) / (BOLT_SQRT(vj * s2) + eps);
    }
}

static inline void bolt_sgd_row(int32_t n, const bolt_update *u, const real_t *restrict grad, real_t *restrict weight)
{
    const real_t lr = u->learning_rate;
    BOLT_SIMD
    for (int32_t j = 0; j < n; ++j)
        weight[j] -= lr * grad[j];
}

#endif /* BOLT_OPTIM_H */
