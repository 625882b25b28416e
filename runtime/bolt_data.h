/* boltc runtime: read extreme-classification (XMC) and libsvm text data into CSR arrays that Python owns.
 *
 * The format, one row per line, every id 0-based:
 *
 *     N_ROWS N_FEATURES N_LABELS        optional header: the first non-empty line, if it has no ':' and 2+ fields
 *     l1,l2,... f:v f:v ...             a row: comma-separated labels (the field may be empty: the line then
 *                                       starts with a blank or with a feature), then id:value feature entries
 *
 * Fields are separated by spaces or tabs. Empty and blank-only lines are skipped but counted for line numbers;
 * "\r\n" line ends are accepted, and so is a last line without a newline. A row's features may come in any order;
 * the output holds each row's features (and labels) sorted by id, and the same id twice in one row is an error.
 *
 * Reading takes two passes over the file's bytes. bolt_data_scan validates everything and counts rows, entries
 * and labels, so that Python can allocate arrays of the exact size (nothing here allocates); bolt_data_fill parses
 * again and writes them. Parsing twice costs less than growing arrays, and the scan finds every error before any
 * memory is spent. Both passes cut the bytes into chunks of whole lines that OpenMP threads handle independently;
 * a chunk's place in the output comes from prefix sums over the scan's counts, so the arrays and the error that
 * is reported do not depend on the number of threads. The error is the first one in the file, with one exception:
 * an id repeated in a row whose ids are out of order is only seen when the fill pass sorts the row, after the scan
 * has accepted the whole file (the scan has no memory to remember a row's ids in).
 *
 * The buffer is not NUL-terminated: every read is bounded by an end pointer. Numbers are parsed here and not with
 * strtol/strtof, which need a terminator and follow the C locale (a decimal comma would break "0.5").
 */
#ifndef BOLT_DATA_H
#define BOLT_DATA_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* BOLT_CDEF_BEGIN */
/* A run of whole lines that one thread scans and then fills. Set up by bolt_data_scan; Python only reads it. */
typedef struct bolt_data_chunk {
    int64_t begin;           /* byte offset of the chunk's first line */
    int64_t end;             /* byte offset just past its last line */
    int64_t first_line;      /* 1-based line number of its first line */
    int64_t lines;           /* lines in the chunk, empty ones included */
    int64_t rows;            /* data rows (non-empty lines) */
    int64_t entries;         /* feature entries */
    int64_t labels;          /* label ids */
    int64_t row_offset;      /* the chunk's first row, entry and label in the whole output */
    int64_t entry_offset;
    int64_t label_offset;
    int64_t max_feature_id;  /* -1 when the chunk has no entries */
    int64_t max_label_id;    /* -1 when it has no labels */
    int64_t max_row_entries;
    int64_t max_row_labels;
    int64_t error_line;      /* line of the error, counted from the chunk's first line (1-based) */
    int64_t skipped;         /* rows left out for their errors (skip_bad_rows); message holds the first one's */
    int64_t first_skipped;   /* its line, counted like error_line */
    int32_t status;          /* 0, or a BOLT_DATA_* error code */
    char message[256];
} bolt_data_chunk;

/* Inputs and results of one read. Zero it, set the three inputs, call bolt_data_scan, allocate the arrays it
 * counted, call bolt_data_fill with the same info. */
typedef struct bolt_data_info {
    /* inputs */
    int64_t n_features;      /* feature ids must be below this; 0 = not known (a header then sets it) */
    int64_t n_labels;        /* likewise for label ids */
    int32_t threads;         /* 0: OpenMP's default. Also sets how many chunks the file is cut into */
    int32_t skip_bad_rows;   /* 1: a row that breaks the format is left out and counted instead of an error */
    int32_t part;            /* BOLT_DATA_WHOLE_FILE, or a part of a file read in pieces (boltc/streaming.py):
                              * BOLT_DATA_FIRST_PART may open with the header, whose row count is then checked by
                              * the caller; a BOLT_DATA_LATER_PART has none */
    /* results */
    int32_t status;          /* 0 when all is well, else a BOLT_DATA_* error code; message says what is wrong */
    int64_t error_line;      /* 1-based line of the error, 0 when it concerns no line */
    char message[256];
    int32_t has_header;
    int64_t header_rows;
    int64_t header_features;
    int64_t header_labels;
    int64_t lines;           /* lines in the file, empty ones and the header included */
    int64_t rows;            /* data rows: the arrays hold rows + 1 row pointers */
    int64_t entries;         /* feature entries: length of indices and values */
    int64_t labels;          /* label ids: length of label_ids */
    int64_t max_feature_id;  /* largest feature id seen, -1 when there are no entries */
    int64_t max_label_id;    /* largest label id seen, -1 when there are no labels */
    int64_t max_row_entries; /* most feature entries in one row */
    int64_t max_row_labels;  /* most labels in one row */
    int64_t skipped_rows;    /* with skip_bad_rows: rows left out; message then tells the first one's error */
    int64_t first_skipped_line;
    int32_t n_chunks;
    bolt_data_chunk chunks[64];
} bolt_data_info;

enum { BOLT_DATA_WHOLE_FILE = 0, BOLT_DATA_FIRST_PART = 1, BOLT_DATA_LATER_PART = 2 };

/* Both return info->status. The buffer needs no terminating NUL. */
int bolt_data_scan(const char *data, int64_t size, bolt_data_info *info);
/* indptr and label_indptr hold rows + 1 values; label_indptr and label_ids may both be NULL to skip labels. */
int bolt_data_fill(const char *data, int64_t size, bolt_data_info *info, int64_t *indptr, int32_t *indices,
                   float *values, int64_t *label_indptr, int32_t *label_ids);
/* BOLT_CDEF_END */

