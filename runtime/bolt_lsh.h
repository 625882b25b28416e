/* boltc runtime: locality-sensitive hashing for sparse layers.
 *
 * DWTA (densified winner-take-all): a bin is 8 coordinates of the vector; its hash is the position of the largest
 * of them (3 bits). K bin hashes concatenate into a key of one of L tables. Bins whose 8 values are all zero (common
 * for ReLU activations) borrow the hash of the next non-empty bin, so sparse vectors still get full keys.
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

#define BOLT_DWTA_BIN 8 /* coordinates per bin: a bin hash is 3 bits */

/* The position of the largest of a bin's 8 values (the lowest on ties), or -1 when they are all zero: a
 * branch-free tournament, so that the loops calling it become vector compares and blends. */
static inline int32_t bolt_dwta_bin(real_t v0, real_t v1, real_t v2, real_t v3, real_t v4, real_t v5, real_t v6,
                                    real_t v7)
{
    const real_t m01 = v1 > v0 ? v1 : v0, m23 = v3 > v2 ? v3 : v2;
    const real_t m45 = v5 > v4 ? v5 : v4, m67 = v7 > v6 ? v7 : v6;
    const int32_t i01 = v1 > v0 ? 1 : 0, i23 = v3 > v2 ? 3 : 2, i45 = v5 > v4 ? 5 : 4, i67 = v7 > v6 ? 7 : 6;
    const real_t m03 = m23 > m01 ? m23 : m01, m47 = m67 > m45 ? m67 : m45;
    const int32_t i03 = m23 > m01 ? i23 : i01, i47 = m67 > m45 ? i67 : i45;
    const int32_t best = m47 > m03 ? i47 : i03;
    const int nonzero = (v0 != 0) | (v1 != 0) | (v2 != 0) | (v3 != 0) | (v4 != 0) | (v5 != 0) | (v6 != 0) |
                        (v7 != 0);
    return nonzero ? best : -1;
}

/* bins[i] for i < n_bins: bolt_dwta_bin of bin i's coordinates of x. coords is coordinate-major (coords[c * n_bins +
 * i] is the c-th coordinate of bin i), so that the loop gathers each coordinate of many bins at once. */
static inline void bolt_dwta_bins(int32_t n_bins, const real_t *restrict x, const int32_t *restrict coords,
                                  int32_t *restrict bins)
{
    const int32_t *c0 = coords, *c1 = c0 + n_bins, *c2 = c1 + n_bins, *c3 = c2 + n_bins;
    const int32_t *c4 = c3 + n_bins, *c5 = c4 + n_bins, *c6 = c5 + n_bins, *c7 = c6 + n_bins;
    for (int32_t i = 0; i < n_bins; ++i)
        bins[i] = bolt_dwta_bin(x[c0[i]], x[c1[i]], x[c2[i]], x[c3[i]], x[c4[i]], x[c5[i]], x[c6[i]], x[c7[i]]);
}

/* Densification: an empty bin (-1) borrows the hash of the next non-empty bin, cyclically (0 when every bin is
 * empty); a borrowed hash is marked with bit 3 so that later empty bins do not borrow it in turn. */
static inline void bolt_dwta_densify(int32_t n_bins, int32_t *restrict bins)
{
    for (int32_t i = 0; i < n_bins; ++i) {
        if (bins[i] >= 0)
            continue;
        int32_t donor = 0;
        for (int32_t step = 1; step < n_bins; ++step) {
            const int32_t h = bins[(i + step) % n_bins];
            if (h >= 0) {
                donor = h & 7;
                break;
            }
        }
        bins[i] = donor | 8;
    }
}

/* keys[t] for t < tables: the DWTA key of x in each table. bins is scratch for tables * hashes ints. */
static inline void bolt_dwta_keys(int32_t tables, int32_t hashes, const real_t *restrict x,
                                  const int32_t *restrict coords, int32_t *restrict bins, int32_t *restrict keys)
{
    const int32_t n_bins = tables * hashes;
    bolt_dwta_bins(n_bins, x, coords, bins);
    bolt_dwta_densify(n_bins, bins);
    for (int32_t t = 0; t < tables; ++t) {
        int32_t key = 0;
        for (int32_t k = 0; k < hashes; ++k)
            key |= (bins[t * hashes + k] & 7) << (3 * k);
        keys[t] = key;
    }
}

