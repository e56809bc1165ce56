/* orderhub.transforms._native: the columnar engine's per-order hashing, compiled.
 *
 * The columnar engine needs, for every order of a page, the BLAKE2b hash of its raw record as the row engine
 * encodes it (msgspec's JSON of the header, its lines nested, the shop) and the order's canonical id (BLAKE2b of
 * source, shop and source order id). Built from Polars columns and hashed with hashlib per order, that is a
 * quarter of the engine's Polars time and all of its per-order Python. Here the same text is written straight
 * from the columns' Arrow buffers (through the Arrow C stream interface, ``__arrow_c_stream__``: no copy, no
 * pyarrow) and hashed in C, with the GIL released.
 *
 * The JSON is msgspec's: strings with '"', '\\' and control characters escaped (\b \t \n \f \r, else \u00xx),
 * nothing else; integers and booleans as they are; decimals as quoted text with exactly the column's scale, as
 * Python's str(Decimal) writes it (scientific, like "0E-10" or "1.000E-7", when the adjusted exponent is < -6);
 * naive timestamps (microseconds) as quoted ISO-8601, microseconds only when not zero, plus a fixed zone suffix.
 * transforms/columnar.py builds the literal parts (keys, separators) and falls back to its Polars expressions
 * when this module is missing or refuses a column type. BLAKE2b is RFC 7693 (unkeyed, any digest size 1..64).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------------- */
/* BLAKE2b (RFC 7693), one-shot                                                                                */
/* ---------------------------------------------------------------------------------------------------------- */
static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

static inline uint64_t rotr64(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8); /* little-endian machines only (checked at import) */
    return v;
}

#define B2_G(r, i, a, b, c, d)                                                                                   \
    do {                                                                                                         \
        a = a + b + m[B2_SIGMA[r][2 * i]];                                                                       \
        d = rotr64(d ^ a, 32);                                                                                   \
        c = c + d;                                                                                               \
        b = rotr64(b ^ c, 24);                                                                                   \
        a = a + b + m[B2_SIGMA[r][2 * i + 1]];                                                                   \
        d = rotr64(d ^ a, 16);                                                                                   \
        c = c + d;                                                                                               \
        b = rotr64(b ^ c, 63);                                                                                   \
    } while (0)

static void b2_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) m[i] = load64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= t; /* messages here are far below 2^64 bytes: the high counter word stays 0 */
    if (last) v[14] = ~v[14];
#define B2_ROUND(r)                                                                                              \
    do {                                                                                                         \
        B2_G(r, 0, v[0], v[4], v[8], v[12]);                                                                     \
        B2_G(r, 1, v[1], v[5], v[9], v[13]);                                                                     \
        B2_G(r, 2, v[2], v[6], v[10], v[14]);                                                                    \
        B2_G(r, 3, v[3], v[7], v[11], v[15]);                                                                    \
        B2_G(r, 4, v[0], v[5], v[10], v[15]);                                                                    \
        B2_G(r, 5, v[1], v[6], v[11], v[12]);                                                                    \
        B2_G(r, 6, v[2], v[7], v[8], v[13]);                                                                     \
        B2_G(r, 7, v[3], v[4], v[9], v[14]);                                                                     \
    } while (0)
    /* the rounds written out: the message schedule becomes constants, the state stays in registers */
    B2_ROUND(0); B2_ROUND(1); B2_ROUND(2); B2_ROUND(3); B2_ROUND(4); B2_ROUND(5);
    B2_ROUND(6); B2_ROUND(7); B2_ROUND(8); B2_ROUND(9); B2_ROUND(10); B2_ROUND(11);
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/* hex of BLAKE2b-`outlen` of msg[0:len] into out (2*outlen chars) */
static void b2_hex(const uint8_t *msg, size_t len, int outlen, char *out) {
    static const char HEX[] = "0123456789abcdef";
    uint64_t h[8];
    uint8_t block[128], digest[64];
    for (int i = 0; i < 8; i++) h[i] = B2_IV[i];
    h[0] ^= 0x01010000ULL ^ (uint64_t)outlen;
    uint64_t t = 0;
    while (len > 128) {
        t += 128;
        b2_compress(h, msg, t, 0);
        msg += 128;
        len -= 128;
    }
    memset(block, 0, 128);
    memcpy(block, msg, len);
    t += len;
    b2_compress(h, block, t, 1);
    memcpy(digest, h, 64);
    for (int i = 0; i < outlen; i++) {
        out[2 * i] = HEX[digest[i] >> 4];
        out[2 * i + 1] = HEX[digest[i] & 15];
    }
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Arrow C data interface                                                                                     */
/* ---------------------------------------------------------------------------------------------------------- */
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

struct ArrowArrayStream {
    int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *out);
    int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *out);
    const char *(*get_last_error)(struct ArrowArrayStream *);
    void (*release)(struct ArrowArrayStream *);
    void *private_data;
};

