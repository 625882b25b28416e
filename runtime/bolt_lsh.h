/* boltc runtime: locality-sensitive hashing for sparse layers: what every hash family shares, and the tables.
 *
 * A hash family (one header bolt_hash_<name>.h each, one Python module boltc/hashing/<name>.py) maps a vector to one
 * key in each of L tables by concatenating K hashes, through two functions of one signature:
 *   bolt_<name>_keys(functions, x, scratch, keys): keys[t] of one vector (scratch: tables * hashes ints);
 *   bolt_<name>_hash_rows(functions, rows, first, count, stride, scratch, ids): the keys of rows first ..
 *     first + count - 1 of a matrix, written to ids[t * stride + row] (scratch: what the family's Python module
 *     sizes per thread).
 * Families of binned hashes (DWTA, densified MinHash) share the machinery below and differ only in the hash of a
 * bin of 8 coordinates: BOLT_BINNED_FAMILY defines their two functions from it.
 *
 * Tables are compact CSR buckets: for table t, the neurons with key k are ids[t][offsets[t][k] .. offsets[t][k+1]),
 * placed in a per-rebuild shuffled order, so reading only the first `cap` ids of a crowded bucket samples it
 * fairly. Memory is L x (N + range + 1) integers, never L x range x capacity. A layer whose tables freeze keeps
 * `slack` free slots after each bucket and the fill of each bucket in `sizes`, so that training labels can still
 * be inserted once the rebuilds stop.
 */
#ifndef BOLT_LSH_H
#define BOLT_LSH_H

#include <stdint.h>
#include <string.h>

#include "bolt_dense.h"
#include "bolt_math.h"
#include "bolt_omp.h"

/* A layer's hash functions as the family's two functions read them: the dimensions of its keys and the family's
 * own array (its lsh functions buffer: bin coordinates, hyperplanes, ...). */
typedef struct {
    int32_t dim;     /* coordinates of a hashed vector */
    int32_t tables;  /* L: keys per vector */
    int32_t hashes;  /* K: hashes per key */
    const void *functions;
} bolt_hash_functions;

/* A layer's hash tables, bound once by its generated code (templates/_lsh.j2 lsh_tables) and handed to every
 * function that reads or writes them: for table t the neurons with key k are
 * ids[t * stride + offsets[t][k] .. t * stride + offsets[t][k + 1]). */
typedef struct {
    int32_t neurons;      /* N: ids are 0 .. N - 1 */
    int32_t tables;       /* L */
    int32_t range;        /* keys per table */
    int32_t cap;          /* ids a query reads from one bucket at most */
    int32_t slack;        /* free slots after each bucket, for labels inserted once the tables freeze */
    int64_t stride;       /* ids of one table: N + range * slack */
    int32_t *offsets;     /* [tables][range + 1] */
    int32_t *sizes;       /* [tables][range], each bucket's fill; NULL without slack */
    int32_t *ids;         /* [tables][stride] */
    const int32_t *order; /* [N]: a random permutation; buckets are filled, and top-ups drawn, in its order */
} bolt_lsh_tables;

/* One thread's scratch for choosing active sets. */
typedef struct {
    uint8_t *votes;      /* [N], one byte per neuron so a thread's share stays in cache; all zero between calls */
    int32_t *candidates; /* [tables * cap] */
} bolt_lsh_probe;

/* What a sample takes before its bucket candidates: its labels, then the neurons every sample takes (the batch's
 * labels in training, the heaviest rows in inference). */
typedef struct {
    const int32_t *labels;
    int64_t n_labels;
    const int32_t *common;
    int32_t n_common;
} bolt_lsh_first;

#define BOLT_DWTA_BIN 8 /* coordinates per bin of a binned family: a bin hash is 3 bits */

enum { BOLT_HASH_BLOCK = 16 }; /* rows hashed at once by a binned family's rebuild: one vector of floats */

/* Densification: an empty bin (-1) borrows the hash of the next non-empty bin, cyclically (0 when every bin is
 * empty); a borrowed hash is marked with bit 3. One backward pass from the last non-empty bin carries the nearest
 * donor, so a vector with few non-empty bins (a sparse input's) costs n_bins steps, not n_bins times the gaps. */
static inline void bolt_binned_densify(int32_t n_bins, int32_t *restrict bins)
{
    int32_t last = n_bins - 1;
    while (last >= 0 && bins[last] < 0)
        --last;
    int32_t donor = last >= 0 ? bins[last] & 7 : 0;
    for (int32_t i = (last >= 0 ? last : n_bins) - 1; i >= 0; --i) {
        if (bins[i] >= 0)
            donor = bins[i] & 7;
        else
            bins[i] = donor | 8;
    }
    for (int32_t i = n_bins - 1; i > last; --i) /* after the last non-empty bin: the first one's hash */
        bins[i] = donor | 8;
}

