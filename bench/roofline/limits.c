/* The machine's limits that boltc's kernels are judged against (bench/roofline/measure.py builds and runs this).
 *
 * Prints one JSON object:
 *   triad_gbps         STREAM triad a[i] = b[i] + s * c[i] over arrays far larger than the caches (bytes moved:
 *                      3 x 4 per element, as STREAM counts them, without write-allocate traffic)
 *   gather_gbps        dot products of rows picked at random from a matrix far larger than the caches: the access
 *                      pattern of a sparse layer's forward (rows of ROW_FLOATS floats)
 *   update_gbps        read, change and write back the same random row of three such matrices: the access pattern of
 *                      the sparse update (weights and Adam's two moments); bytes counted both ways
 *   fma_gflops         peak fused multiply-add rate: independent vector accumulators, 2 FLOP per lane per FMA
 * Each figure is the best of REPEATS runs on `threads` OpenMP threads.
 *
 * Usage: limits THREADS ROW_FLOATS MATRIX_MB
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define PARALLEL _Pragma("omp parallel")
#define PARALLEL_FOR _Pragma("omp for schedule(static)")
static double now(void) { return omp_get_wtime(); }
#else
#include <time.h>
#define PARALLEL
#define PARALLEL_FOR
static int omp_get_thread_num(void) { return 0; }
static void omp_set_num_threads(int n) { (void)n; }
static double now(void)
{
    struct timespec t;
    timespec_get(&t, TIME_UTC);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
#endif

enum { REPEATS = 5, ROWS_PER_THREAD_VISITS = 1 << 18, FMA_ROUNDS = 1 << 24, ACCUMULATORS = 12 };

/* 16 floats: one AVX-512 register, two AVX2 or four NEON registers; the compiler splits it as the target needs. */
typedef float vfloat __attribute__((vector_size(64)));

static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static float *big_array(size_t floats)
{
    float *a = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    if (!a) {
        fprintf(stderr, "limits: cannot allocate %zu MB\n", floats * sizeof(float) >> 20);
        exit(1);
    }
    return a;
}

/* What one timed run works on; `sink` collects results so that the compiler cannot drop the work. */
typedef struct job {
    float *a, *b, *c; /* triad: a = b + s * c, n floats each */
    size_t n;
    float *w, *mo, *ve; /* rows x width matrices: weights and two moments */
    size_t rows;
    int width;
    double sink;
} job;

/* The quickest of REPEATS runs, in seconds: other load on the machine only ever adds time. */
static double best_seconds(void (*run)(job *, int), job *work)
{
    double best = 1e30;
    for (int repeat = 0; repeat < REPEATS; ++repeat) {
        const double started = now();
        run(work, repeat);
        const double seconds = now() - started;
        best = seconds < best ? seconds : best;
    }
    return best;
}

static float lanes_sum(const vfloat *v)
{
    float total = 0;
    for (int lane = 0; lane < 16; ++lane)
        total += (*v)[lane];
    return total;
}

/* A thread's random stream for one run, and the first rows it will visit (the kernels fetch 8 ahead). */
static uint64_t start_visits(uint64_t multiplier, int repeat, size_t rows, uint64_t ahead[8])
{
    uint64_t state = multiplier * (uint64_t)(omp_get_thread_num() + 1 + repeat * 64);
    for (int k = 0; k < 8; ++k)
        ahead[k] = next_random(&state) % rows;
    return state;
}

static void add_to_sink(job *work, float value)
{
#ifdef _OPENMP
#pragma omp atomic
#endif
    work->sink += value;
}

static void triad_run(job *work, int repeat)
{
    (void)repeat;
    float *restrict a = work->a;
    const float *restrict b = work->b, *restrict c = work->c;
    PARALLEL
    {
        PARALLEL_FOR
        for (size_t i = 0; i < work->n; ++i)
            a[i] = b[i] + 3.0f * c[i];
    }
    work->sink += a[work->n / 2];
}

static void fill(float *m, size_t n, float scale)
{
    PARALLEL
    {
        PARALLEL_FOR
        for (size_t i = 0; i < n; ++i)
            m[i] = (float)(i % 7) * scale;
    }
}

static double triad(size_t n, job *work)
{
    work->a = big_array(n), work->b = big_array(n), work->c = big_array(n), work->n = n;
    fill(work->a, n, 0), fill(work->b, n, 1), fill(work->c, n, 2);
    const double best = best_seconds(triad_run, work);
    free(work->a);
    free(work->b);
    free(work->c);
    return 3.0 * sizeof(float) * (double)n / best / 1e9;
}