enum bolt_data_status {
    BOLT_DATA_OK = 0,
    BOLT_DATA_INVALID = 1,      /* the text breaks the format; error_line and message say where and how */
    BOLT_DATA_CHANGED = 2,      /* the fill pass found other counts than the scan: the bytes changed between them */
    BOLT_DATA_BAD_ARGUMENT = 3, /* a caller's mistake: NULL pointers, fill without a clean scan, bad limits */
    BOLT_DATA_NO_MEMORY = 4     /* the scan of skip_bad_rows could not allocate room to check a row */
};

#define BOLT_DATA_MAX_CHUNKS ((int32_t)(sizeof(((bolt_data_info *)0)->chunks) / sizeof(bolt_data_chunk)))
/* Smaller chunks would cost more in thread hand-offs than they gain in balance. */
#define BOLT_DATA_MIN_CHUNK_BYTES ((int64_t)256 * 1024)
#define BOLT_DATA_ID_MAX ((int64_t)INT32_MAX)
/* FLT_MAX plus half an ulp: a double at or above this rounds to infinity as a float32. */
#define BOLT_DATA_FLOAT_LIMIT 0x1.ffffffp+127

/* ---- messages ------------------------------------------------------------------------------------------- */

/* How one parse reports and where the fill pass writes. One per chunk, so threads share nothing. */
typedef struct bolt_data_reader {
    int64_t n_features;     /* -1: no limit known */
    int64_t n_labels;
    int unterminated;       /* the line being parsed is the last one and has no '\n' */
    char *message;
    size_t message_size;
    int filling;            /* 0 in the scan pass: nothing below is used */
    int32_t *indices;
    float *values;
    int32_t *label_ids;     /* NULL also when the caller skips labels: they are then counted but not stored */
    int64_t entry_pos, entry_end;
    int64_t label_pos, label_end;
} bolt_data_reader;

/* A token, printable and bounded, for quoting in a message. */
typedef struct bolt_data_quote {
    char text[48];
} bolt_data_quote;

static inline bolt_data_quote bolt_data_quoted(const char *p, const char *e)
{
    bolt_data_quote q;
    size_t n = 0;
    const size_t room = sizeof q.text - 4; /* keeps space for "..." and the NUL */
    for (; p < e; ++p) {
        unsigned char c = (unsigned char)*p;
        size_t width = (c >= 0x20 && c < 0x7f) ? 1 : 4;
        if (n + width > room)
            break;
        if (width == 1) {
            q.text[n++] = (char)c;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            q.text[n++] = '\\';
            q.text[n++] = 'x';
            q.text[n++] = hex[c >> 4];
            q.text[n++] = hex[c & 15];
        }
    }
    if (p < e) {
        memcpy(q.text + n, "...", 3);
        n += 3;
    }
    q.text[n] = '\0';
    return q;
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static inline int bolt_data_fail(bolt_data_reader *r, int syntax, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    int n = vsnprintf(r->message, r->message_size, format, args);
    va_end(args);
    /* A syntax error on a last line without a newline is most often a file cut short by a failed copy. */
    if (syntax && r->unterminated && n >= 0 && (size_t)n < r->message_size)
        snprintf(r->message + n, r->message_size - (size_t)n,
                 " (the last line has no newline: is the file truncated?)");
    return BOLT_DATA_INVALID;
}

/* The first byte in [p, e) that has no place in a text data file, or NULL. */
static inline const char *bolt_data_bad_byte(const char *p, const char *e)
{
    for (; p < e; ++p) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c >= 0x7f)
            return p;
    }
    return NULL;
}

/* Checked first whenever a token fails to parse: "not a number" would hide that the file is not text at all. */
static inline int bolt_data_fail_bad_byte(bolt_data_reader *r, const char *p, const char *e)
{
    const char *bad = bolt_data_bad_byte(p, e);
    if (bad == NULL)
        return BOLT_DATA_OK;
    unsigned char c = (unsigned char)*bad;
    if (c == 0)
        return bolt_data_fail(r, 0, "NUL byte in the text: this looks like a binary file, not a text data file");
    if (c == '\r')
        return bolt_data_fail(r, 0, "carriage return (0x0D) not followed by a line feed");
    return bolt_data_fail(r, 0, "unexpected byte 0x%02X: a data file must be ASCII text", c);
}

/* ---- numbers -------------------------------------------------------------------------------------------- */

enum { BOLT_DATA_NUM_OK, BOLT_DATA_NUM_EMPTY, BOLT_DATA_NUM_BAD, BOLT_DATA_NUM_NEGATIVE, BOLT_DATA_NUM_TOO_BIG,
       BOLT_DATA_NUM_NOT_FINITE };

/* [p, e) as a decimal integer in 0 .. max. Digits only: no '+', no blanks. "-" followed by digits is reported as
 * NEGATIVE so that the message can say so; a value over max still reads to the end to tell TOO_BIG from BAD. */
static inline int bolt_data_parse_uint(const char *p, const char *e, int64_t max, int64_t *out)
{
    if (p == e)
        return BOLT_DATA_NUM_EMPTY;
    int negative = 0;
    if (*p == '-') {
        negative = 1;
        if (++p == e)
            return BOLT_DATA_NUM_BAD;
    }
    int64_t value = 0;
    int too_big = 0;
    for (; p < e; ++p) {
        unsigned digit = (unsigned)(unsigned char)*p - '0';
        if (digit > 9)
            return BOLT_DATA_NUM_BAD;
        if (!too_big) {
            if (value > (max - (int64_t)digit) / 10)
                too_big = 1;
            else
                value = value * 10 + (int64_t)digit;
        }
    }
    if (negative)
        return BOLT_DATA_NUM_NEGATIVE;
    *out = value;
    return too_big ? BOLT_DATA_NUM_TOO_BIG : BOLT_DATA_NUM_OK;
}

/* Whether [p, e) is word, ignoring ASCII case (word is lower case). */
static inline int bolt_data_word_is(const char *p, const char *e, const char *word)
{
    for (; *word; ++word, ++p)
        if (p == e || (*p | 0x20) != *word)
            return 0;
    return p == e;
}

