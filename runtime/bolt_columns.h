/* boltc runtime: typed columns of CSV/TSV files turned into hashed sparse features, and string labels into ids.
 *
 * A generated module that reads typed columns defines `columns_featurize`, a switch over its inputs that calls the
 * featurizers below with the spec's values as constants, and includes this header after it. The reader walks the
 * file twice: a scan pass that validates every record, learns the label vocabulary and counts each input's entries
 * exactly, and a fill pass that writes them into arrays Python allocated at those sizes.
 *
 * Hashes are FNV-1a over the bytes followed by a 64-bit finaliser: the same on every platform and in every run
 * (tests recompute them in plain Python). Text is bytes: lowercasing touches ASCII letters only, and every byte of
 * a multi-byte UTF-8 character counts as part of a word, so words in any script hash whole.
 */
#ifndef BOLT_COLUMNS_H
#define BOLT_COLUMNS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* BOLT_COLUMNS_CDEF_BEGIN */
/* How a file writes its fields. CSV: RFC 4180, a field in double quotes may hold delimiters, line breaks and "" for a
 * quote. TSV: no quoting (a quote is an ordinary character), and a tab, line break or backslash inside a field is
 * written \t, \n, \r or \\ (IANA text/tab-separated-values, PostgreSQL COPY); any other backslash stays as written. */
enum { BOLT_QUOTING_CSV = 0, BOLT_QUOTING_TSV = 1 };

typedef struct bolt_text_format {
    int32_t delimiter; /* the byte between fields */
    int32_t quoting;   /* BOLT_QUOTING_* */
} bolt_text_format;

/* One pass over a CSV/TSV file's records (the header already read by the caller). */
typedef struct bolt_columns_job {
    int32_t fill;              /* 0: the scan pass (validate, learn labels, count); 1: the fill pass */
    bolt_text_format format;
    int32_t n_fields;          /* fields in every record: the header's count */
    int32_t n_inputs;          /* typed inputs of the model */
    const int32_t *input_field;/* [n_inputs] the field each input reads (a history's items: -1 when absent) */
    int32_t target_field;      /* the field holding the labels, -1 when the file has none */
    /* inputs made from other rows: their keys are hashed here, Python assembles the features */
    const int32_t *role;       /* [n_inputs] BOLT_ROLE_FEATURES, _HISTORY, _LINKS or _VALUE */
    const int32_t *key_field;  /* [n_inputs] history: the key (a user) whose earlier rows count; links: the row's node id */
    const int32_t *order_field;/* [n_inputs] history: the field that orders rows (a number or a date), -1: file order */
    const int32_t *link_delimiter; /* [n_inputs] links: the byte between the node ids of the input's field */
    uint64_t *const *row_keys; /* [n_inputs] -> uint64 [rows][2]: the key's hash, and a history's item's (0: empty) */
    double *const *row_order;  /* [n_inputs] -> double [rows]: a history's order value (the row number without one);
                                * a value input's number (NaN where its field is empty) */
    uint64_t *const *link_keys;/* [n_inputs] -> uint64 [entries[i]]: links' node id hashes, rows as in indptr[i] */
    int32_t label_delimiter;   /* multi-label fields: the byte between labels; 0: the whole field is one label */
    int64_t start;             /* byte offset of the first record */
    int64_t first_line;        /* its line number */
    /* counts: written by the scan pass, read by the fill pass */
    int64_t rows;
    int64_t *entries;          /* [n_inputs] stored entries of each input over all rows */
    int64_t labels;            /* label ids over all rows (known labels only, repeats in a row merged) */
    int64_t unknown_labels;    /* labels not in a fixed vocabulary: left out */
    /* the fill pass's outputs */
    int64_t *const *indptr;    /* [n_inputs] -> int64 [rows + 1] */
    int32_t *const *indices;   /* [n_inputs] -> int32 [entries[i]] */
    float *const *values;      /* [n_inputs] -> float [entries[i]] */
    int64_t *label_indptr;     /* [rows + 1] */
    int32_t *label_ids;        /* [labels] */
    /* the label vocabulary: strings in `arena`, entry e at arena[offset[e] .. offset[e] + length[e]) */
    int32_t grow;              /* 1: labels not yet known get the next id (scan pass only); 0: they are left out */
    int64_t vocab_size;        /* entries in use */
    int64_t vocab_capacity;    /* entries that offset / length hold */
    int64_t *vocab_offset;
    int32_t *vocab_length;
    char *arena;
    int64_t arena_used;
    int64_t arena_capacity;
    int32_t *slots;            /* [slot_count] open-addressing table of entry ids, -1 when empty */
    int64_t slot_count;        /* a power of two, more than twice vocab_capacity */
    /* the first problem met */
    int64_t error_line;
    int32_t error_field;       /* the field it was in, -1 for the record as a whole */
    char message[256];
    /* skip_bad_rows: a record with a bad field, or whose quoting is broken, is left out and counted instead (a
     * broken record ends at the end of the line where its problem was found) */
    int32_t skip_bad_rows;
    int64_t skipped;           /* records left out by this pass; the first one's line, field and problem: */
    int64_t first_skipped_line;
    int32_t first_skipped_field;
    char skipped_message[256];
} bolt_columns_job;

int bolt_columns_read(const char *data, int64_t size, bolt_columns_job *job);
int64_t bolt_columns_header(const char *data, int64_t size, bolt_text_format format, int32_t most_fields,
                            int32_t *n_fields, char *names, int64_t names_capacity, int64_t *name_length, char *message);