/* keys[t] for t < tables: the K 3-bit bin hashes of table t concatenated, the first in the lowest bits. */
static inline void bolt_binned_keys_of(int32_t tables, int32_t hashes, const int32_t *restrict bins,
                                       int32_t *restrict keys)
{
    for (int32_t t = 0; t < tables; ++t) {
        int32_t key = 0;
        for (int32_t k = 0; k < hashes; ++k)
            key |= (bins[t * hashes + k] & 7) << (3 * k);
        keys[t] = key;
    }
}

/* The densified bins of a block of rows ([n_bins][BOLT_HASH_BLOCK]) turned into keys, written to ids[t * stride +
 * r]; a row of an empty bin is densified on its own (rare for weight rows: only then does a row need its bins in
 * order). */
static inline void bolt_binned_block_keys(int32_t rows, int32_t tables, int32_t hashes, int32_t any_empty,
                                          int32_t *restrict bins, int64_t stride, int32_t *restrict ids)
{
    enum { B = BOLT_HASH_BLOCK };
    const int32_t n_bins = tables * hashes;
    if (any_empty)
        for (int32_t r = 0; r < rows; ++r) {
            int32_t row_bins[n_bins];
            for (int32_t i = 0; i < n_bins; ++i)
                row_bins[i] = bins[(size_t)i * B + r];
            bolt_binned_densify(n_bins, row_bins);
            for (int32_t i = 0; i < n_bins; ++i)
                bins[(size_t)i * B + r] = row_bins[i];
        }
    for (int32_t t = 0; t < tables; ++t) {
        int32_t keys[B] = {0};
        for (int32_t k = 0; k < hashes; ++k) {
            const int32_t *restrict bin = bins + (size_t)(t * hashes + k) * B;
            BOLT_SIMD
            for (int32_t r = 0; r < B; ++r)
                keys[r] |= (bin[r] & 7) << (3 * k);
        }
        memcpy(ids + (size_t)t * stride, keys, (size_t)rows * sizeof(int32_t));
    }
}

/* The two functions of a binned family `name` whose bin hash is `bin_hash(v0, ..., v7)`: the position (0-7) the
 * family picks among a bin's 8 values, or -1 for an empty bin. The functions array holds K * L bins of 8 input
 * coordinates, coordinate-major (functions[c * n_bins + i] is the c-th coordinate of bin i), so that a vector's
 * loop gathers one coordinate of many bins at once. The rebuild transposes a block of rows first ([dim][BLOCK] in
 * scratch, then the block's bins) so that each comparison of a bin runs on the same coordinate of every row at once,
 * from contiguous loads; its keys equal _keys' row by row. A macro, not a function taking the bin hash, so that the
 * hash inlines into the loops and they vectorise. */