/* The float that starts at p: [+-] digits [. digits] [e|E [+-] digits], with digits on at least one side of the
 * point. *stop is set to the first byte after it; whether that byte may follow a number is the caller's business.
 *
 * Up to 19 significant digits are gathered into an integer. When it fits in 53 bits and the decimal exponent is
 * at most 22 in size, both are exact doubles and one multiplication or division rounds correctly (Clinger's fast
 * path), which covers every value that data files really hold; the double then rounds to float32. Longer or more
 * extreme numbers are scaled in steps of 1e22, a few double ulps off: far below float32's resolution. */
static inline int bolt_data_float_prefix(const char *p, const char *e, float *out, const char **stop)
{
    static const double powers[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                      1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    int negative = 0;
    if (p < e && (*p == '+' || *p == '-')) {
        negative = *p == '-';
        ++p;
    }
    uint64_t mantissa = 0;
    int kept = 0;          /* significant digits in mantissa */
    int64_t exponent = 0;  /* value = mantissa * 10^exponent */
    int any_digit = 0;
    for (; p < e && (unsigned)(unsigned char)*p - '0' <= 9; ++p) {
        unsigned digit = (unsigned)(unsigned char)*p - '0';
        any_digit = 1;
        if (kept < 19) {
            mantissa = mantissa * 10 + digit;
            kept += mantissa != 0; /* leading zeros are not significant */
        } else {
            ++exponent; /* a dropped integer digit still scales the value */
        }
    }
    if (p < e && *p == '.') {
        for (++p; p < e && (unsigned)(unsigned char)*p - '0' <= 9; ++p) {
            unsigned digit = (unsigned)(unsigned char)*p - '0';
            any_digit = 1;
            if (kept < 19) {
                mantissa = mantissa * 10 + digit;
                kept += mantissa != 0;
                --exponent;
            }
        }
    }
    if (!any_digit)
        return BOLT_DATA_NUM_BAD;
    if (p < e && (*p == 'e' || *p == 'E')) {
        ++p;
        int exponent_negative = 0;
        if (p < e && (*p == '+' || *p == '-')) {
            exponent_negative = *p == '-';
            ++p;
        }
        const char *digits = p;
        int64_t written = 0;
        for (; p < e && (unsigned)(unsigned char)*p - '0' <= 9; ++p)
            if (written < 1000000) /* far beyond any float; saturating keeps it from overflowing */
                written = written * 10 + (*p - '0');
        if (p == digits)
            return BOLT_DATA_NUM_BAD;
        exponent += exponent_negative ? -written : written;
    }
    *stop = p;

    double value;
    if (mantissa == 0) {
        value = 0.0;
    } else if (mantissa <= ((uint64_t)1 << 53) && exponent >= -22 && exponent <= 22) {
        value = exponent < 0 ? (double)mantissa / powers[-exponent] : (double)mantissa * powers[exponent];
    } else if (kept + exponent > 40) {
        return BOLT_DATA_NUM_TOO_BIG; /* at least 1e40 */
    } else if (kept + exponent < -50) {
        value = 0.0; /* below half the smallest float32 subnormal (1.4e-45): rounds to zero */
    } else {
        value = (double)mantissa;
        for (; exponent > 22; exponent -= 22)
            value *= 1e22;
        for (; exponent < -22; exponent += 22)
            value /= 1e22;
        value = exponent < 0 ? value / powers[-exponent] : value * powers[exponent];
    }
    if (value >= BOLT_DATA_FLOAT_LIMIT)
        return BOLT_DATA_NUM_TOO_BIG;
    *out = negative ? -(float)value : (float)value;
    return BOLT_DATA_NUM_OK;
}

/* [p, e), all of it, as a float; names NaN and infinities so that the message can. */
static inline int bolt_data_parse_float(const char *p, const char *e, float *out)
{
    if (p == e)
        return BOLT_DATA_NUM_EMPTY;
    const char *word = p + (*p == '+' || *p == '-');
    if (bolt_data_word_is(word, e, "nan") || bolt_data_word_is(word, e, "inf") ||
        bolt_data_word_is(word, e, "infinity"))
        return BOLT_DATA_NUM_NOT_FINITE;
    const char *stop = p;
    int status = bolt_data_float_prefix(p, e, out, &stop);
    /* trailing junk makes it "not a number" even when the digits before it were too large for a float */
    return status == BOLT_DATA_NUM_BAD || stop != e ? BOLT_DATA_NUM_BAD : status;
}

/* ---- rows ----------------------------------------------------------------------------------------------- */

static inline int bolt_data_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static inline const char *bolt_data_token_end(const char *p, const char *e)
{
    while (p < e && !bolt_data_is_blank(*p))
        ++p;
    return p;
}

static inline const char *bolt_data_skip_blanks(const char *p, const char *e)
{
    while (p < e && bolt_data_is_blank(*p))
        ++p;
    return p;
}

/* What one row held. */
typedef struct bolt_data_row {
    int64_t entries;
    int64_t labels;
    int64_t max_feature_id;
    int64_t max_label_id;
} bolt_data_row;

/* Counts a valid feature entry of the row and, in the fill pass, stores it. */
static inline int bolt_data_store_entry(bolt_data_reader *r, bolt_data_row *row, int64_t id, float value)
{
    if (r->filling) {
        if (r->entry_pos >= r->entry_end)
            return BOLT_DATA_CHANGED;
        r->indices[r->entry_pos] = (int32_t)id;
        r->values[r->entry_pos] = value;
        ++r->entry_pos;
    }
    ++row->entries;
    if (id > row->max_feature_id)
        row->max_feature_id = id;
    return BOLT_DATA_OK;
}

/* Where an entry's id sits: the whole field (for messages) and its digits. */
typedef struct bolt_data_id_text {
    const char *token, *token_end;
    const char *begin, *end;
} bolt_data_id_text;

/* The message for an id that did not parse; kind is "feature" or "label". */
static inline int bolt_data_fail_id(bolt_data_reader *r, const char *kind, int status, bolt_data_id_text at)
{
    if (bolt_data_fail_bad_byte(r, at.token, at.token_end))
        return BOLT_DATA_INVALID;
    bolt_data_quote id = bolt_data_quoted(at.begin, at.end), whole = bolt_data_quoted(at.token, at.token_end);
    switch (status) {
    case BOLT_DATA_NUM_EMPTY:
        if (kind[0] == 'l')
            return bolt_data_fail(r, 1, "empty label id in '%s'", whole.text);
        return bolt_data_fail(r, 1, "feature entry '%s' has no id before ':'", whole.text);
    case BOLT_DATA_NUM_NEGATIVE:
        return bolt_data_fail(r, 0, "%s id %s is negative", kind, id.text);
    case BOLT_DATA_NUM_TOO_BIG:
        return bolt_data_fail(r, 0, "%s id %s does not fit in int32 (largest 2147483647)", kind, id.text);
    default:
        return bolt_data_fail(r, 1, "%s id '%s' is not a non-negative integer", kind, id.text);
    }
}

/* The id of a `kind` ("label" or "feature") entry: a number, below `limit` (when limit >= 0), and not the same as
 * the row's previous id. */
static inline int bolt_data_checked_id(bolt_data_reader *r, const char *kind, int64_t limit, int64_t previous,
                                       bolt_data_id_text at, int64_t *id)
{
    int status = bolt_data_parse_uint(at.begin, at.end, BOLT_DATA_ID_MAX, id);
    if (status != BOLT_DATA_NUM_OK)
        return bolt_data_fail_id(r, kind, status, at);
    if (limit >= 0 && *id >= limit)
        return bolt_data_fail(r, 0, "%s id %lld is out of range (n_%ss = %lld)", kind, (long long)*id, kind,
                              (long long)limit);
    if (*id == previous)
        return bolt_data_fail(r, 0, "%s id %lld appears twice in this row", kind, (long long)*id);
    return BOLT_DATA_OK;
}

static inline int bolt_data_parse_labels(bolt_data_reader *r, const char *token, const char *token_end,
                                         bolt_data_row *row)
{
    int64_t previous = -1;
    const char *p = token;
    for (;;) {
        const char *q = p;
        while (q < token_end && *q != ',')
            ++q;
        int64_t id = 0;
        /* Only neighbours are compared here; the fill pass sorts each row and catches the rest. */
        const bolt_data_id_text at = {token, token_end, p, q};
        int status = bolt_data_checked_id(r, "label", r->n_labels, previous, at, &id);
        if (status != BOLT_DATA_OK)
            return status;
        previous = id;
        if (r->filling) {
            if (r->label_pos >= r->label_end)
                return BOLT_DATA_CHANGED;
            if (r->label_ids != NULL)
                r->label_ids[r->label_pos] = (int32_t)id;
            ++r->label_pos;
        }
        ++row->labels;
        if (id > row->max_label_id)
            row->max_label_id = id;
        if (q == token_end)
            return BOLT_DATA_OK;
        p = q + 1; /* a trailing ',' leaves an empty id, reported above on the next round */
    }
}

static inline int bolt_data_parse_feature(bolt_data_reader *r, const char *token, const char *token_end,
                                          int64_t *previous, bolt_data_row *row)
{
    const char *colon = memchr(token, ':', (size_t)(token_end - token));
    if (colon == NULL) {
        if (bolt_data_fail_bad_byte(r, token, token_end))
            return BOLT_DATA_INVALID;
        bolt_data_quote whole = bolt_data_quoted(token, token_end);
        return bolt_data_fail(r, 1, "feature entry '%s' has no ':' (expected id:value)", whole.text);
    }
    int64_t id = 0;
    int status = bolt_data_checked_id(r, "feature", r->n_features, *previous,
                                      (bolt_data_id_text){token, token_end, token, colon}, &id);
    if (status != BOLT_DATA_OK)
        return status;
    *previous = id;

    float value = 0.0f;
    status = bolt_data_parse_float(colon + 1, token_end, &value);
    if (status != BOLT_DATA_NUM_OK) {
        if (bolt_data_fail_bad_byte(r, colon + 1, token_end))
            return BOLT_DATA_INVALID;
        bolt_data_quote text = bolt_data_quoted(colon + 1, token_end);
        switch (status) {
        case BOLT_DATA_NUM_EMPTY:
            return bolt_data_fail(r, 1, "feature %lld has no value after ':'", (long long)id);
        case BOLT_DATA_NUM_NOT_FINITE:
            return bolt_data_fail(r, 0, "value '%s' of feature %lld is not finite", text.text, (long long)id);
        case BOLT_DATA_NUM_TOO_BIG:
            return bolt_data_fail(r, 0, "value '%s' of feature %lld is outside the float32 range", text.text,
                                  (long long)id);
        default:
            return bolt_data_fail(r, 1, "value '%s' of feature %lld is not a number", text.text, (long long)id);
        }
    }
    return bolt_data_store_entry(r, row, id, value);
}

/* The feature entry at token, in the line that ends at e; sets *next past it. Most entries are plain
 * "digits:number": this reads those in one go and hands anything else (including every error) to the careful
 * parser above, which finds the token's end first. */
static inline int bolt_data_read_feature(bolt_data_reader *r, const char *token, const char *e, int64_t *previous,
                                         bolt_data_row *row, const char **next)
{
    const char *p = token;
    int64_t id = 0;
    while (p < e && p - token < 10 && (unsigned)(unsigned char)*p - '0' <= 9)
        id = id * 10 + (*p++ - '0');
    float value = 0.0f;
    const char *stop = NULL;
    if (p > token && p < e && *p == ':' && id <= BOLT_DATA_ID_MAX && (r->n_features < 0 || id < r->n_features) &&
        id != *previous && bolt_data_float_prefix(p + 1, e, &value, &stop) == BOLT_DATA_NUM_OK &&
        (stop == e || bolt_data_is_blank(*stop))) {
        *previous = id;
        *next = stop;
        return bolt_data_store_entry(r, row, id, value);
    }
    *next = bolt_data_token_end(token, e);
    return bolt_data_parse_feature(r, token, *next, previous, row);
}

/* One non-blank line [p, e) without its line end. */
static inline int bolt_data_parse_row(bolt_data_reader *r, const char *p, const char *e, bolt_data_row *row)
{
    row->entries = row->labels = 0;
    row->max_feature_id = row->max_label_id = -1;
    /* The label field is the first field unless the line starts with a blank (empty label field) or the first
     * field is already a feature entry (plain feature rows, e.g. data for prediction). */
    if (!bolt_data_is_blank(*p)) {
        const char *end = bolt_data_token_end(p, e);
        if (memchr(p, ':', (size_t)(end - p)) == NULL) {
            int status = bolt_data_parse_labels(r, p, end, row);
            if (status)
                return status;
            p = end;
        }
    }
    int64_t previous = -1;
    for (;;) {
        p = bolt_data_skip_blanks(p, e);
        if (p == e)
            return BOLT_DATA_OK;
        int status = bolt_data_read_feature(r, p, e, &previous, row, &p);
        if (status)
            return status;
    }
}

/* Sorts keys (carrying values along when there are any) with a heap sort: in place, no recursion, no worst case.
 * Only rows that are not sorted already get here. */
static inline void bolt_data_sift_down(int32_t *keys, float *values, int64_t root, int64_t n)
{
    for (;;) {
        int64_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && keys[child + 1] > keys[child])
            ++child;
        if (keys[root] >= keys[child])
            return;
        int32_t key = keys[root];
        keys[root] = keys[child];
        keys[child] = key;
        if (values != NULL) {
            float value = values[root];
            values[root] = values[child];
            values[child] = value;
        }
        root = child;
    }
}