void bolt_history_ids(int64_t n, const uint64_t *items, const int32_t *positions, int64_t features, int32_t *bag,
                      int32_t *ordered);
/* BOLT_COLUMNS_CDEF_END */

/* BOLT_ROLE_VALUE: a numerical field read as its number, not featurized (what its bins are learned from) */
enum { BOLT_ROLE_FEATURES = 0, BOLT_ROLE_HISTORY = 1, BOLT_ROLE_LINKS = 2, BOLT_ROLE_VALUE = 3 };

#define BOLT_FNV_OFFSET 0xcbf29ce484222325ULL
#define BOLT_FNV_PRIME 0x100000001b3ULL
#define BOLT_PAIR_TOKENS 64 /* text(pairs=true) pairs the first this many tokens of a field */
#define BOLT_DATE_FEATURES 77 /* day of week 7, month 12, week of month 5, week of year 53 */

static inline uint64_t bolt_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

static inline int bolt_ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* FNV-1a of n bytes (ASCII letters lowercased when `lower`), finalised */
static inline uint64_t bolt_hash_bytes(const char *s, int64_t n, int lower)
{
    uint64_t h = BOLT_FNV_OFFSET;
    for (int64_t i = 0; i < n; ++i) {
        h ^= (uint8_t)(lower ? bolt_ascii_lower((uint8_t)s[i]) : (uint8_t)s[i]);
        h *= BOLT_FNV_PRIME;
    }
    return bolt_mix64(h);
}

/* Two hashes combined in order (a bigram, an element at a position). */
static inline uint64_t bolt_hash_pair(uint64_t first, uint64_t second)
{
    return bolt_mix64(first * 0x9E3779B97F4A7C15ULL + second);
}

/* (feature id, value) pairs of one row of one input, before sorting and merging. */
typedef struct bolt_sink {
    int32_t *ids;
    float *values;
    int64_t count, capacity;
    int failed; /* out of memory */
} bolt_sink;

static inline void bolt_sink_add(bolt_sink *sink, uint64_t hash, int64_t features, float value)
{
    if (sink->count == sink->capacity) {
        const int64_t grown = sink->capacity ? 2 * sink->capacity : 256;
        int32_t *ids = (int32_t *)realloc(sink->ids, (size_t)grown * sizeof(int32_t));
        float *values = ids ? (float *)realloc(sink->values, (size_t)grown * sizeof(float)) : NULL;
        if (!ids || !values) {
            if (ids)
                sink->ids = ids;
            sink->failed = 1;
            return;
        }
        sink->ids = ids;
        sink->values = values;
        sink->capacity = grown;
    }
    sink->ids[sink->count] = (int32_t)(hash % (uint64_t)features);
    sink->values[sink->count] = value;
    sink->count += 1;
}

