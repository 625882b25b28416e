/* boltc runtime: OpenMP when the compiler has it, a serial build when it does not.
 *
 * Pragmas go through BOLT_OMP(...) so that a build without -fopenmp sees no unknown pragmas (it compiles cleanly
 * under -Wall -Werror) and runs the same loops on one thread.
 */
#ifndef BOLT_OMP_H
#define BOLT_OMP_H

#define BOLT_PRAGMA(text) _Pragma(#text)

#ifdef _OPENMP
#define BOLT_OMP(...) BOLT_PRAGMA(omp __VA_ARGS__)
#define BOLT_SIMD BOLT_PRAGMA(omp simd)
#else
#define BOLT_OMP(...)
#define BOLT_SIMD
#endif

#endif /* BOLT_OMP_H */