/* Sorts a row's ids; returns the first id that occurs twice, or -1. */
static inline int64_t bolt_data_sort_row(int32_t *keys, float *values, int64_t n)
{
    int64_t i;
    for (i = 1; i < n && keys[i - 1] < keys[i]; ++i)
        ;
    if (i >= n)
        return -1; /* strictly increasing: the usual case, nothing to do */
    for (int64_t start = n / 2 - 1; start >= 0; --start)
        bolt_data_sift_down(keys, values, start, n);
    for (int64_t last = n - 1; last > 0; --last) {
        int32_t key = keys[0];
        keys[0] = keys[last];
        keys[last] = key;
        if (values != NULL) {
            float value = values[0];
            values[0] = values[last];
            values[last] = value;
        }
        bolt_data_sift_down(keys, values, 0, last);
    }
    for (i = 1; i < n; ++i)
        if (keys[i - 1] == keys[i])
            return keys[i];
    return -1;
}

/* ---- chunks --------------------------------------------------------------------------------------------- */

/* Room for one row's ids, for skip_bad_rows: a row is left out before any of it is written, so repeated ids that
 * are not neighbours (which the fill pass would only find when it sorts the row) are looked for in a copy. */
typedef struct bolt_data_row_copy {
    int32_t *ids;
    float *values;
    int32_t *labels;
    int64_t capacity, label_capacity;
} bolt_data_row_copy;