/* SRP (signed random projections): bit k of table t's key is whether x lies on the positive side of hyperplane
 * t * hashes + k; planes holds tables * hashes rows of dim random +-1 values. Suited to dense inputs whose sign
 * pattern carries the similarity; it costs tables * hashes dot products per vector where DWTA costs comparisons. */
static inline void bolt_srp_keys(int32_t tables, int32_t hashes, int32_t dim, const real_t *restrict x,
                                 const real_t *restrict planes, int32_t *restrict keys)
{
    for (int32_t t = 0; t < tables; ++t) {
        int32_t key = 0;
        for (int32_t k = 0; k < hashes; ++k)
            key |= (bolt_dot(dim, planes + (size_t)(t * hashes + k) * dim, x) > 0) << k;
        keys[t] = key;
    }
}

enum { BOLT_HASH_BLOCK = 16 }; /* rows hashed at once by the rebuild's DWTA: one vector of floats */

/* The DWTA keys of `rows` (at most BOLT_HASH_BLOCK) consecutive rows of x, written to ids[t * stride + r]. The
 * block is transposed first (xt: [dim][BOLT_HASH_BLOCK]) so that each comparison of a bin's tournament runs on
 * the same coordinate of every row at once, from contiguous loads, where one row at a time needs a gather per
 * coordinate; the keys of a table then leave as one contiguous run. bins is scratch [tables * hashes][BLOCK];
 * the results equal bolt_dwta_keys' row by row. */