enum Kind { K_NULL, K_INT, K_UINT, K_BOOL, K_STR, K_DEC, K_TIME };

typedef struct {
    PyObject *capsule; /* keeps the stream (and so the buffers) alive */
    struct ArrowSchema schema;
    struct ArrowArray array;
    int kind;
    int width;     /* bytes of an integer */
    int scale;     /* decimals */
    const char *lit;  /* text written before the value (key, separators) */
    Py_ssize_t lit_len;
    const char *suffix; /* timestamps: zone suffix ("Z", "+08:00") */
    Py_ssize_t suffix_len;
    int64_t length;
} Column;

static void column_release(Column *c) {
    if (c->array.release) c->array.release(&c->array);
    if (c->schema.release) c->schema.release(&c->schema);
    c->array.release = NULL;
    c->schema.release = NULL;
    Py_CLEAR(c->capsule);
}

static int check_views(const Column *c);

/* Import one single-chunk column from an object with __arrow_c_stream__ (a Polars Series). */
static int column_import(Column *c, PyObject *series) {
    memset(&c->schema, 0, sizeof c->schema);
    memset(&c->array, 0, sizeof c->array);
    c->capsule = PyObject_CallMethod(series, "__arrow_c_stream__", NULL);
    if (!c->capsule) return -1;
    struct ArrowArrayStream *st = PyCapsule_GetPointer(c->capsule, "arrow_array_stream");
    if (!st) return -1;
    if (st->get_schema(st, &c->schema) != 0) {
        PyErr_SetString(PyExc_ValueError, "arrow stream: no schema");
        return -1;
    }
    if (st->get_next(st, &c->array) != 0) {
        PyErr_SetString(PyExc_ValueError, "arrow stream: read error");
        return -1;
    }
    if (c->array.release == NULL) { /* a stream without arrays: an empty column */
        c->kind = K_NULL;
        c->length = 0;
        return 0;
    }
    struct ArrowArray extra;
    memset(&extra, 0, sizeof extra);
    if (st->get_next(st, &extra) != 0) {
        PyErr_SetString(PyExc_ValueError, "arrow stream: read error");
        return -1;
    }
    if (extra.release) {
        extra.release(&extra);
        PyErr_SetString(PyExc_ValueError, "column has several chunks (rechunk it first)");
        return -1;
    }
    const char *f = c->schema.format;
    c->length = c->array.length;
    c->width = 0;
    c->scale = 0;
    if (!strcmp(f, "n")) c->kind = K_NULL;
    else if (!strcmp(f, "c")) { c->kind = K_INT; c->width = 1; }
    else if (!strcmp(f, "s")) { c->kind = K_INT; c->width = 2; }
    else if (!strcmp(f, "i")) { c->kind = K_INT; c->width = 4; }
    else if (!strcmp(f, "l")) { c->kind = K_INT; c->width = 8; }
    else if (!strcmp(f, "C")) { c->kind = K_UINT; c->width = 1; }
    else if (!strcmp(f, "S")) { c->kind = K_UINT; c->width = 2; }
    else if (!strcmp(f, "I")) { c->kind = K_UINT; c->width = 4; }
    else if (!strcmp(f, "L")) { c->kind = K_UINT; c->width = 8; }
    else if (!strcmp(f, "b")) c->kind = K_BOOL;
    else if (!strcmp(f, "vu")) c->kind = K_STR;
    else if (!strcmp(f, "tsu:")) c->kind = K_TIME;
    else if (!strncmp(f, "d:", 2)) {
        int prec = 0, scale = 0, bits = 128;
        int n = sscanf(f + 2, "%d,%d,%d", &prec, &scale, &bits);
        if (n < 2 || bits != 128 || scale < 0 || scale > 38) {
            PyErr_Format(PyExc_TypeError, "unsupported decimal %s", f);
            return -1;
        }
        c->kind = K_DEC;
        c->scale = scale;
    } else {
        PyErr_Format(PyExc_TypeError, "unsupported Arrow type %s", f);
        return -1;
    }
    if (c->kind != K_NULL && (c->array.n_buffers < 2 || c->array.buffers[1] == NULL)) {
        PyErr_SetString(PyExc_ValueError, "arrow array: missing buffers");
        return -1;
    }
    if (c->kind == K_STR && check_views(c) < 0) return -1;
    return 0;
}

