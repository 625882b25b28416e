/* Batch-1 latency of a library written by `boltc export`: each row of an XMC data file predicted alone, timed.
 *
 *     cc -O3 -march=native -fopenmp -I LIB bench/serving_latency.c LIB/libboltc_model.a -lm -o latency
 *     ./latency LIB/weights.bin DATA.txt ROWS TOP_K THREADS
 *
 * Prints one JSON object: rows, p50 and p99 milliseconds, rows per second, load seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "boltc_model.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: latency WEIGHTS DATA ROWS TOP_K THREADS\n");
        return 1;
    }
    const int rows_most = atoi(argv[3]), top_k = atoi(argv[4]);
    double started = now();
    char error[256];
    boltc_model *model = boltc_load(argv[1], error, sizeof error);
    if (!model) {
        fprintf(stderr, "%s\n", error);
        return 1;
    }
    const double load_seconds = now() - started;
    boltc_set_threads(model, atoi(argv[5]));
    FILE *data = fopen(argv[2], "r");
    if (!data) {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        return 1;
    }
    static char line[1 << 20];
    static int32_t indices[1 << 16];
    static float values[1 << 16];
    int32_t ids[1024];
    float scores[1024];
    double *seconds = (double *)malloc(sizeof(double) * (size_t)rows_most);
    int rows = 0;
    double total = 0;
    if (!fgets(line, sizeof line, data)) /* the header */
        return 1;
    while (rows < rows_most && fgets(line, sizeof line, data)) {
        int64_t indptr[2] = {0, 0};
        char *field = strtok(line, " \n");
        if (field && !strchr(field, ':'))
            field = strtok(NULL, " \n"); /* the labels */
        for (; field && indptr[1] < (1 << 16); field = strtok(NULL, " \n")) {
            indices[indptr[1]] = (int32_t)strtol(field, &field, 10);
            values[indptr[1]] = *field == ':' ? strtof(field + 1, NULL) : 1.0f;
            ++indptr[1];
        }
        const boltc_rows input = {NULL, indptr, indices, values};
        const double before = now();
        if (boltc_predict(model, 1, &input, top_k, ids, scores) != BOLTC_OK) {
            fprintf(stderr, "%s\n", boltc_error(model));
            return 1;
        }
        seconds[rows] = now() - before;
        total += seconds[rows++];
    }
    qsort(seconds, (size_t)rows, sizeof(double), by_value);
    printf("{\"rows\": %d, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"rows_per_second\": %.1f, \"load_seconds\": %.3f}\n",
           rows, 1e3 * seconds[rows / 2], 1e3 * seconds[(int)(0.99 * (rows - 1))], rows / total, load_seconds);
    free(seconds);
    fclose(data);
    boltc_free(model);
    return 0;
}