static inline void bolt_dwta_keys_block(int32_t rows, int32_t dim, int32_t tables, int32_t hashes,
                                        const real_t *restrict x, const int32_t *restrict coords,
                                        real_t *restrict xt, int32_t *restrict bins, int64_t stride,
                                        int32_t *restrict ids)
{
    enum { B = BOLT_HASH_BLOCK };
    const int32_t n_bins = tables * hashes;
    for (int32_t c = 0; c < dim; ++c)
        for (int32_t r = 0; r < B; ++r)
            xt[(size_t)c * B + r] = r < rows ? x[(size_t)r * dim + c] : 0;
    int32_t any_empty = 0;
    for (int32_t i = 0; i < n_bins; ++i) {
        const real_t *restrict a0 = xt + (size_t)coords[i] * B, *restrict a1 = xt + (size_t)coords[n_bins + i] * B;
        const real_t *restrict a2 = xt + (size_t)coords[2 * n_bins + i] * B;
        const real_t *restrict a3 = xt + (size_t)coords[3 * n_bins + i] * B;
        const real_t *restrict a4 = xt + (size_t)coords[4 * n_bins + i] * B;
        const real_t *restrict a5 = xt + (size_t)coords[5 * n_bins + i] * B;
        const real_t *restrict a6 = xt + (size_t)coords[6 * n_bins + i] * B;
        const real_t *restrict a7 = xt + (size_t)coords[7 * n_bins + i] * B;
        int32_t *restrict out = bins + (size_t)i * B;
        for (int32_t r = 0; r < B; ++r) {
            out[r] = bolt_dwta_bin(a0[r], a1[r], a2[r], a3[r], a4[r], a5[r], a6[r], a7[r]);
            any_empty |= out[r] < 0;
        }
    }
    if (any_empty) /* rare for weight rows: only an all-zero bin needs the row's bins in order */
        for (int32_t r = 0; r < rows; ++r) {
            int32_t row_bins[n_bins];
            for (int32_t i = 0; i < n_bins; ++i)
                row_bins[i] = bins[(size_t)i * B + r];
            bolt_dwta_densify(n_bins, row_bins);
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

/* Rebuild step 1 (DWTA): the key of every neuron row of a chunk in every table, written into ids[t][first ..] (a
 * table's row of ids is `stride` long; step 2 sorts them), in blocks of rows (xt and bins: their scratch). */
static inline void bolt_dwta_hash_rows(int32_t first, int32_t count, int64_t stride, int32_t dim, int32_t tables,
                                       int32_t hashes, const real_t *restrict weights, const int32_t *restrict coords,
                                       real_t *restrict xt, int32_t *restrict bins, int32_t *restrict ids)
{
    for (int32_t r = 0; r < count; r += BOLT_HASH_BLOCK)
        bolt_dwta_keys_block(count - r < BOLT_HASH_BLOCK ? count - r : BOLT_HASH_BLOCK, dim, tables, hashes,
                             weights + (size_t)(first + r) * dim, coords, xt, bins, stride, ids + first + r);
}

/* Rebuild step 1 (SRP): the same. The keys of the chunk are gathered row-major in `keys` (scratch for
 * count * tables ints) and written out table by table, so that the writes into ids are sequential runs rather
 * than one scattered store per table and row. */
static inline void bolt_srp_hash_rows(int32_t first, int32_t count, int64_t stride, int32_t dim, int32_t tables,
                                      int32_t hashes, const real_t *restrict weights, const real_t *restrict planes,
                                      int32_t *restrict keys, int32_t *restrict ids)
{
    for (int32_t r = 0; r < count; ++r)
        bolt_srp_keys(tables, hashes, dim, weights + (size_t)(first + r) * dim, planes, keys + (size_t)r * tables);
    for (int32_t t = 0; t < tables; ++t)
        for (int32_t r = 0; r < count; ++r)
            ids[(size_t)t * stride + first + r] = keys[(size_t)r * tables + t];
}

/* Rebuild step 2 for table t: counting sort of its neurons by key. keys is scratch [n], cursor scratch [range];
 * neurons are placed in the order of `order` (a permutation of 0..n-1) so capped buckets sample fairly. With
 * `slack` > 0 every bucket gets that many free slots after its neurons and `sizes` [range] its fill. */
static inline void bolt_lsh_sort_table(int32_t n, int32_t range, int32_t slack, int32_t *restrict ids,
                                       int32_t *restrict offsets, int32_t *restrict sizes,
                                       const int32_t *restrict order, int32_t *restrict keys,
                                       int32_t *restrict cursor)
{
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

/* Label insertion into frozen tables (BOLT's behaviour once rebuilds stop): `label` joins the bucket `key` of one
 * table unless it is there already, in a free slot while the bucket has one within the `cap` ids a query reads,
 * else in place of one of those ids, chosen by `salt` as a reservoir would. */
static inline void bolt_lsh_insert(int32_t key, int32_t label, uint32_t salt, int32_t cap,
                                   const int32_t *restrict offsets, int32_t *restrict sizes, int32_t *restrict ids)
{
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

#define BOLT_LSH_TAKEN 255 /* votes[n] of a neuron already in the active set; 1 .. 254 count bucket hits */

/* The active set of one sample, at most `active` distinct ids: its labels first, then the `common` neurons every
 * sample takes (the batch's labels in training, the heaviest rows in inference); then the neurons the probed buckets
 * return (at most `cap` ids from each bucket), ranked by how many tables returned them when there are
 * more than fit, since a neuron found in more tables collides with the query more often and so is more similar;
 * then, while there are fewer than `least`, neurons taken in `order` from a place chosen by `salt`. Returns the
 * number of ids chosen (`active` whenever `least` is).
 * votes [n] is one byte per neuron, so a thread's share stays in its cache; it must be all zero on entry and is all
 * zero again on return. candidates is scratch for tables * cap ids. A table's row of ids is `stride` long; `sizes`
 * (NULL for tables without slack) holds the fill of each bucket. */
static inline int32_t bolt_lsh_select(int32_t active, int32_t least, int32_t n, int32_t tables, int32_t range,
                                      int32_t cap,
                                   int64_t stride, const int32_t *restrict keys, const int32_t *restrict offsets,
                                   const int32_t *restrict sizes, const int32_t *restrict ids,
                                   const int32_t *restrict order, const int32_t *restrict labels, int64_t n_labels,
                                   const int32_t *restrict common, int32_t n_common, uint32_t salt,
                                   uint8_t *restrict votes, int32_t *restrict candidates, int32_t *restrict chosen)
{
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

/* Group by neuron the entries of a [rows][row_length] matrix of neuron ids whose neuron falls in part `part`, the
 * ids part << part_shift .. (part + 1) << part_shift (so that the part's share of `slot` stays in cache), for weight
 * updates that one thread per part can apply without races: groups lists the part's distinct neurons in increasing
 * id order, so their rows are visited in address order (faster than random order on every memory system); entries
 * of group g are starts[g] .. starts[g+1]-1 of entry_rows (the batch row of each) and entry_coefs (its
 * coefficient), in batch order. slot [n] must be all zero for the part's neurons on entry and is so again on
 * return. Returns the number of groups. */
static inline int32_t bolt_group_entries(int32_t rows, int32_t row_length, int32_t n, const int32_t *restrict neuron,
                                         const real_t *restrict coef, int32_t part_shift, int32_t part,
                                         int32_t *restrict slot, int32_t *restrict groups, int32_t *restrict starts,
                                         int32_t *restrict entry_rows, real_t *restrict entry_coefs)
{
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