static inline int is_valid(const Column *c, int64_t i) {
    if (c->kind == K_NULL) return 0;
    const uint8_t *bits = c->array.buffers[0];
    if (bits == NULL || c->array.null_count == 0) return 1;
    int64_t j = c->array.offset + i;
    return (bits[j >> 3] >> (j & 7)) & 1;
}

/* string value i of a string_view column */
static inline const char *str_at(const Column *c, int64_t i, int32_t *len) {
    const uint8_t *view = (const uint8_t *)c->array.buffers[1] + 16 * (c->array.offset + i);
    int32_t n;
    memcpy(&n, view, 4);
    *len = n;
    if (n <= 12) return (const char *)view + 4;
    int32_t buf, off;
    memcpy(&buf, view + 8, 4);
    memcpy(&off, view + 12, 4);
    return (const char *)c->array.buffers[2 + buf] + off;
}

/* Every string view of a column points inside its data buffers (checked once, so the encoder never reads out of
 * bounds whatever object handed the column over). */
static int check_views(const Column *c) {
    int64_t nvar = c->array.n_buffers - 3; /* validity, views, data buffers..., their sizes */
    if (nvar < 0) {
        PyErr_SetString(PyExc_ValueError, "arrow string_view array: missing buffers");
        return -1;
    }
    const int64_t *sizes = nvar ? (const int64_t *)c->array.buffers[c->array.n_buffers - 1] : NULL;
    for (int64_t i = 0; i < c->length; i++) {
        if (!is_valid(c, i)) continue;
        const uint8_t *view = (const uint8_t *)c->array.buffers[1] + 16 * (c->array.offset + i);
        int32_t n, buf, off;
        memcpy(&n, view, 4);
        if (n < 0) goto bad;
        if (n <= 12) continue;
        memcpy(&buf, view + 8, 4);
        memcpy(&off, view + 12, 4);
        if (buf < 0 || buf >= nvar || off < 0 || sizes == NULL || (int64_t)off + n > sizes[buf] ||
            c->array.buffers[2 + buf] == NULL)
            goto bad;
    }
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "arrow string_view array: a view points outside its buffers");
    return -1;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* a growable byte buffer                                                                                     */
/* ---------------------------------------------------------------------------------------------------------- */
typedef struct {
    char *p;
    size_t n, cap;
    int failed;
} Buf;

static inline int buf_reserve(Buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = 1;
        return 0;
    }
    b->p = p;
    b->cap = cap;
    return 1;
}