#define BOLT_BINNED_FAMILY(name, bin_hash)                                                                           \
    static inline void bolt_##name##_keys(const bolt_hash_functions *fn, const real_t *restrict x,                 \
                                          int32_t *restrict bins, int32_t *restrict keys)                           \
    {                                                                                                               \
        const int32_t n_bins = fn->tables * fn->hashes;                                                             \
        const int32_t *c0 = (const int32_t *)fn->functions, *c1 = c0 + n_bins, *c2 = c1 + n_bins;                   \
        const int32_t *c3 = c2 + n_bins, *c4 = c3 + n_bins, *c5 = c4 + n_bins, *c6 = c5 + n_bins;                   \
        const int32_t *c7 = c6 + n_bins;                                                                            \
        for (int32_t i = 0; i < n_bins; ++i)                                                                        \
            bins[i] = bin_hash(x[c0[i]], x[c1[i]], x[c2[i]], x[c3[i]], x[c4[i]], x[c5[i]], x[c6[i]], x[c7[i]]);     \
        bolt_binned_densify(n_bins, bins);                                                                          \
        bolt_binned_keys_of(fn->tables, fn->hashes, bins, keys);                                                    \
    }                                                                                                               \
                                                                                                                    \
    static inline void bolt_##name##_hash_rows(const bolt_hash_functions *fn, const real_t *restrict rows,          \
                                               int32_t first, int32_t count, int64_t stride,                       \
                                               real_t *restrict scratch, int32_t *restrict ids)                     \
    {                                                                                                               \
        enum { B = BOLT_HASH_BLOCK };                                                                               \
        const int32_t dim = fn->dim, n_bins = fn->tables * fn->hashes;                                              \
        const int32_t *restrict coords = (const int32_t *)fn->functions;                                            \
        real_t *restrict xt = scratch;                                                                              \
        int32_t *restrict bins = (int32_t *)(scratch + (size_t)dim * B);                                            \
        for (int32_t r0 = 0; r0 < count; r0 += B) {                                                                 \
            const int32_t block = count - r0 < B ? count - r0 : B;                                                  \
            const real_t *restrict x = rows + (size_t)(first + r0) * dim;                                           \
            for (int32_t c = 0; c < dim; ++c)                                                                       \
                for (int32_t r = 0; r < B; ++r)                                                                     \
                    xt[(size_t)c * B + r] = r < block ? x[(size_t)r * dim + c] : 0;                                 \
            int32_t any_empty = 0;                                                                                  \
            for (int32_t i = 0; i < n_bins; ++i) {                                                                  \
                const real_t *restrict a0 = xt + (size_t)coords[i] * B;                                             \
                const real_t *restrict a1 = xt + (size_t)coords[n_bins + i] * B;                                    \
                const real_t *restrict a2 = xt + (size_t)coords[2 * n_bins + i] * B;                                \
                const real_t *restrict a3 = xt + (size_t)coords[3 * n_bins + i] * B;                                \
                const real_t *restrict a4 = xt + (size_t)coords[4 * n_bins + i] * B;                                \
                const real_t *restrict a5 = xt + (size_t)coords[5 * n_bins + i] * B;                                \
                const real_t *restrict a6 = xt + (size_t)coords[6 * n_bins + i] * B;                                \
                const real_t *restrict a7 = xt + (size_t)coords[7 * n_bins + i] * B;                                \
                int32_t *restrict out = bins + (size_t)i * B;                                                       \
                for (int32_t r = 0; r < B; ++r) {                                                                   \
                    out[r] = bin_hash(a0[r], a1[r], a2[r], a3[r], a4[r], a5[r], a6[r], a7[r]);                      \
                    any_empty |= out[r] < 0;                                                                        \
                }                                                                                                   \
            }                                                                                                       \
            bolt_binned_block_keys(block, fn->tables, fn->hashes, any_empty, bins, stride, ids + first + r0);       \
        }                                                                                                           \
    }

/* Rebuild step 2 for table t, whose ids hold each neuron's key: counting sort of its neurons by key. keys is
 * scratch [N], cursor scratch [range]; neurons are placed in the tables' order so capped buckets sample fairly.
 * With slack, every bucket gets that many free slots after its neurons and its fill in sizes. */
static inline void bolt_lsh_sort_table(const bolt_lsh_tables *lsh, int32_t t, int32_t *restrict keys,
                                       int32_t *restrict cursor)
{
    const int32_t n = lsh->neurons, range = lsh->range, slack = lsh->slack;
    int32_t *restrict ids = lsh->ids + (size_t)t * lsh->stride;
    int32_t *restrict offsets = lsh->offsets + (size_t)t * (range + 1);
    int32_t *restrict sizes = slack > 0 ? lsh->sizes + (size_t)t * range : NULL;
    const int32_t *restrict order = lsh->order;
    memcpy(keys, ids, (size_t)n * sizeof(int32_t));
    memset(offsets, 0, (size_t)(range + 1) * sizeof(int32_t));
    for (int32_t i = 0; i < n; ++i)
        offsets[keys[i] + 1] += 1;
    if (slack > 0)
        for (int32_t k = 0; k < range; ++k) {
            sizes[k] = offsets[k + 1];
            offsets[k + 1] += slack;
        }
    for (int32_t k = 0; k < range; ++k)
        offsets[k + 1] += offsets[k];
    memcpy(cursor, offsets, (size_t)range * sizeof(int32_t));
    for (int32_t i = 0; i < n; ++i) {
        const int32_t neuron = order[i];
        ids[cursor[keys[neuron]]++] = neuron;
    }
}

/* Label insertion into frozen tables (BOLT's behaviour once rebuilds stop): `label` joins the bucket `key` of table
 * t unless it is there already, in a free slot while the bucket has one within the `cap` ids a query reads, else in
 * place of one of those ids, chosen by `salt` as a reservoir would. */