/* Random rows of w dotted with themselves: prefetched a few rows ahead, as the kernels do. */
static void gather_run(job *work, int repeat)
{
    const float *m = work->w;
    const size_t rows = work->rows;
    const int width = work->width;
    PARALLEL
    {
        uint64_t ahead[8];
        uint64_t state = start_visits(0x9E3779B97F4A7C15ull, repeat, rows, ahead);
        float total = 0;
        for (int v = 0; v < ROWS_PER_THREAD_VISITS; ++v) {
            const size_t row = ahead[v & 7];
            ahead[v & 7] = next_random(&state) % rows;
            __builtin_prefetch(m + ahead[v & 7] * (size_t)width);
            __builtin_prefetch(m + ahead[v & 7] * (size_t)width + width / 2);
            const float *x = m + row * (size_t)width;
            vfloat dot = {0}, chunk;
            int i = 0;
            for (; i + 16 <= width; i += 16) { /* vector sums: a scalar sum would measure the add latency */
                memcpy(&chunk, x + i, sizeof chunk);
                dot += chunk * chunk;
            }
            for (; i < width; ++i)
                dot[0] += x[i] * x[i];
            total += lanes_sum(&dot);
        }
        add_to_sink(work, total);
    }
}

/* Random rows of three matrices read and written back (an Adam step's traffic): 6 row transfers per visit. */
static void update_run(job *work, int repeat)
{
    float *w = work->w, *mo = work->mo, *ve = work->ve;
    const size_t rows = work->rows;
    const int width = work->width;
    PARALLEL
    {
        uint64_t ahead[8];
        uint64_t state = start_visits(0xD1B54A32D192ED03ull, repeat, rows, ahead);
        for (int v = 0; v < ROWS_PER_THREAD_VISITS / 4; ++v) {
            const size_t at = ahead[v & 7] * (size_t)width;
            ahead[v & 7] = next_random(&state) % rows;
            const size_t next = ahead[v & 7] * (size_t)width;
            __builtin_prefetch(w + next, 1);
            __builtin_prefetch(mo + next, 1);
            __builtin_prefetch(ve + next, 1);
            for (int i = 0; i < width; ++i) {
                const float g = 0.001f * (float)i;
                mo[at + i] = 0.9f * mo[at + i] + 0.1f * g;
                ve[at + i] = 0.999f * ve[at + i] + 0.001f * g * g;
                w[at + i] -= 0.0001f * mo[at + i] / (ve[at + i] + 1e-7f);
            }
        }
    }
}

static void fma_run(job *work, int repeat)
{
    (void)repeat;
    PARALLEL
    {
        vfloat acc[ACCUMULATORS];
        const vfloat step = (vfloat){0} + 1e-7f;
        for (int k = 0; k < ACCUMULATORS; ++k)
            acc[k] = (vfloat){0} + (float)(k + omp_get_thread_num());
        for (int round = 0; round < FMA_ROUNDS / 16; ++round)
            for (int k = 0; k < ACCUMULATORS; ++k)
                acc[k] = acc[k] * step + acc[k]; /* contracted to one FMA per vector at -O2 and above */
        float total = 0;
        for (int k = 0; k < ACCUMULATORS; ++k)
            total += lanes_sum(&acc[k]);
        add_to_sink(work, total);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: limits THREADS ROW_FLOATS MATRIX_MB\n");
        return 2;
    }
    const int threads = atoi(argv[1]), width = atoi(argv[2]);
    const size_t matrix_floats = (size_t)atol(argv[3]) << 20 >> 2;
    if (threads < 1 || width < 1 || matrix_floats < (size_t)width) {
        fprintf(stderr, "limits: THREADS, ROW_FLOATS and MATRIX_MB must be positive\n");
        return 2;
    }
    omp_set_num_threads(threads);
    job work = {.rows = matrix_floats / (size_t)width, .width = width};
    const double triad_gbps = triad(matrix_floats, &work);
    const size_t floats = work.rows * (size_t)width;
    work.w = big_array(floats), work.mo = big_array(floats), work.ve = big_array(floats);
    fill(work.w, floats, 0.01f), fill(work.mo, floats, 0.01f), fill(work.ve, floats, 0.01f);
    const double row_bytes = (double)width * sizeof(float);
    const double gather_gbps = threads * ROWS_PER_THREAD_VISITS * row_bytes / best_seconds(gather_run, &work) / 1e9;
    const double update_gbps =
        threads * (ROWS_PER_THREAD_VISITS / 4) * 6.0 * row_bytes / best_seconds(update_run, &work) / 1e9;
    const double fma_gflops = threads * (double)(FMA_ROUNDS / 16) * ACCUMULATORS * 16 * 2 /
                              best_seconds(fma_run, &work) / 1e9;
    if (work.sink == 12345.678) /* never true: reading the sink keeps the timed work */
        puts("");
    printf("{\"threads\": %d, \"row_floats\": %d, \"matrix_mb\": %zu, \"triad_gbps\": %.2f, \"gather_gbps\": %.2f, "
           "\"update_gbps\": %.2f, \"fma_gflops\": %.1f}\n",
           threads, width, matrix_floats * sizeof(float) >> 20, triad_gbps, gather_gbps, update_gbps, fma_gflops);
    free(work.w);
    free(work.mo);
    free(work.ve);
    return 0;
}