static int bolt_compare_ids(const void *a, const void *b)
{
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sort the sink by id and sum the values of repeated ids in place; returns the distinct count. Sorting packs
 * (id, position) into one key so that equal ids keep their order and sums do not depend on the sort. */
static inline int64_t bolt_sink_merge(bolt_sink *sink, int64_t *keys)
{
    if (sink->count == 0) /* keys may then be NULL, which qsort must not see */
        return 0;
    for (int64_t i = 0; i < sink->count; ++i)
        keys[i] = ((int64_t)sink->ids[i] << 32) | i;
    qsort(keys, (size_t)sink->count, sizeof(int64_t), bolt_compare_ids);
    float *sorted_values = (float *)(keys + sink->count); /* the caller gave room for both */
    int64_t distinct = -1;
    int32_t last = -1;
    for (int64_t i = 0; i < sink->count; ++i) {
        const int32_t id = (int32_t)(keys[i] >> 32);
        const float value = sink->values[keys[i] & 0xffffffff];
        if (distinct < 0 || id != last) {
            distinct += 1;
            sink->ids[distinct] = last = id;
            sorted_values[distinct] = value;
        } else
            sorted_values[distinct] += value;
    }
    distinct += 1;
    memcpy(sink->values, sorted_values, (size_t)distinct * sizeof(float));
    return distinct;
}

static inline int bolt_is_word_byte(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

/* text(): unigrams; with ngrams == 2 also each pair of neighbouring tokens; with pairs every pair of tokens among
 * the first BOLT_PAIR_TOKENS (unordered). Each occurrence counts 1. */
static inline void bolt_text_features(const char *field, int64_t length, int32_t ngrams, int32_t pairs, int32_t lower,
                                      int64_t features, bolt_sink *sink)
{
    uint64_t previous = 0, pair_hashes[BOLT_PAIR_TOKENS];
    int64_t tokens = 0;
    for (int64_t i = 0; i < length;) {
        if (!bolt_is_word_byte((uint8_t)field[i])) {
            ++i;
            continue;
        }
        const int64_t begin = i;
        while (i < length && bolt_is_word_byte((uint8_t)field[i]))
            ++i;
        const uint64_t hash = bolt_hash_bytes(field + begin, i - begin, lower);
        bolt_sink_add(sink, hash, features, 1.0f);
        if (ngrams >= 2 && tokens > 0)
            bolt_sink_add(sink, bolt_hash_pair(previous, hash), features, 1.0f);
        if (pairs && tokens < BOLT_PAIR_TOKENS) {
            for (int64_t t = 0; t < tokens; ++t) {
                const uint64_t low = pair_hashes[t] < hash ? pair_hashes[t] : hash;
                const uint64_t high = pair_hashes[t] < hash ? hash : pair_hashes[t];
                bolt_sink_add(sink, bolt_hash_pair(low, high), features, 1.0f);
            }
            pair_hashes[tokens] = hash;
        }
        previous = hash;
        tokens += 1;
    }
}

/* [begin, end) without ASCII blanks at either end */
static inline void bolt_trim(const char *field, int64_t *begin, int64_t *end)
{
    while (*begin < *end && (field[*begin] == ' ' || field[*begin] == '\t' || field[*begin] == '\r'))
        ++*begin;
    while (*end > *begin && (field[*end - 1] == ' ' || field[*end - 1] == '\t' || field[*end - 1] == '\r'))
        --*end;
}

/* Calls visit(part, length, position, context) for every non-empty part of the field between delimiters (the
 * whole trimmed field when delimiter is 0); returns the number of parts. */
typedef void (*bolt_part_visitor)(const char *part, int64_t length, int64_t position, void *context);

static inline int64_t bolt_split(const char *field, int64_t length, int32_t delimiter, bolt_part_visitor visit,
                                 void *context)
{
    int64_t parts = 0;
    for (int64_t begin = 0; begin <= length;) {
        int64_t end = begin;
        while (end < length && (delimiter == 0 || field[end] != (char)delimiter))
            ++end;
        int64_t a = begin, b = end;
        bolt_trim(field, &a, &b);
        if (b > a) {
            if (visit)
                visit(field + a, b - a, parts, context);
            parts += 1;
        }
        begin = end + 1;
    }
    return parts;
}

typedef struct bolt_hashing_context {
    bolt_sink *sink;
    int64_t features;
    int64_t parts; /* sequence(): elements in the field, so that positions count from its end */
} bolt_hashing_context;

static void bolt_add_category(const char *part, int64_t length, int64_t position, void *context)
{
    bolt_hashing_context *c = (bolt_hashing_context *)context;
    (void)position;
    bolt_sink_add(c->sink, bolt_hash_bytes(part, length, 0), c->features, 1.0f);
}

static void bolt_add_element(const char *part, int64_t length, int64_t position, void *context)
{
    bolt_hashing_context *c = (bolt_hashing_context *)context;
    const uint64_t from_end = (uint64_t)(c->parts - 1 - position);
    bolt_sink_add(c->sink, bolt_hash_pair(bolt_hash_bytes(part, length, 0), from_end), c->features, 1.0f);
}

/* categorical(): the field (or each of its parts between delimiters), hashed whole */
static inline void bolt_categorical_features(const char *field, int64_t length, int32_t delimiter, int64_t features,
                                             bolt_sink *sink)
{
    bolt_hashing_context context = {sink, features, 0};
    bolt_split(field, length, delimiter, bolt_add_category, &context);
}

/* sequence(): each element hashed with its position counted from the end (0: the latest) */
static inline void bolt_sequence_features(const char *field, int64_t length, int32_t delimiter, int64_t features,
                                          bolt_sink *sink)
{
    bolt_hashing_context context = {sink, features, bolt_split(field, length, delimiter, NULL, NULL)};
    bolt_split(field, length, delimiter, bolt_add_element, &context);
}

/* A numerical field's value: 1 with *value set, 0 for an empty field (it adds nothing), or -1 with a message for
 * text that is not a finite number. */
static inline int bolt_number_of(const char *field, int64_t length, double *value, char *message)
{
    int64_t begin = 0, end = length;
    bolt_trim(field, &begin, &end);
    if (begin == end)
        return 0;
    char text[64];
    if (end - begin >= (int64_t)sizeof(text)) {
        snprintf(message, 256, "expected a number, got a field of %lld characters", (long long)(end - begin));
        return -1;
    }
    memcpy(text, field + begin, (size_t)(end - begin));
    text[end - begin] = 0;
    char *stop = NULL;
    *value = strtod(text, &stop);
    if (stop != text + (end - begin) || !isfinite(*value)) {
        snprintf(message, 256, "expected a finite number, got '%s'", text);
        return -1;
    }
    return 1;
}

/* numerical(binning=equal): one of `bins` equal bins over [low, high] (values outside go to the end bins); an empty
 * field adds nothing. Returns 0, or -1 with a message for text that is not a finite number. */
static inline int bolt_numerical_features(const char *field, int64_t length, int32_t bins, double low, double high,
                                          bolt_sink *sink, char *message)
{
    double value;
    const int found = bolt_number_of(field, length, &value, message);
    if (found <= 0)
        return found;
    /* halves: the same quotient, without overflow where the range spans most of a double's */
    double place = floor((value * 0.5 - low * 0.5) / (high * 0.5 - low * 0.5) * bins);
    place = !(place >= 0) ? 0 : place > bins - 1 ? bins - 1 : place; /* NaN: the first bin, never a cast of NaN */
    bolt_sink_add(sink, (uint64_t)place, bins, 1.0f);
    return 0;
}

/* numerical(binning=quantile): bin i holds the values in [edges[i - 1], edges[i]) of `n_edges` ascending inner edges
 * learned from the training data (bins beyond n_edges stay empty where the data had ties). */
static inline int bolt_quantile_features(const char *field, int64_t length, int32_t bins, int32_t n_edges,
                                         const double *edges, bolt_sink *sink, char *message)
{
    double value;
    const int found = bolt_number_of(field, length, &value, message);
    if (found <= 0)
        return found;
    int32_t low = 0, high = n_edges; /* the first edge above the value: its index is the bin */
    while (low < high) {
        const int32_t middle = low + (high - low) / 2;
        if (edges[middle] <= value)
            low = middle + 1;
        else
            high = middle;
    }
    bolt_sink_add(sink, (uint64_t)(low < bins ? low : bins - 1), bins, 1.0f);
    return 0;
}

static inline int bolt_leap_year(int64_t year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* Days from 1970-01-01 to the given date of the proleptic Gregorian calendar. */
static inline int64_t bolt_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t year_of_era = y - era * 400;
    const int64_t day_of_year = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

/* date(): YYYY-MM-DD (anything after the day, such as a time, is ignored) -> day of week (Monday first), month,
 * week of month ((day - 1) / 7) and week of year ((day of year - 1) / 7), one-hot in consecutive ranges. An empty
 * field adds nothing. Returns 0, or -1 with a message. */
static inline int bolt_date_features(const char *field, int64_t length, bolt_sink *sink, char *message)
{
    int64_t begin = 0, end = length;
    bolt_trim(field, &begin, &end);
    if (begin == end)
        return 0;
    int64_t number[3] = {0, 0, 0};
    const int widths[3] = {4, 2, 2};
    int64_t at = begin;
    for (int part = 0; part < 3; ++part) {
        if (part > 0) {
            if (at >= end || field[at] != '-')
                goto malformed;
            ++at;
        }
        for (int digit = 0; digit < widths[part]; ++digit, ++at) {
            if (at >= end || field[at] < '0' || field[at] > '9')
                goto malformed;
            number[part] = number[part] * 10 + (field[at] - '0');
        }
    }
    if (at < end && field[at] >= '0' && field[at] <= '9')
        goto malformed;
    {
        const int64_t year = number[0], month = number[1], day = number[2];
        static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (month < 1 || month > 12 || day < 1 || day > month_days[month - 1] + (month == 2 && bolt_leap_year(year))) {
            snprintf(message, 256, "no such date: %04lld-%02lld-%02lld", (long long)year, (long long)month,
                     (long long)day);
            return -1;
        }
        const int64_t days = bolt_days_from_civil(year, month, day);
        const int64_t weekday = ((days % 7) + 7 + 3) % 7; /* 1970-01-01 was a Thursday */
        const int64_t day_of_year = days - bolt_days_from_civil(year, 1, 1);
        bolt_sink_add(sink, (uint64_t)weekday, BOLT_DATE_FEATURES, 1.0f);
        bolt_sink_add(sink, (uint64_t)(7 + month - 1), BOLT_DATE_FEATURES, 1.0f);
        bolt_sink_add(sink, (uint64_t)(19 + (day - 1) / 7), BOLT_DATE_FEATURES, 1.0f);
        bolt_sink_add(sink, (uint64_t)(24 + day_of_year / 7), BOLT_DATE_FEATURES, 1.0f);
        return 0;
    }
malformed:
    snprintf(message, 256, "expected a date as YYYY-MM-DD, got '%.*s'", (int)(end - begin < 40 ? end - begin : 40),
             field + begin);
    return -1;
}

/* A history input's order field: a number, or a date as YYYY-MM-DD (days since 1970); 0, or -1 with a message. */
static inline int bolt_order_key(const char *field, int64_t length, double *key, char *message)
{
    int64_t begin = 0, end = length;
    bolt_trim(field, &begin, &end);
    char text[64];
    if (begin < end && end - begin < (int64_t)sizeof(text)) {
        memcpy(text, field + begin, (size_t)(end - begin));
        text[end - begin] = 0;
        char *stop = NULL;
        const double value = strtod(text, &stop);
        if (stop == text + (end - begin) && isfinite(value)) {
            *key = value;
            return 0;
        }
        bolt_sink probe = {NULL, NULL, 0, 0, 0};
        const int status = bolt_date_features(field, length, &probe, message);
        free(probe.ids);
        free(probe.values);
        if (status == 0 && end - begin >= 10) {
            const int64_t y = (text[0] - '0') * 1000 + (text[1] - '0') * 100 + (text[2] - '0') * 10 + (text[3] - '0');
            *key = (double)bolt_days_from_civil(y, (text[5] - '0') * 10 + (text[6] - '0'),
                                                (text[8] - '0') * 10 + (text[9] - '0'));
            return 0;
        }
    }
    snprintf(message, 256, "expected a number or a date (YYYY-MM-DD) to order rows by, got '%.*s'",
             (int)(end - begin < 40 ? end - begin : 40), field + begin);
    return -1;
}

typedef struct bolt_link_context {
    uint64_t *out;
} bolt_link_context;

static void bolt_add_link(const char *part, int64_t length, int64_t position, void *context)
{
    bolt_link_context *c = (bolt_link_context *)context;
    c->out[position] = bolt_hash_bytes(part, length, 0);
}

/* ---- reading records --------------------------------------------------------------------------------------- */

/* The spec's featurizer switch (generated): the features of input `input` from one field; 0, or -1 with a message. */
static int columns_featurize(int32_t input, const char *field, int64_t length, bolt_sink *sink, char *message);

#define BOLT_COLUMNS_VOCABULARY_FULL (-2)

/* One record's fields: unquoted ones point into the file, quoted ones into `unquoted` with "" made ". */
typedef struct bolt_record {
    const char **field;
    int64_t *length;
    int32_t count, most;
    char *unquoted;
    int64_t unquoted_capacity;
} bolt_record;

static int bolt_record_room(bolt_record *record, int64_t bytes)
{
    if (bytes <= record->unquoted_capacity)
        return 0;
    char *grown = (char *)realloc(record->unquoted, (size_t)bytes);
    if (!grown)
        return -1;
    record->unquoted = grown;
    record->unquoted_capacity = bytes;
    return 0;
}

/* A TSV field's bytes [begin, end) with its escapes decoded into `out`; returns the decoded length. */
static int64_t bolt_unescape(const char *data, int64_t begin, int64_t end, char *out)
{
    int64_t n = 0;
    for (int64_t p = begin; p < end; ++p) {
        if (data[p] == '\\' && p + 1 < end) {
            const char next = data[p + 1];
            const char decoded = next == 't' ? '\t' : next == 'n' ? '\n' : next == 'r' ? '\r' : next == '\\' ? '\\' : 0;
            if (decoded) {
                out[n++] = decoded;
                ++p;
                continue;
            }
        }
        out[n++] = data[p];
    }
    return n;
}

/* A "quoted" CSV field from the quote at *at: unescaped into `out` (`room` bytes; "" made "), its length in *length;
 * *at past the closing quote and *line by the newlines inside. Returns 0, or -1 with a message (and *at at the problem). */
static int bolt_read_quoted(const char *data, int64_t size, int64_t *at, int64_t *line, char *out, int64_t room,
                            int64_t *length, char *message)
{
    int64_t n = 0, p = *at + 1;
    const int64_t opened = *line;
    for (;; ++p) {
        if (n == room) { /* cannot happen while bolt_record_extent reads as this does; never write past the room */
            snprintf(message, 256, "a quoted field opened on line %lld is longer than its record", (long long)opened);
            return -1;
        }
        if (p >= size) {
            snprintf(message, 256, "a quoted field opened on line %lld never closes", (long long)opened);
            return -1; /* *at stays at the opening quote: the record is broken from there */
        }
        if (data[p] == '"') {
            if (p + 1 < size && data[p + 1] == '"') {
                out[n++] = '"';
                ++p;
                continue;
            }
            break;
        }
        if (data[p] == '\n')
            *line += 1;
        out[n++] = data[p];
    }
    *at = p + 1;
    *length = n;
    return 0;
}

/* Reads the record at *at in `format`; a line may end in CRLF. Advances *at past it and *line by the newlines read.
 * Returns 0, or -1 with a message and *at where the problem was found. Quoted or escaped fields are decoded into the
 * record's buffer, whose room the caller made for the whole record; the others point into the file. */
static int bolt_read_record(const char *data, int64_t size, int64_t *at, int64_t *line, bolt_text_format format,
                            bolt_record *record, char *message)
{
    const char delimiter = (char)format.delimiter;
    int64_t p = *at, written = 0;
    record->count = 0;
    for (;;) {
        if (record->count == record->most) {
            const int quoted = format.quoting == BOLT_QUOTING_TSV && memchr(data + *at, '"', (size_t)(p - *at));
            snprintf(message, 256, "more than %d fields%s", record->most,
                     quoted ? " (quotes are text in TSV: a file with CSV quoting reads with quoting 'csv')" : "");
            *at = p;
            return -1;
        }
        const int32_t f = record->count++;
        if (format.quoting == BOLT_QUOTING_CSV && p < size && data[p] == '"') {
            char *out = record->unquoted + written;
            const int64_t room = record->unquoted_capacity - written;
            if (bolt_read_quoted(data, size, &p, line, out, room, &record->length[f], message) != 0) {
                *at = p;
                return -1;
            }
            record->field[f] = out;
            written += record->length[f];
            if (p < size && data[p] == '\r' && (p + 1 == size || data[p + 1] == '\n'))
                ++p;
            if (p < size && data[p] != delimiter && data[p] != '\n') {
                snprintf(message, 256, "field %d: expected a delimiter or the end of the line after a closing quote, "
                         "got '%c' (a file whose quotes are ordinary characters reads with quoting 'tsv')", f + 1,
                         data[p] >= 32 && data[p] < 127 ? data[p] : '?');
                *at = p;
                return -1;
            }
        } else {
            const int64_t begin = p;
            int escaped = 0;
            while (p < size && data[p] != delimiter && data[p] != '\n')
                escaped |= data[p++] == '\\';
            int64_t end = p;
            if (end > begin && data[end - 1] == '\r' && (p == size || data[p] == '\n'))
                --end;
            if (escaped && format.quoting == BOLT_QUOTING_TSV) {
                char *out = record->unquoted + written;
                record->field[f] = out;
                record->length[f] = bolt_unescape(data, begin, end, out);
                written += record->length[f];
            } else {
                record->field[f] = data + begin;
                record->length[f] = end - begin;
            }
        }
        if (p >= size || data[p] == '\n') {
            if (p < size) {
                ++p;
                *line += 1;
            }
            *at = p;
            return 0;
        }
        ++p; /* past the delimiter */
    }
}

/* Where the record at `at` ends: past its newline, read as bolt_read_record reads it (in CSV, a quote opens quoting
 * only at the start of a field, "" stays inside, and a line break inside quotes does not end the record), so that
 * the room made from it holds every decoded field: decoding never writes more bytes than it reads. */
static int64_t bolt_record_extent(const char *data, int64_t size, int64_t at, bolt_text_format format)
{
    if (format.quoting == BOLT_QUOTING_TSV) {
        const char *newline = (const char *)memchr(data + at, '\n', (size_t)(size - at));
        return newline ? newline - data : size;
    }
    int quoted = 0, field_start = 1;
    for (; at < size; ++at) {
        const char c = data[at];
        if (quoted) {
            if (c == '"' && at + 1 < size && data[at + 1] == '"')
                ++at;
            else if (c == '"')
                quoted = 0;
            continue;
        }
        if (c == '\n')
            break;
        quoted = c == '"' && field_start;
        field_start = c == (char)format.delimiter;
    }
    return at;
}

/* The header record (after a UTF-8 byte order mark, if any): its field count in *n_fields, its names one after
 * another in `names` (quotes resolved; name f is name_length[f] bytes long); returns the offset of the first
 * record, or -1 with a message. */
int64_t bolt_columns_header(const char *data, int64_t size, bolt_text_format format, int32_t most_fields,
                            int32_t *n_fields, char *names, int64_t names_capacity, int64_t *name_length, char *message)
{
    int64_t at = size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0, line = 1;
    const char **fields = (const char **)malloc(sizeof(char *) * (size_t)most_fields + 1);
    bolt_record record = {fields, name_length, 0, most_fields, NULL, 0};
    int status = -1;
    *n_fields = 0;
    if (!fields || bolt_record_room(&record, bolt_record_extent(data, size, at, format) - at + 1) != 0)
        snprintf(message, 256, "out of memory");
    else
        status = bolt_read_record(data, size, &at, &line, format, &record, message);
    int64_t written = 0;
    for (int32_t f = 0; status == 0 && f < record.count; ++f) {
        if (written + name_length[f] > names_capacity) {
            snprintf(message, 256, "the header is longer than %lld bytes", (long long)names_capacity);
            status = -1;
            break;
        }
        memcpy(names + written, fields[f], (size_t)name_length[f]);
        written += name_length[f];
    }
    free(fields);
    free(record.unquoted);
    if (status == 0)
        *n_fields = record.count;
    return status == 0 ? at : -1;
}

static int64_t bolt_vocab_find(const bolt_columns_job *job, const char *label, int64_t length, uint64_t hash,
                               int64_t *slot)
{
    const uint64_t mask = (uint64_t)job->slot_count - 1;
    for (uint64_t s = hash & mask;; s = (s + 1) & mask) {
        const int32_t entry = job->slots[s];
        if (entry < 0) {
            *slot = (int64_t)s;
            return -1;
        }
        if (job->vocab_length[entry] == length && memcmp(job->arena + job->vocab_offset[entry], label, (size_t)length) == 0)
            return entry;
    }
}

/* The id of a label, adding it when the vocabulary grows; -1 for an unknown label of a fixed vocabulary,
 * BOLT_COLUMNS_VOCABULARY_FULL when there is no room to add it. */
static int64_t bolt_vocab_id(bolt_columns_job *job, const char *label, int64_t length)
{
    int64_t slot;
    const int64_t found = bolt_vocab_find(job, label, length, bolt_hash_bytes(label, length, 0), &slot);
    if (found >= 0 || !job->grow || job->fill)
        return found;
    if (job->vocab_size == job->vocab_capacity || job->arena_used + length > job->arena_capacity)
        return BOLT_COLUMNS_VOCABULARY_FULL;
    memcpy(job->arena + job->arena_used, label, (size_t)length);
    job->vocab_offset[job->vocab_size] = job->arena_used;
    job->vocab_length[job->vocab_size] = (int32_t)length;
    job->arena_used += length;
    job->slots[slot] = (int32_t)job->vocab_size;
    return job->vocab_size++;
}

/* Bytes of valid UTF-8 at the start of s (n when all of it is). */
/* The length of the longest prefix of s that is well-formed UTF-8 (Unicode's table 3-7: no overlong forms, no
 * surrogates, nothing past U+10FFFF), so that whatever C accepts, Python's strict decoder accepts too. */
static int64_t bolt_utf8_valid(const char *s, int64_t n)
{
    for (int64_t i = 0; i < n;) {
        const uint8_t c = (uint8_t)s[i];
        int extra;
        uint8_t low = 0x80, high = 0xBF; /* the range of the second byte; later ones are 80..BF */
        if (c < 0x80)
            extra = 0;
        else if (c >= 0xC2 && c <= 0xDF)
            extra = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            low = c == 0xE0 ? 0xA0 : 0x80;
            high = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            low = c == 0xF0 ? 0x90 : 0x80;
            high = c == 0xF4 ? 0x8F : 0xBF;
        } else
            return i;
        if (extra > n - i - 1)
            return i;
        for (int k = 1; k <= extra; ++k) {
            const uint8_t next = (uint8_t)s[i + k];
            if (next < (k == 1 ? low : 0x80) || next > (k == 1 ? high : 0xBF))
                return i;
        }
        i += extra + 1;
    }
    return n;
}

typedef struct bolt_label_context {
    bolt_columns_job *job;
    int32_t *ids;
    int64_t count;
    int status;
} bolt_label_context;

static void bolt_add_label(const char *part, int64_t length, int64_t position, void *context)
{
    bolt_label_context *c = (bolt_label_context *)context;
    (void)position;
    if (c->status != 0)
        return;
    if (bolt_utf8_valid(part, length) != length) {
        snprintf(c->job->message, 256, "a label is not UTF-8 text");
        c->status = -1;
        return;
    }
    const int64_t id = bolt_vocab_id(c->job, part, length);
    if (id == BOLT_COLUMNS_VOCABULARY_FULL)
        c->status = BOLT_COLUMNS_VOCABULARY_FULL;
    else if (id < 0)
        c->job->unknown_labels += !c->job->fill;
    else
        c->ids[c->count++] = (int32_t)id;
}

static int bolt_compare_int32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int bolt_field_count_problem(bolt_columns_job *job, int32_t count)
{
    if (count == job->n_fields)
        return 0;
    snprintf(job->message, 256, "%d fields, but the header has %d", count, job->n_fields);
    return -1;
}

static void bolt_check_label(const char *part, int64_t length, int64_t position, void *context)
{
    int *bad = (int *)context;
    (void)position;
    if (!*bad && bolt_utf8_valid(part, length) != length)
        *bad = 1;
}

/* Whether reading the record would fail on one of its fields, found without changing anything (no label is
 * learned, nothing is counted or written), so that skip_bad_rows leaves a record out before any of it is used.
 * Sets the message and *field as the reading loop would. Running out of memory is not the record's fault: it is
 * left to the loop. */
static int bolt_record_problem(bolt_columns_job *job, const char **fields, const int64_t *lengths, int32_t count,
                               bolt_sink *sink, int32_t *field)
{
    *field = -1;
    if (bolt_field_count_problem(job, count) != 0)
        return -1;
    for (int32_t i = 0; i < job->n_inputs; ++i) {
        const int32_t f = job->input_field[i], of = job->order_field[i];
        double order;
        if (job->role[i] == BOLT_ROLE_HISTORY && of >= 0 &&
            bolt_order_key(fields[of], lengths[of], &order, job->message) != 0) {
            *field = of;
            return -1;
        }
        sink->count = 0;
        if (job->role[i] == BOLT_ROLE_FEATURES && columns_featurize(i, fields[f], lengths[f], sink, job->message) != 0) {
            *field = f;
            return -1;
        }
        if (job->role[i] == BOLT_ROLE_VALUE && bolt_number_of(fields[f], lengths[f], &order, job->message) < 0) {
            *field = f;
            return -1;
        }
    }
    if (job->target_field >= 0) {
        int bad = 0;
        bolt_split(fields[job->target_field], lengths[job->target_field], job->label_delimiter, bolt_check_label, &bad);
        if (bad) {
            snprintf(job->message, 256, "a label is not UTF-8 text");
            *field = job->target_field;
            return -1;
        }
    }
    return 0;
}

/* skip_bad_rows: the record at `line` is left out, counted, and remembered with its problem if it is the first. */
static void bolt_skip_record(bolt_columns_job *job, int64_t line, int32_t field)
{
    if (job->skipped++ == 0) {
        job->first_skipped_line = line;
        job->first_skipped_field = field;
        memcpy(job->skipped_message, job->message, sizeof job->skipped_message);
    }
    job->message[0] = 0;
}

int bolt_columns_read(const char *data, int64_t size, bolt_columns_job *job)
{
    int status = 0;
    const char **fields = (const char **)malloc(sizeof(char *) * (size_t)job->n_fields + 1);
    int64_t *lengths = (int64_t *)malloc(sizeof(int64_t) * (size_t)job->n_fields + 1);
    bolt_record record = {fields, lengths, 0, job->n_fields, NULL, 0};
    bolt_sink sink = {NULL, NULL, 0, 0, 0};
    int64_t *keys = NULL, key_room = 0;
    int32_t *label_ids = NULL;
    int64_t at = job->start, line = job->first_line, row = 0, labels = 0;
    job->error_line = 0;
    job->error_field = -1;
    job->message[0] = 0;
    job->skipped = 0;
    if (!fields || !lengths)
        goto out_of_memory;
    if (!job->fill) {
        for (int32_t i = 0; i < job->n_inputs; ++i)
            job->entries[i] = 0;
        job->unknown_labels = 0;
        for (int64_t s = 0; s < job->slot_count; ++s) /* the table of the names already known */
            job->slots[s] = -1;
        for (int64_t e = 0; e < job->vocab_size; ++e) {
            int64_t slot;
            const char *known = job->arena + job->vocab_offset[e];
            if (bolt_vocab_find(job, known, job->vocab_length[e], bolt_hash_bytes(known, job->vocab_length[e], 0), &slot) < 0)
                job->slots[slot] = (int32_t)e;
        }
    } else {
        for (int32_t i = 0; i < job->n_inputs; ++i)
            job->indptr[i][0] = 0;
        if (job->label_indptr)
            job->label_indptr[0] = 0;
    }
    while (at < size) {
        const int64_t record_line = line;
        if (data[at] == '\n' || (data[at] == '\r' && at + 1 < size && data[at + 1] == '\n')) { /* blank line */
            at += data[at] == '\r' ? 2 : 1;
            line += 1;
            continue;
        }
        if (bolt_record_room(&record, bolt_record_extent(data, size, at, job->format) - at + 1) != 0)
            goto out_of_memory;
        const int64_t record_at = at;
        if (bolt_read_record(data, size, &at, &line, job->format, &record, job->message) != 0) {
            if (!job->skip_bad_rows) {
                status = -1;
                job->error_line = record_line;
                break;
            }
            /* the broken record ends with the line its problem is on; the next record starts after it */
            const char *newline = (const char *)memchr(data + at, '\n', (size_t)(size - at));
            at = newline ? newline - data + 1 : size;
            line = record_line;
            for (int64_t p = record_at; p < at; ++p)
                line += data[p] == '\n';
            bolt_skip_record(job, record_line, -1);
            continue;
        }
        int32_t bad_field;
        if (job->skip_bad_rows && bolt_record_problem(job, fields, lengths, record.count, &sink, &bad_field) != 0) {
            bolt_skip_record(job, record_line, bad_field);
            continue;
        }
        if (bolt_field_count_problem(job, record.count) != 0) {
            status = -1;
            job->error_line = record_line;
            break;
        }
        for (int32_t i = 0; i < job->n_inputs && status == 0; ++i) {
            const int32_t f = job->input_field[i];
            if (job->role[i] == BOLT_ROLE_VALUE) {
                double value = NAN;
                if (bolt_number_of(fields[f], lengths[f], &value, job->message) < 0) {
                    job->error_field = f;
                    job->error_line = record_line;
                    status = -1;
                    break;
                }
                if (job->fill) {
                    job->row_order[i][row] = value;
                    job->indptr[i][row + 1] = 0;
                }
                continue;
            }
            if (job->role[i] != BOLT_ROLE_FEATURES) {
                const int32_t kf = job->key_field[i], of = job->order_field[i];
                double order = (double)row;
                if (job->role[i] == BOLT_ROLE_HISTORY && of >= 0 &&
                    bolt_order_key(fields[of], lengths[of], &order, job->message) != 0) {
                    job->error_field = of;
                    job->error_line = record_line;
                    status = -1;
                    break;
                }
                int64_t a = 0, b = lengths[kf], c = 0, d = f >= 0 ? lengths[f] : 0;
                bolt_trim(fields[kf], &a, &b);
                if (f >= 0) /* a history's items may be missing from a file of rows to predict */
                    bolt_trim(fields[f], &c, &d);
                if (job->role[i] == BOLT_ROLE_LINKS) {
                    bolt_link_context links = {job->fill ? job->link_keys[i] + job->indptr[i][row] : NULL};
                    const int64_t count = bolt_split(fields[f], lengths[f], job->link_delimiter[i],
                                                     job->fill ? bolt_add_link : NULL, &links);
                    if (job->fill)
                        job->indptr[i][row + 1] = job->indptr[i][row] + count;
                    else
                        job->entries[i] += count;
                }
                if (job->fill) {
                    job->row_keys[i][2 * row] = bolt_hash_bytes(fields[kf] + a, b - a, 0);
                    job->row_keys[i][2 * row + 1] =
                        job->role[i] == BOLT_ROLE_HISTORY && d > c ? bolt_hash_bytes(fields[f] + c, d - c, 0) : 0;
                    job->row_order[i][row] = order;
                    if (job->role[i] == BOLT_ROLE_HISTORY)
                        job->indptr[i][row + 1] = 0;
                }
                continue;
            }
            sink.count = 0;
            if (columns_featurize(i, fields[f], lengths[f], &sink, job->message) != 0) {
                job->error_field = f;
                status = -1;
            } else if (sink.failed)
                goto out_of_memory;
            if (status != 0) {
                job->error_line = record_line;
                break;
            }
            if (2 * sink.count > key_room) {
                free(keys);
                key_room = 2 * sink.count;
                keys = (int64_t *)malloc(sizeof(int64_t) * (size_t)key_room);
                if (!keys)
                    goto out_of_memory;
            }
            const int64_t distinct = bolt_sink_merge(&sink, keys);
            if (!job->fill)
                job->entries[i] += distinct;
            else {
                const int64_t begin = job->indptr[i][row];
                if (distinct) { /* the sink's arrays are NULL until its first entry */
                    memcpy(job->indices[i] + begin, sink.ids, sizeof(int32_t) * (size_t)distinct);
                    memcpy(job->values[i] + begin, sink.values, sizeof(float) * (size_t)distinct);
                }
                job->indptr[i][row + 1] = begin + distinct;
            }
        }
        if (status != 0)
            break;
        if (job->target_field >= 0) {
            const int32_t f = job->target_field;
            label_ids = (int32_t *)realloc(label_ids, sizeof(int32_t) * (size_t)(lengths[f] / 1 + 1));
            if (!label_ids)
                goto out_of_memory;
            bolt_label_context context = {job, label_ids, 0, 0};
            bolt_split(fields[f], lengths[f], job->label_delimiter, bolt_add_label, &context);
            if (context.status != 0) {
                status = context.status;
                job->error_field = f;
                job->error_line = record_line;
                break;
            }
            qsort(label_ids, (size_t)context.count, sizeof(int32_t), bolt_compare_int32);
            int64_t distinct = 0;
            for (int64_t k = 0; k < context.count; ++k)
                if (k == 0 || label_ids[k] != label_ids[k - 1])
                    label_ids[distinct++] = label_ids[k];
            if (job->fill) {
                memcpy(job->label_ids + labels, label_ids, sizeof(int32_t) * (size_t)distinct);
                job->label_indptr[row + 1] = labels + distinct;
            }
            labels += distinct;
        }
        row += 1;
    }
    if (status == 0 && !job->fill) {
        job->rows = row;
        job->labels = labels;
    }
    goto done;
out_of_memory:
    status = -1;
    job->error_line = line;
    snprintf(job->message, 256, "out of memory while reading");
done:
    free(fields);
    free(lengths);
    free(record.unquoted);
    free(sink.ids);
    free(sink.values);
    free(keys);
    free(label_ids);
    return status;
}

/* A history's entries: each earlier item as itself (bag[e]) and at its position counted from the latest
 * (ordered[e]), both hashed into `features` ids. */
void bolt_history_ids(int64_t n, const uint64_t *items, const int32_t *positions, int64_t features, int32_t *bag,
                      int32_t *ordered)
{
    for (int64_t e = 0; e < n; ++e) {
        bag[e] = (int32_t)(items[e] % (uint64_t)features);
        ordered[e] = (int32_t)(bolt_hash_pair(items[e], (uint64_t)positions[e]) % (uint64_t)features);
    }
}

#endif /* BOLT_COLUMNS_H */