static inline void bolt_lsh_insert(const bolt_lsh_tables *lsh, int32_t t, int32_t key, int32_t label, uint32_t salt)
{
    const int32_t cap = lsh->cap;
    const int32_t *restrict offsets = lsh->offsets + (size_t)t * (lsh->range + 1);
    int32_t *restrict sizes = lsh->sizes + (size_t)t * lsh->range;
    int32_t *restrict ids = lsh->ids + (size_t)t * lsh->stride;
    const int32_t begin = offsets[key], room = offsets[key + 1] - begin, size = sizes[key];
    for (int32_t p = begin; p < begin + size; ++p)
        if (ids[p] == label)
            return;
    if (size < room && size < cap) {
        ids[begin + size] = label;
        sizes[key] = size + 1;
        return;
    }
    const int32_t visible = size < cap ? size : cap;
    if (visible > 0)
        ids[begin + (int32_t)(bolt_mix32(salt) % (uint32_t)visible)] = label;
}

/* The seed of a sample's random top-up in inference, from its keys: what a row is then decides its active set, not
 * where it sits in a file or in a server's batch of requests. */
static inline uint32_t bolt_keys_seed(const int32_t *restrict keys, int32_t tables)
{
    uint32_t seed = 2166136261u;
    for (int32_t t = 0; t < tables; ++t)
        seed = (seed ^ (uint32_t)keys[t]) * 16777619u;
    return seed;
}

#define BOLT_LSH_TAKEN 255 /* votes[n] of a neuron already in the active set; 1 .. 254 count bucket hits */

/* The active set of one sample, at most `active` distinct ids: what it takes `first` (NULL: nothing); then the
 * neurons the buckets of its `keys` return (at most `cap` ids from each), ranked by how many tables returned them
 * when there are more than fit, since a neuron found in more tables collides with the query more often and so is
 * more similar; then, while there are fewer than `least`, neurons taken in the tables' order from a place chosen by
 * `salt`. Returns the number of ids chosen (`active` whenever `least` is). */
static inline int32_t bolt_lsh_select(const bolt_lsh_tables *lsh, const int32_t *restrict keys,
                                      const bolt_lsh_first *first, int32_t active, int32_t least, uint32_t salt,
                                      const bolt_lsh_probe *probe, int32_t *restrict chosen)
{
    const int32_t n = lsh->neurons, range = lsh->range, cap = lsh->cap, tables = lsh->tables;
    const int64_t stride = lsh->stride;
    const int32_t *restrict offsets = lsh->offsets, *restrict sizes = lsh->sizes, *restrict ids = lsh->ids;
    const int32_t *restrict order = lsh->order;
    const int32_t *restrict labels = first ? first->labels : NULL, *restrict common = first ? first->common : NULL;
    const int64_t n_labels = first ? first->n_labels : 0;
    const int32_t n_common = first ? first->n_common : 0;
    uint8_t *restrict votes = probe->votes;
    int32_t *restrict candidates = probe->candidates;
    int32_t bounds[2 * tables]; /* the part of each table's bucket that is read */
    int32_t count = 0, n_candidates = 0;
    for (int64_t p = 0; p < n_labels + n_common && count < active; ++p) {
        const int32_t neuron = p < n_labels ? labels[p] : common[p - n_labels];
        if (votes[neuron] != BOLT_LSH_TAKEN) {
            votes[neuron] = BOLT_LSH_TAKEN;
            chosen[count++] = neuron;
        }
    }
    /* with no room left the tables are not read (nor need `keys`) */
    const int32_t read = count < active ? tables : 0;
    /* every table's bucket is a random place in memory: ask for all of them before reading any */
    for (int32_t t = 0; t < read; ++t) {
        bolt_prefetch_bytes(offsets + (size_t)t * (range + 1) + keys[t], 1);
        if (sizes)
            bolt_prefetch_bytes(sizes + (size_t)t * range + keys[t], 1);
    }
    for (int32_t t = 0; t < read; ++t) {
        const int32_t *table_offsets = offsets + (size_t)t * (range + 1);
        const int32_t begin = table_offsets[keys[t]];
        const int32_t end = sizes ? begin + sizes[(size_t)t * range + keys[t]] : table_offsets[keys[t] + 1];
        bounds[2 * t] = begin;
        bounds[2 * t + 1] = end - begin > cap ? begin + cap : end;
        bolt_prefetch_bytes(ids + (size_t)t * stride + begin, sizeof(int32_t) * (size_t)(bounds[2 * t + 1] - begin));
    }
    for (int32_t t = 0; t < read; ++t) {
        for (int32_t p = bounds[2 * t]; p < bounds[2 * t + 1]; ++p) {
            const int32_t neuron = ids[(size_t)t * stride + p];
            const uint8_t v = votes[neuron];
            if (v == 0)
                candidates[n_candidates++] = neuron;
            votes[neuron] = v + (v < BOLT_LSH_TAKEN - 1);
        }
    }
    if (count + n_candidates > active) {
        int32_t histogram[BOLT_LSH_TAKEN] = {0};
        for (int32_t c = 0; c < n_candidates; ++c)
            histogram[votes[candidates[c]]] += 1;
        /* candidates with more votes than the threshold all fit; the rest of the room goes to ties at the threshold,
         * in bucket order */
        int32_t room = active - count, above = 0, threshold = BOLT_LSH_TAKEN - 1;
        for (; threshold > 0 && above + histogram[threshold] < room; --threshold)
            above += histogram[threshold];
        int32_t ties = room - above;
        for (int32_t c = 0; c < n_candidates; ++c) {
            const int32_t v = votes[candidates[c]];
            if (v > threshold || (v == threshold && ties-- > 0))
                chosen[count++] = candidates[c];
            votes[candidates[c]] = 0;
        }
    } else {
        for (int32_t c = 0; c < n_candidates; ++c) {
            votes[candidates[c]] = BOLT_LSH_TAKEN;
            chosen[count++] = candidates[c];
        }
        int64_t at = bolt_mix32(salt) % (uint32_t)n;
        while (count < least) {
            const int32_t neuron = order[at];
            at = at + 1 == n ? 0 : at + 1;
            if (votes[neuron] == 0) {
                votes[neuron] = BOLT_LSH_TAKEN;
                chosen[count++] = neuron;
            }
        }
    }
    for (int32_t a = 0; a < count; ++a)
        votes[chosen[a]] = 0;
    return count;
}

