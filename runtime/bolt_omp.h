/* boltc runtime: OpenMP when the compiler has it, a serial build when it does not.
 *
 * Pragmas go through BOLT_OMP(...) so that a build without -fopenmp sees no unknown pragmas (it compiles cleanly
 * under -Wall -Werror) and runs the same loops on one thread.
 */
#ifndef BOLT_OMP_H
#define BOLT_OMP_H

#include <stdint.h>

#define BOLT_PRAGMA(text) _Pragma(#text)

#ifdef _OPENMP
#include <omp.h>
/* wall-clock seconds, for the kernel profile */
static inline double bolt_seconds(void) { return omp_get_wtime(); }
#define BOLT_OMP(...) BOLT_PRAGMA(omp __VA_ARGS__)
#define BOLT_SIMD BOLT_PRAGMA(omp simd)
static inline int32_t bolt_thread_num(void) { return (int32_t)omp_get_thread_num(); }
#else
#include <time.h>
static inline double bolt_seconds(void)
{
    struct timespec now;
    timespec_get(&now, TIME_UTC);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}
#define BOLT_OMP(...)
#define BOLT_SIMD
static inline int32_t bolt_thread_num(void) { return 0; }
#endif

#endif /* BOLT_OMP_H */