/* Parses the row [p, e) into `copy`, sized by its ':' and ',' (no row holds more entries or labels than that), and
 * fails it as the fill pass would if an id occurs twice. Fills `row` as bolt_data_parse_row does. */
static inline int bolt_data_check_row(const bolt_data_reader *reader, bolt_data_row_copy *copy, const char *p,
                                      const char *e, bolt_data_row *row)
{
    int64_t entries = 0, labels = 1;
    for (const char *c = p; c < e; ++c) {
        entries += *c == ':';
        labels += *c == ',';
    }
    if (entries > copy->capacity) {
        int32_t *ids = realloc(copy->ids, (size_t)entries * sizeof *ids);
        if (ids == NULL)
            return BOLT_DATA_NO_MEMORY;
        copy->ids = ids;
        float *values = realloc(copy->values, (size_t)entries * sizeof *values);
        if (values == NULL)
            return BOLT_DATA_NO_MEMORY;
        copy->values = values;
        copy->capacity = entries;
    }
    if (labels > copy->label_capacity) {
        int32_t *grown = realloc(copy->labels, (size_t)labels * sizeof *grown);
        if (grown == NULL)
            return BOLT_DATA_NO_MEMORY;
        copy->labels = grown;
        copy->label_capacity = labels;
    }
    bolt_data_reader r = *reader;
    r.filling = 1;
    r.indices = copy->ids;
    r.values = copy->values;
    r.label_ids = copy->labels;
    r.entry_pos = r.label_pos = 0;
    r.entry_end = entries;
    r.label_end = labels;
    int status = bolt_data_parse_row(&r, p, e, row);
    if (status)
        return status;
    int64_t twice = bolt_data_sort_row(copy->ids, NULL, row->entries);
    if (twice >= 0)
        return bolt_data_fail(&r, 0, "feature id %lld appears twice in this row", (long long)twice);
    twice = bolt_data_sort_row(copy->labels, NULL, row->labels);
    if (twice >= 0)
        return bolt_data_fail(&r, 0, "label id %lld appears twice in this row", (long long)twice);
    return BOLT_DATA_OK;
}

/* The arrays the fill pass writes (bolt_data_fill's); the scan has none. */
typedef struct {
    int64_t *indptr;
    int32_t *indices;
    float *values;
    int64_t *label_indptr; /* NULL: labels are parsed and counted, not stored */
    int32_t *label_ids;
} bolt_data_arrays;

/* Scans (out == NULL) or fills one chunk. The fill pass re-checks every count against the scan's, so bytes that
 * changed in between (a file rewritten under a mapping) give BOLT_DATA_CHANGED, never a write out of bounds. */