/* Entries among the first n_entries whose neuron id falls in part `part` (id >> part_shift == part). */
static inline int64_t bolt_count_part(int64_t n_entries, const int32_t *restrict neuron, int32_t part_shift,
                                      int32_t part)
{
    int64_t count = 0;
    for (int64_t e = 0; e < n_entries; ++e)
        count += (neuron[e] >> part_shift) == part;
    return count;
}

/* A part's entries grouped by neuron (bolt_group_entries): group g is neuron groups[g], its entries are
 * starts[g] .. starts[g+1]-1 of rows (the batch row of each) and coefs (its coefficient). */
typedef struct {
    int32_t *slot; /* [N], all zero for the part's neurons between calls */
    int32_t *groups;
    int32_t *starts;
    int32_t *rows;
    real_t *coefs;
} bolt_entry_groups;

/* Group by neuron the entries of a [rows][row_length] matrix of neuron ids whose neuron falls in part `part`, the
 * ids part << part_shift .. (part + 1) << part_shift (so that the part's share of `slot` stays in cache), for weight
 * updates that one thread per part can apply without races: the part's distinct neurons in increasing id order, so
 * their rows are visited in address order (faster than random order on every memory system), each with its entries
 * in batch order. Returns the number of groups. */
static inline int32_t bolt_group_entries(int32_t rows, int32_t row_length, int32_t n, const int32_t *restrict neuron,
                                         const real_t *restrict coef, int32_t part_shift, int32_t part,
                                         const bolt_entry_groups *out)
{
    int32_t *restrict slot = out->slot, *restrict groups = out->groups, *restrict starts = out->starts;
    int32_t *restrict entry_rows = out->rows;
    real_t *restrict entry_coefs = out->coefs;
    const int64_t n_entries = (int64_t)rows * row_length;
    for (int64_t e = 0; e < n_entries; ++e) /* count each neuron's entries */
        if (neuron[e] >> part_shift == part)
            slot[neuron[e]] += 1;
    const int32_t first_id = part << part_shift;
    const int32_t last_id = (int64_t)(part + 1) << part_shift < n ? (part + 1) << part_shift : n;
    int32_t n_groups = 0, offset = 0;
    for (int32_t id = first_id; id < last_id; ++id) { /* the part's neurons in id order; slot becomes group + 1 */
        if (slot[id] == 0)
            continue;
        groups[n_groups] = id;
        starts[n_groups] = offset;
        offset += slot[id];
        slot[id] = ++n_groups;
    }
    for (int64_t e = 0; e < n_entries; ++e) {
        const int32_t id = neuron[e];
        if (id >> part_shift != part)
            continue;
        const int32_t at = starts[slot[id] - 1]++;
        entry_rows[at] = (int32_t)(e / row_length);
        entry_coefs[at] = coef[e];
    }
    for (int32_t g = n_groups; g > 0; --g)
        starts[g] = starts[g - 1];
    starts[0] = 0;
    for (int32_t g = 0; g < n_groups; ++g)
        slot[groups[g]] = 0;
    return n_groups;
}

#endif /* BOLT_LSH_H */