static inline void buf_put(Buf *b, const char *s, size_t n) {
    if (!buf_reserve(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void put_u64(Buf *b, uint64_t v, int neg) {
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (!buf_reserve(b, (size_t)k + 1)) return;
    if (neg) b->p[b->n++] = '-';
    while (k) b->p[b->n++] = tmp[--k];
}

static void put_json_string(Buf *b, const char *s, int32_t n) {
    static const char HEX[] = "0123456789abcdef";
    if (!buf_reserve(b, (size_t)n * 6 + 2)) return;
    char *o = b->p + b->n;
    *o++ = '"';
    for (int32_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            *o++ = (char)ch;
            continue;
        }
        *o++ = '\\';
        switch (ch) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\t': *o++ = 't'; break;
        case '\n': *o++ = 'n'; break;
        case '\f': *o++ = 'f'; break;
        case '\r': *o++ = 'r'; break;
        default:
            *o++ = 'u'; *o++ = '0'; *o++ = '0';
            *o++ = HEX[ch >> 4];
            *o++ = HEX[ch & 15];
        }
    }
    *o++ = '"';
    b->n = (size_t)(o - b->p);
}

static void put_decimal(Buf *b, __int128 v, int scale) {
    char tmp[48];
    int k = 0, neg = v < 0;
    unsigned __int128 u = neg ? (unsigned __int128)(-(v + 1)) + 1 : (unsigned __int128)v;
    do {
        tmp[k++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    int adjusted = k - 1 - scale;
    if (adjusted < -6) {
        /* str(Decimal) of coefficient v, exponent -scale: d[.ddd]E-n (scale <= 38, so at most 2 exponent digits) */
        if (!buf_reserve(b, (size_t)k + 10)) return;
        char *o = b->p + b->n;
        *o++ = '"';
        if (neg) *o++ = '-';
        *o++ = tmp[--k];
        if (k) {
            *o++ = '.';
            while (k) *o++ = tmp[--k];
        }
        *o++ = 'E';
        *o++ = '-';
        int e = -adjusted;
        if (e >= 10) *o++ = (char)('0' + e / 10);
        *o++ = (char)('0' + e % 10);
        *o++ = '"';
        b->n = (size_t)(o - b->p);
        return;
    }
    while (k <= scale) tmp[k++] = '0'; /* at least one digit before the point */
    if (!buf_reserve(b, (size_t)k + 4)) return;
    char *o = b->p + b->n;
    *o++ = '"';
    if (neg) *o++ = '-';
    while (k > scale) *o++ = tmp[--k];
    if (scale) {
        *o++ = '.';
        while (k) *o++ = tmp[--k];
    }
    *o++ = '"';
    b->n = (size_t)(o - b->p);
}

/* v as exactly `width` decimal digits (zero-padded) */
static inline char *digits(char *o, uint64_t v, int width) {
    for (int i = width - 1; i >= 0; i--) {
        o[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return o + width;
}

/* days since 1970-01-01 → civil date (H. Hinnant's algorithm) */
static void civil(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static void put_time(Buf *b, int64_t us, const char *suffix, Py_ssize_t suffix_len) {
    int64_t secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    int64_t frac = us - secs * 1000000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t sod = secs - days * 86400;
    int64_t y;
    unsigned m, d;
    civil(days, &y, &m, &d);
    if (!buf_reserve(b, 48 + (size_t)suffix_len)) return;
    char *o = b->p + b->n;
    *o++ = '"';
    if (y >= 0 && y <= 9999) {
        o = digits(o, (uint64_t)y, 4);
    } else { /* out of range for ISO-8601's four digits: such rows fail the engine's year check anyway */
        o += sprintf(o, "%+lld", (long long)y);
    }
    *o++ = '-';
    o = digits(o, m, 2);
    *o++ = '-';
    o = digits(o, d, 2);
    *o++ = 'T';
    o = digits(o, (uint64_t)(sod / 3600), 2);
    *o++ = ':';
    o = digits(o, (uint64_t)(sod % 3600 / 60), 2);
    *o++ = ':';
    o = digits(o, (uint64_t)(sod % 60), 2);
    if (frac) {
        *o++ = '.';
        o = digits(o, (uint64_t)frac, 6);
    }
    memcpy(o, suffix, (size_t)suffix_len);
    o += suffix_len;
    *o++ = '"';
    b->n = (size_t)(o - b->p);
}

static void put_value(Buf *b, const Column *c, int64_t i) {
    buf_put(b, c->lit, (size_t)c->lit_len);
    if (!is_valid(c, i)) {
        buf_put(b, "null", 4);
        return;
    }
    int64_t j = c->array.offset + i;
    const void *data = c->array.buffers[1];
    switch (c->kind) {
    case K_INT: {
        int64_t v = c->width == 1 ? ((const int8_t *)data)[j]
                  : c->width == 2 ? ((const int16_t *)data)[j]
                  : c->width == 4 ? ((const int32_t *)data)[j]
                                  : ((const int64_t *)data)[j];
        put_u64(b, v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v, v < 0);
        break;
    }
    case K_UINT: {
        uint64_t v = c->width == 1 ? ((const uint8_t *)data)[j]
                   : c->width == 2 ? ((const uint16_t *)data)[j]
                   : c->width == 4 ? ((const uint32_t *)data)[j]
                                   : ((const uint64_t *)data)[j];
        put_u64(b, v, 0);
        break;
    }
    case K_BOOL: {
        int v = (((const uint8_t *)data)[j >> 3] >> (j & 7)) & 1;
        buf_put(b, v ? "true" : "false", v ? 4 : 5);
        break;
    }
    case K_STR: {
        int32_t n;
        const char *s = str_at(c, i, &n);
        put_json_string(b, s, n);
        break;
    }
    case K_DEC: {
        __int128 v;
        memcpy(&v, (const uint8_t *)data + 16 * j, 16);
        put_decimal(b, v, c->scale);
        break;
    }
    case K_TIME:
        put_time(b, ((const int64_t *)data)[j], c->suffix, c->suffix_len);
        break;
    default:
        buf_put(b, "null", 4);
    }
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Python functions                                                                                           */
/* ---------------------------------------------------------------------------------------------------------- */
/* columns: a list of (literal bytes, series, zone suffix bytes); fills cols[0:n] (released by the caller) */
static int import_columns(PyObject *spec, Column *cols, Py_ssize_t n) {
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *item = PyList_GET_ITEM(spec, k);
        PyObject *lit, *series, *suffix;
        if (!PyArg_ParseTuple(item, "SOS", &lit, &series, &suffix)) return -1;
        if (column_import(&cols[k], series) < 0) return -1;
        cols[k].lit = PyBytes_AS_STRING(lit);
        cols[k].lit_len = PyBytes_GET_SIZE(lit);
        cols[k].suffix = PyBytes_AS_STRING(suffix);
        cols[k].suffix_len = PyBytes_GET_SIZE(suffix);
    }
    return 0;
}

static PyObject *finish_hex(const char *hex, int64_t rows, int outlen, const char *prefix, Py_ssize_t plen,
                            const uint8_t *present) {
    PyObject *out = PyList_New((Py_ssize_t)rows);
    if (!out) return NULL;
    char tmp[160];
    memcpy(tmp, prefix, (size_t)plen);
    for (int64_t i = 0; i < rows; i++) {
        PyObject *s;
        if (present && !present[i]) {
            s = Py_None;
            Py_INCREF(s);
        } else {
            memcpy(tmp + plen, hex + (size_t)i * 2 * outlen, (size_t)2 * outlen);
            s = PyUnicode_FromStringAndSize(tmp, plen + 2 * outlen);
            if (!s) {
                Py_DECREF(out);
                return NULL;
            }
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, s);
    }
    return out;
}

PyDoc_STRVAR(raw_records_doc,
"raw_records(header, lines, positions, middle, tail, digest_size, texts=False)\n\n"
"Per header row: the JSON text literal(h[0]) value(h[0]) ... middle, the rows of `lines` whose position (the\n"
"UInt32 `positions` series, ascending) is the header's row number as literal(l[0]) value(l[0]) ... '}' joined by\n"
"',', then tail; and its BLAKE2b hex digest. `header` and `lines`: lists of (literal bytes, Polars Series,\n"
"zone suffix bytes). Returns the digests (list of str), or the texts (list of bytes) with texts=True.");

static PyObject *raw_records(PyObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"header", "lines", "positions", "middle", "tail", "digest_size", "texts", NULL};
    PyObject *hspec, *lspec, *positions;
    const char *middle, *tail;
    Py_ssize_t middle_len, tail_len;
    int outlen, texts = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O!Oy#y#i|p", names, &PyList_Type, &hspec, &PyList_Type, &lspec,
                                     &positions, &middle, &middle_len, &tail, &tail_len, &outlen, &texts))
        return NULL;
    if (outlen < 1 || outlen > 64) return PyErr_Format(PyExc_ValueError, "digest_size must be 1..64");
    Py_ssize_t nh = PyList_GET_SIZE(hspec), nl = PyList_GET_SIZE(lspec);
    if (nh < 1) return PyErr_Format(PyExc_ValueError, "no header columns");
    Column *cols = calloc((size_t)(nh + nl + 1), sizeof(Column));
    if (!cols) return PyErr_NoMemory();
    Column *hc = cols, *lc = cols + nh, *pos = cols + nh + nl;
    PyObject *result = NULL;
    char *hex = NULL;
    Buf buf = {0};
    PyObject **textv = NULL;
    if (import_columns(hspec, hc, nh) < 0 || import_columns(lspec, lc, nl) < 0) goto done;
    if (column_import(pos, positions) < 0) goto done;
    if (pos->length > 0 && (pos->kind != K_UINT || pos->width != 4 || pos->array.null_count != 0)) {
        PyErr_SetString(PyExc_TypeError, "positions must be a UInt32 series without nulls");
        goto done;
    }
    int64_t rows = hc[0].length, nlines = pos->length;
    for (Py_ssize_t k = 0; k < nh; k++)
        if (hc[k].length != rows) { PyErr_SetString(PyExc_ValueError, "header columns differ in length"); goto done; }
    for (Py_ssize_t k = 0; k < nl; k++)
        if (lc[k].length != nlines) { PyErr_SetString(PyExc_ValueError, "line columns differ in length"); goto done; }
    const uint32_t *pv = nlines ? (const uint32_t *)pos->array.buffers[1] + pos->array.offset : NULL;
    for (int64_t j = 1; j < nlines; j++)
        if (pv[j] < pv[j - 1]) { PyErr_SetString(PyExc_ValueError, "positions are not sorted"); goto done; }
    if (texts) {
        textv = calloc((size_t)rows + 1, sizeof(PyObject *));
        if (!textv) { PyErr_NoMemory(); goto done; }
    } else {
        hex = malloc((size_t)rows * 2 * outlen + 1);
        if (!hex) { PyErr_NoMemory(); goto done; }
    }
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    int64_t j = 0;
    for (int64_t i = 0; i < rows && !failed; i++) {
        buf.n = 0;
        for (Py_ssize_t k = 0; k < nh; k++) put_value(&buf, &hc[k], i);
        buf_put(&buf, middle, (size_t)middle_len);
        while (j < nlines && (int64_t)pv[j] < i) j++; /* lines of no header row: not in any record */
        int first = 1;
        for (; j < nlines && (int64_t)pv[j] == i; j++) {
            if (!first) buf_put(&buf, ",", 1);
            first = 0;
            for (Py_ssize_t k = 0; k < nl; k++) put_value(&buf, &lc[k], j);
            buf_put(&buf, "}", 1);
        }
        buf_put(&buf, tail, (size_t)tail_len);
        if (buf.failed) { failed = 1; break; }
        if (texts) {
            Py_BLOCK_THREADS
            textv[i] = PyBytes_FromStringAndSize(buf.p, (Py_ssize_t)buf.n);
            Py_UNBLOCK_THREADS
            if (!textv[i]) { failed = 2; break; }
        } else {
            b2_hex((const uint8_t *)buf.p, buf.n, outlen, hex + (size_t)i * 2 * outlen);
        }
    }
    Py_END_ALLOW_THREADS
    if (failed == 1) { PyErr_NoMemory(); goto done; }
    if (failed) goto done;
    if (texts) {
        result = PyList_New((Py_ssize_t)rows);
        if (!result) goto done;
        for (int64_t i = 0; i < rows; i++) { PyList_SET_ITEM(result, (Py_ssize_t)i, textv[i]); textv[i] = NULL; }
    } else {
        result = finish_hex(hex, rows, outlen, "", 0, NULL);
    }
done:
    if (textv) {
        for (int64_t i = 0; textv && i < hc[0].length; i++) Py_XDECREF(textv[i]);
        free(textv);
    }
    for (Py_ssize_t k = 0; k < nh + nl + 1; k++) column_release(&cols[k]);
    free(cols);
    free(hex);
    free(buf.p);
    return result;
}

PyDoc_STRVAR(prefixed_hashes_doc,
"prefixed_hashes(values, key_prefix, digest_size, out_prefix)\n\n"
"For each value of a String (string_view) Polars series: out_prefix + hex(BLAKE2b(key_prefix + value)),\n"
"None for a null: canonical order ids as transforms.model.canonical_order_id makes them, for a whole page.");

static PyObject *prefixed_hashes(PyObject *self, PyObject *args) {
    PyObject *series;
    const char *kp, *op;
    Py_ssize_t kp_len, op_len;
    int outlen;
    if (!PyArg_ParseTuple(args, "Oy#iy#", &series, &kp, &kp_len, &outlen, &op, &op_len)) return NULL;
    if (outlen < 1 || outlen > 64 || op_len > 24) return PyErr_Format(PyExc_ValueError, "bad digest size or prefix");
    Column c;
    memset(&c, 0, sizeof c);
    PyObject *result = NULL;
    char *hex = NULL;
    uint8_t *present = NULL;
    Buf buf = {0};
    if (column_import(&c, series) < 0) goto done;
    if (c.kind != K_STR && c.kind != K_NULL) { PyErr_SetString(PyExc_TypeError, "values must be a String series"); goto done; }
    int64_t rows = c.length;
    hex = malloc((size_t)rows * 2 * outlen + 1);
    present = malloc((size_t)rows + 1);
    if (!hex || !present) { PyErr_NoMemory(); goto done; }
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < rows; i++) {
        present[i] = (uint8_t)is_valid(&c, i);
        if (!present[i]) continue;
        int32_t n;
        const char *s = str_at(&c, i, &n);
        buf.n = 0;
        buf_put(&buf, kp, (size_t)kp_len);
        buf_put(&buf, s, (size_t)n);
        if (buf.failed) break;
        b2_hex((const uint8_t *)buf.p, buf.n, outlen, hex + (size_t)i * 2 * outlen);
    }
    Py_END_ALLOW_THREADS
    if (buf.failed) { PyErr_NoMemory(); goto done; }
    result = finish_hex(hex, rows, outlen, op, op_len, present);
done:
    column_release(&c);
    free(hex);
    free(present);
    free(buf.p);
    return result;
}

PyDoc_STRVAR(blake2b_hex_doc, "blake2b_hex(data, digest_size): hex BLAKE2b of bytes (for the tests: vs hashlib).");

static PyObject *blake2b_hex(PyObject *self, PyObject *args) {
    Py_buffer data;
    int outlen;
    if (!PyArg_ParseTuple(args, "y*i", &data, &outlen)) return NULL;
    if (outlen < 1 || outlen > 64) {
        PyBuffer_Release(&data);
        return PyErr_Format(PyExc_ValueError, "digest_size must be 1..64");
    }
    char hex[128];
    b2_hex((const uint8_t *)data.buf, (size_t)data.len, outlen, hex);
    PyBuffer_Release(&data);
    return PyUnicode_FromStringAndSize(hex, 2 * outlen);
}

static PyMethodDef methods[] = {
    {"raw_records", (PyCFunction)(void (*)(void))raw_records, METH_VARARGS | METH_KEYWORDS, raw_records_doc},
    {"prefixed_hashes", prefixed_hashes, METH_VARARGS, prefixed_hashes_doc},
    {"blake2b_hex", blake2b_hex, METH_VARARGS, blake2b_hex_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "The columnar engine's per-order JSON and BLAKE2b hashing, compiled.", -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "orderhub.transforms._native supports little-endian machines only");
        return NULL;
    }
    return PyModule_Create(&module);
}