static inline void bolt_data_run_chunk(const char *data, int64_t size, bolt_data_chunk *chunk, int skip_bad_rows,
                                       int64_t n_features, int64_t n_labels, const bolt_data_arrays *out)
{
    int64_t *indptr = out ? out->indptr : NULL, *label_indptr = out ? out->label_indptr : NULL;
    int32_t *indices = out ? out->indices : NULL, *label_ids = out ? out->label_ids : NULL;
    float *values = out ? out->values : NULL;
    bolt_data_reader r;
    memset(&r, 0, sizeof r);
    r.n_features = n_features;
    r.n_labels = n_labels;
    char message[sizeof chunk->message]; /* the chunk keeps the first skipped row's, or the error's */
    message[0] = '\0';
    r.message = message;
    r.message_size = sizeof message;
    bolt_data_row_copy copy = {NULL, NULL, NULL, 0, 0};
    const int filling = indptr != NULL;
    if (filling) {
        r.filling = 1;
        r.indices = indices;
        r.values = values;
        r.label_ids = label_ids;
        r.entry_pos = chunk->entry_offset;
        r.entry_end = chunk->entry_offset + chunk->entries;
        r.label_pos = chunk->label_offset;
        r.label_end = chunk->label_offset + chunk->labels;
    } else {
        chunk->rows = chunk->entries = chunk->labels = 0;
        chunk->max_feature_id = chunk->max_label_id = -1;
        chunk->max_row_entries = chunk->max_row_labels = 0;
    }
    chunk->status = BOLT_DATA_OK;
    chunk->error_line = 0;
    chunk->skipped = chunk->first_skipped = 0;
    chunk->message[0] = '\0';

    const char *p = data + chunk->begin, *end = data + chunk->end;
    int64_t line = 0, rows = 0;
    int status = BOLT_DATA_OK;
    while (p < end) {
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = newline != NULL ? newline : end;
        const char *next = newline != NULL ? newline + 1 : end;
        ++line;
        if (line_end > p && line_end[-1] == '\r')
            --line_end;
        r.unterminated = newline == NULL && end == data + size;
        if (bolt_data_skip_blanks(p, line_end) != line_end) {
            bolt_data_row row;
            int64_t first_entry = r.entry_pos, first_label = r.label_pos;
            if (filling && rows >= chunk->rows) {
                status = BOLT_DATA_CHANGED;
                break;
            }
            if (skip_bad_rows) {
                /* the whole row is checked before any of it is written: a bad row's entries have no room */
                status = bolt_data_check_row(&r, &copy, p, line_end, &row);
                if (status == BOLT_DATA_INVALID) {
                    if (chunk->skipped++ == 0) {
                        chunk->first_skipped = line;
                        memcpy(chunk->message, message, sizeof message);
                    }
                    status = BOLT_DATA_OK;
                    p = next;
                    continue;
                }
                if (status == BOLT_DATA_OK && filling)
                    status = bolt_data_parse_row(&r, p, line_end, &row);
            } else {
                status = bolt_data_parse_row(&r, p, line_end, &row);
            }
            if (status)
                break;
            if (filling) {
                /* the scan only caught neighbouring repeats; sorting brings the others together */
                if (r.entry_pos - first_entry > 1) {
                    int64_t twice = bolt_data_sort_row(indices + first_entry, values + first_entry,
                                                       r.entry_pos - first_entry);
                    if (twice >= 0) {
                        status = bolt_data_fail(&r, 0, "feature id %lld appears twice in this row", (long long)twice);
                        break; /* never with skip_bad_rows: such rows were left out above */
                    }
                }
                if (label_ids != NULL && r.label_pos - first_label > 1) {
                    int64_t twice = bolt_data_sort_row(label_ids + first_label, NULL, r.label_pos - first_label);
                    if (twice >= 0) {
                        status = bolt_data_fail(&r, 0, "label id %lld appears twice in this row", (long long)twice);
                        break;
                    }
                }
                indptr[chunk->row_offset + rows + 1] = r.entry_pos;
                if (label_indptr != NULL)
                    label_indptr[chunk->row_offset + rows + 1] = r.label_pos;
            } else {
                chunk->entries += row.entries;
                chunk->labels += row.labels;
                if (row.max_feature_id > chunk->max_feature_id)
                    chunk->max_feature_id = row.max_feature_id;
                if (row.max_label_id > chunk->max_label_id)
                    chunk->max_label_id = row.max_label_id;
                if (row.entries > chunk->max_row_entries)
                    chunk->max_row_entries = row.entries;
                if (row.labels > chunk->max_row_labels)
                    chunk->max_row_labels = row.labels;
            }
            ++rows;
        }
        p = next;
    }
    free(copy.ids);
    free(copy.values);
    free(copy.labels);
    if (status == BOLT_DATA_OK && filling &&
        (rows != chunk->rows || r.entry_pos != r.entry_end || r.label_pos != r.label_end))
        status = BOLT_DATA_CHANGED;
    if (status != BOLT_DATA_OK)
        memcpy(chunk->message, message, sizeof message);
    if (status == BOLT_DATA_NO_MEMORY)
        snprintf(chunk->message, sizeof chunk->message, "out of memory checking a row for skip_bad_rows");
    if (status == BOLT_DATA_CHANGED) {
        snprintf(chunk->message, sizeof chunk->message,
                 "the data changed between the scan and the fill pass (was the file rewritten while being read?)");
        line = 0;
    }
    chunk->status = status;
    chunk->error_line = status ? line : 0;
    if (!filling) {
        chunk->rows = rows;
        chunk->lines = line;
    }
}

/* Runs every chunk, in parallel where OpenMP is on, and copies the first chunk's error (in file order) into info:
 * an error in a later chunk is only reported when every line before it is clean, as a serial reader would. */
static inline int bolt_data_run_chunks(const char *data, int64_t size, bolt_data_info *info, int64_t n_features,
                                       int64_t n_labels, const bolt_data_arrays *out)
{
    const int32_t n_chunks = info->n_chunks;
#ifdef _OPENMP
    int threads = info->threads > 0 ? info->threads : omp_get_max_threads();
    if (threads > n_chunks)
        threads = n_chunks;
    if (threads < 1)
        threads = 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (n_chunks > 1)
#endif
    for (int32_t c = 0; c < n_chunks; ++c)
        bolt_data_run_chunk(data, size, &info->chunks[c], info->skip_bad_rows != 0, n_features, n_labels, out);
    int64_t line = info->n_chunks > 0 ? info->chunks[0].first_line : 1;
    info->skipped_rows = info->first_skipped_line = 0;
    for (int32_t c = 0; c < n_chunks; ++c) {
        bolt_data_chunk *chunk = &info->chunks[c];
        if (chunk->status != BOLT_DATA_OK) {
            info->status = chunk->status;
            info->error_line = chunk->error_line > 0 ? line + chunk->error_line - 1 : 0;
            memcpy(info->message, chunk->message, sizeof info->message);
            return info->status;
        }
        if (chunk->skipped > 0 && info->skipped_rows == 0) {
            info->first_skipped_line = line + chunk->first_skipped - 1;
            memcpy(info->message, chunk->message, sizeof info->message);
        }
        info->skipped_rows += chunk->skipped;
        line += chunk->lines;
    }
    return BOLT_DATA_OK;
}

/* ---- entry points --------------------------------------------------------------------------------------- */

static inline int bolt_data_argument_error(bolt_data_info *info, const char *message)
{
    info->status = BOLT_DATA_BAD_ARGUMENT;
    info->error_line = 0;
    snprintf(info->message, sizeof info->message, "%s", message);
    return info->status;
}

/* The header line [p, e): exactly three non-negative integers. Checks them against the caller's limits. */
static inline int bolt_data_read_header(bolt_data_info *info, bolt_data_reader *r, const char *p, const char *e)
{
    const char *fields[3][2] = {{NULL, NULL}, {NULL, NULL}, {NULL, NULL}};
    int count = 0;
    for (p = bolt_data_skip_blanks(p, e); p < e; p = bolt_data_skip_blanks(p, e)) {
        const char *end = bolt_data_token_end(p, e);
        if (count < 3) {
            fields[count][0] = p;
            fields[count][1] = end;
        }
        ++count;
        p = end;
    }
    if (count != 3)
        return bolt_data_fail(r, 0, "header has %d fields; expected 3: rows features labels", count);
    static const char *const names[3] = {"rows", "features", "labels"};
    int64_t values[3] = {0, 0, 0};
    for (int k = 0; k < 3; ++k) {
        /* ids are int32, so at most 2^31 features or labels; rows only need to fit in int64 */
        int64_t max = k == 0 ? INT64_MAX : BOLT_DATA_ID_MAX + 1;
        int status = bolt_data_parse_uint(fields[k][0], fields[k][1], max, &values[k]);
        if (status == BOLT_DATA_NUM_OK)
            continue;
        if (bolt_data_fail_bad_byte(r, fields[k][0], fields[k][1]))
            return BOLT_DATA_INVALID;
        bolt_data_quote text = bolt_data_quoted(fields[k][0], fields[k][1]);
        if (status == BOLT_DATA_NUM_TOO_BIG && k > 0)
            return bolt_data_fail(r, 0, "header says %s %s; ids are int32, so at most 2147483648", text.text,
                                  names[k]);
        return bolt_data_fail(r, 0, "header field %d (%s) '%s' is not a non-negative integer", k + 1, names[k],
                              text.text);
    }
    info->has_header = 1;
    info->header_rows = values[0];
    info->header_features = values[1];
    info->header_labels = values[2];
    if (info->n_features > 0 && values[1] != info->n_features)
        return bolt_data_fail(r, 0, "header says %lld features but %lld were expected", (long long)values[1],
                              (long long)info->n_features);
    if (info->n_labels > 0 && values[2] != info->n_labels)
        return bolt_data_fail(r, 0, "header says %lld labels but %lld were expected", (long long)values[2],
                              (long long)info->n_labels);
    return BOLT_DATA_OK;
}

/* A first non-empty line is a header when it has no ':' and at least two fields. A lone number is a row holding
 * one label and no features; any line with ':' holds feature entries. */
static inline int bolt_data_looks_like_header(const char *p, const char *e)
{
    if (memchr(p, ':', (size_t)(e - p)) != NULL)
        return 0;
    p = bolt_data_skip_blanks(p, e);
    p = bolt_data_skip_blanks(bolt_data_token_end(p, e), e);
    return p < e;
}

int bolt_data_scan(const char *data, int64_t size, bolt_data_info *info)
{
    if (info == NULL)
        return BOLT_DATA_BAD_ARGUMENT;
    info->status = BOLT_DATA_OK;
    info->error_line = 0;
    info->message[0] = '\0';
    info->has_header = 0;
    info->header_rows = info->header_features = info->header_labels = 0;
    info->lines = info->rows = info->entries = info->labels = 0;
    info->max_feature_id = info->max_label_id = -1;
    info->max_row_entries = info->max_row_labels = 0;
    info->n_chunks = 0;
    if (size < 0 || (data == NULL && size > 0))
        return bolt_data_argument_error(info, "bolt_data_scan: no data or a negative size");
    if (info->n_features < 0 || info->n_features > BOLT_DATA_ID_MAX + 1 || info->n_labels < 0 ||
        info->n_labels > BOLT_DATA_ID_MAX + 1)
        return bolt_data_argument_error(info, "n_features and n_labels must be between 0 and 2^31");

    /* Leading empty lines, then the header if the first non-empty line is one. A UTF-8 byte order mark, which
     * some Windows editors write, is skipped. */
    if (info->part < BOLT_DATA_WHOLE_FILE || info->part > BOLT_DATA_LATER_PART)
        return bolt_data_argument_error(info, "part must be a whole file, a first part or a later part");
    const int opens_file = info->part != BOLT_DATA_LATER_PART;
    int64_t begin = opens_file && size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    int64_t lead_lines = 0;
    while (begin < size) {
        const char *p = data + begin, *e = data + size;
        const char *newline = memchr(p, '\n', (size_t)(e - p));
        const char *line_end = newline != NULL ? newline : e;
        const char *next = newline != NULL ? newline + 1 : e;
        if (line_end > p && line_end[-1] == '\r')
            --line_end;
        if (bolt_data_skip_blanks(p, line_end) == line_end) {
            ++lead_lines;
            begin = next - data;
            continue;
        }
        if (opens_file && bolt_data_looks_like_header(p, line_end)) {
            bolt_data_reader r;
            memset(&r, 0, sizeof r);
            r.message = info->message;
            r.message_size = sizeof info->message;
            ++lead_lines;
            if (bolt_data_read_header(info, &r, p, line_end)) {
                info->status = BOLT_DATA_INVALID;
                info->error_line = lead_lines;
                return info->status;
            }
            begin = next - data;
        }
        break;
    }
    int64_t n_features = info->n_features > 0 ? info->n_features : info->has_header ? info->header_features : -1;
    int64_t n_labels = info->n_labels > 0 ? info->n_labels : info->has_header ? info->header_labels : -1;

    /* Cut the rest into chunks that end just after a '\n'. */
    int64_t threads = info->threads;
#ifdef _OPENMP
    if (threads <= 0)
        threads = omp_get_max_threads();
#endif
    if (threads < 1)
        threads = 1;
    int64_t wanted = threads > 1 ? 2 * threads : 1; /* a few spare chunks even out uneven lines */
    int64_t by_size = (size - begin) / BOLT_DATA_MIN_CHUNK_BYTES;
    if (wanted > by_size)
        wanted = by_size;
    if (wanted > BOLT_DATA_MAX_CHUNKS)
        wanted = BOLT_DATA_MAX_CHUNKS;
    if (wanted < 1)
        wanted = 1;
    int32_t n_chunks = 0;
    int64_t at = begin;
    while (at < size) {
        int64_t stop = size;
        if (n_chunks + 1 < wanted) {
            /* aim at an even share, but past the previous chunk even if one long line overshot it */
            int64_t target = begin + (size - begin) * (n_chunks + 1) / wanted;
            if (target <= at)
                target = at + 1;
            const char *newline = memchr(data + target - 1, '\n', (size_t)(size - target + 1));
            stop = newline != NULL ? newline + 1 - data : size;
        }
        memset(&info->chunks[n_chunks], 0, sizeof info->chunks[n_chunks]);
        info->chunks[n_chunks].begin = at;
        info->chunks[n_chunks].end = stop;
        info->chunks[n_chunks].first_line = lead_lines + 1; /* exact for the first chunk; the rest are set below */
        ++n_chunks;
        at = stop;
    }
    info->n_chunks = n_chunks;

    if (bolt_data_run_chunks(data, size, info, n_features, n_labels, NULL))
        return info->status;

    /* Prefix sums: where each chunk's output starts, and the first line number of each. */
    int64_t line = lead_lines + 1;
    for (int32_t c = 0; c < n_chunks; ++c) {
        bolt_data_chunk *chunk = &info->chunks[c];
        chunk->first_line = line;
        chunk->row_offset = info->rows;
        chunk->entry_offset = info->entries;
        chunk->label_offset = info->labels;
        line += chunk->lines;
        info->rows += chunk->rows;
        info->entries += chunk->entries;
        info->labels += chunk->labels;
        if (chunk->max_feature_id > info->max_feature_id)
            info->max_feature_id = chunk->max_feature_id;
        if (chunk->max_label_id > info->max_label_id)
            info->max_label_id = chunk->max_label_id;
        if (chunk->max_row_entries > info->max_row_entries)
            info->max_row_entries = chunk->max_row_entries;
        if (chunk->max_row_labels > info->max_row_labels)
            info->max_row_labels = chunk->max_row_labels;
    }
    info->lines = line - 1;

    if (info->part == BOLT_DATA_WHOLE_FILE && info->has_header &&
        info->header_rows != info->rows + info->skipped_rows) {
        info->status = BOLT_DATA_INVALID;
        /* the header is the last of the leading lines */
        info->error_line = lead_lines;
        snprintf(info->message, sizeof info->message, "header says %lld rows but the file has %lld",
                 (long long)info->header_rows, (long long)(info->rows + info->skipped_rows));
    }
    return info->status;
}

int bolt_data_fill(const char *data, int64_t size, bolt_data_info *info, int64_t *indptr, int32_t *indices,
                   float *values, int64_t *label_indptr, int32_t *label_ids)
{
    if (info == NULL)
        return BOLT_DATA_BAD_ARGUMENT;
    if (info->status != BOLT_DATA_OK || info->n_chunks < 0 || info->n_chunks > BOLT_DATA_MAX_CHUNKS)
        return bolt_data_argument_error(info, "bolt_data_fill needs the info of a successful bolt_data_scan");
    if (size < 0 || (data == NULL && size > 0) || indptr == NULL ||
        (info->entries > 0 && (indices == NULL || values == NULL)) ||
        (info->labels > 0 && label_indptr != NULL && label_ids == NULL))
        return bolt_data_argument_error(info, "bolt_data_fill: missing arrays");
    for (int32_t c = 0; c < info->n_chunks; ++c)
        if (info->chunks[c].end > size)
            return bolt_data_argument_error(info, "bolt_data_fill: the data is shorter than at scan time");
    int64_t n_features = info->n_features > 0 ? info->n_features : info->has_header ? info->header_features : -1;
    int64_t n_labels = info->n_labels > 0 ? info->n_labels : info->has_header ? info->header_labels : -1;
    indptr[0] = 0;
    if (label_indptr != NULL)
        label_indptr[0] = 0;
    /* without label_indptr the labels are skipped: still parsed and counted, to cross-check the scan */
    const bolt_data_arrays out = {indptr, indices, values, label_indptr, label_indptr ? label_ids : NULL};
    return bolt_data_run_chunks(data, size, info, n_features, n_labels, &out);
}

#endif /* BOLT_DATA_H */
