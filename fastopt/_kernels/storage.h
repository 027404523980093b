/* Storage types other than the compute type: bfloat16 and float16 loaded into float32 and
   stored back rounded to nearest even, stochastically, or compensated (Kahan).

   Every function is a plain loop over a block of a few hundred elements, of integer and float
   operations only (no table, no branch on the data), so the compiler vectorises it; the bits
   are the same on every SIMD variant. Conversions are written on the bit patterns (memcpy is
   the portable way to reinterpret them), so they need no compiler or CPU support for either
   half-precision type. */
#ifndef FASTOPT_STORAGE_H
#define FASTOPT_STORAGE_H

#include <stdint.h>
#include <math.h>
#include <string.h>

static inline uint32_t fastopt_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float fastopt_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* ---------------------------------------------------------------- bfloat16: the high half */
static inline float fastopt_from_bf16(uint16_t h) { return fastopt_float((uint32_t)h << 16); }

/* Round to nearest even; NaN stays a (quiet) NaN, ±Inf stays ±Inf, overflow goes to ±Inf. */
static inline uint16_t fastopt_to_bf16(float x) {
    uint32_t u = fastopt_bits(x);
    uint32_t nan = (u & 0x7fffffffu) > 0x7f800000u;
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)(nan ? ((u >> 16) | 0x40u) : rounded);
}

/* Stochastic rounding: add 16 random bits below the kept ones and truncate, so x rounds up
   with probability equal to its distance from the lower neighbour. */
static inline uint16_t fastopt_to_bf16_stochastic(float x, uint32_t random) {
    uint32_t u = fastopt_bits(x);
    uint32_t nan = (u & 0x7fffffffu) > 0x7f800000u;
    uint32_t rounded = (u + (random & 0xffffu)) >> 16;
    return (uint16_t)(nan ? ((u >> 16) | 0x40u) : rounded);
}

/* ---------------------------------------------------------------- float16 (IEEE binary16) */
static inline float fastopt_from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    /* normal: rebias the exponent; Inf/NaN: all-ones exponent; subnormal: 2^-24 * mantissa,
       exact in float32. */
    uint32_t normal = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    uint32_t special = sign | 0x7f800000u | (mantissa << 13);
    float subnormal = (float)mantissa * 5.9604644775390625e-08f;  /* 2^-24 */
    float value = exponent == 0 ? (sign ? -subnormal : subnormal)
                : fastopt_float(exponent == 31 ? special : normal);
    return value;
}

/* Round to nearest even, subnormals and overflow (to ±Inf) included; NaN stays NaN. */
static inline uint16_t fastopt_to_f16(float x) {
    uint32_t u = fastopt_bits(x);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    uint32_t nan = a > 0x7f800000u;
    /* normal range: below 2^-14 the result is subnormal, from 65520 it is Inf */
    uint32_t normal = ((a - 0x38000000u) + 0xfffu + ((a >> 13) & 1u)) >> 13;
    /* subnormal: the value in units of 2^-24, rounded to nearest even by the FPU's own
       float32 rounding (adding 0.5 and subtracting it rounds at bit 0 of the integer part) */
    float magnitude = fastopt_float(a);
    uint32_t subnormal = fastopt_bits(magnitude * 16777216.0f + 12582912.0f) - 0x4b400000u;
    uint32_t result = a < 0x38800000u ? subnormal : (a >= 0x477ff000u ? 0x7c00u : normal);
    return (uint16_t)(sign | (nan ? 0x7e00u : result));
}

/* ---------------------------------------------------------------- the counter-based generator
   32 random bits for element `index` of a parameter, from a key for (seed, step, parameter):
   the same for any thread count, piece split or SIMD variant, and from a resumed state dict.
   The key is SplitMix64 of the three; the element's bits are a MurmurHash3 finaliser of the
   key's low half plus the index times the golden ratio. */
static inline uint64_t fastopt_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint32_t fastopt_stream_key(uint64_t seed, uint64_t step, uint64_t parameter) {
    return (uint32_t)fastopt_mix64(fastopt_mix64(fastopt_mix64(seed) ^ step) ^ parameter);
}

static inline uint32_t fastopt_random(uint32_t key, uint32_t index) {
    uint32_t h = key + index * 0x9e3779b9u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* ---------------------------------------------------------------- blocks */
static void fastopt_load_bf16(const uint16_t* src, float* dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = fastopt_from_bf16(src[i]);
}

static void fastopt_load_f16(const uint16_t* src, float* dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = fastopt_from_f16(src[i]);
}

static void fastopt_store_bf16(const float* src, uint16_t* dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = fastopt_to_bf16(src[i]);
}

static void fastopt_store_f16(const float* src, uint16_t* dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = fastopt_to_f16(src[i]);
}

/* `first` is the block's first element's index in its parameter. */
static void fastopt_store_bf16_stochastic(const float* src, uint16_t* dst, Py_ssize_t n,
                                          uint32_t key, uint32_t first) {
    for (Py_ssize_t i = 0; i < n; i++)
        dst[i] = fastopt_to_bf16_stochastic(src[i], fastopt_random(key, first + (uint32_t)i));
}

/* Compensated update of a low-precision parameter p with compensation c, both of the storage
   type (`half`: 0 bfloat16, 1 float16): given its value before the step (`old`, exactly as
   stored) and after it in float32 (`new`), with Δ = new − old:
       c ← c + Δ;  p ← p + c;  c ← c + (old − p)
   each result, (old − p) too, rounded to the storage type, as optimi's kahan_sum does. */
static inline void fastopt_kahan_loop(const float* old, const float* new_, uint16_t* p,
                                      uint16_t* c, Py_ssize_t n, const int half) {
    for (Py_ssize_t i = 0; i < n; i++) {
        float comp = half ? fastopt_from_f16(c[i]) : fastopt_from_bf16(c[i]);
        float delta = new_[i] - old[i];
        uint16_t comp1 = half ? fastopt_to_f16(comp + delta) : fastopt_to_bf16(comp + delta);
        float comp1f = half ? fastopt_from_f16(comp1) : fastopt_from_bf16(comp1);
        uint16_t p1 = half ? fastopt_to_f16(old[i] + comp1f) : fastopt_to_bf16(old[i] + comp1f);
        float p1f = half ? fastopt_from_f16(p1) : fastopt_from_bf16(p1);
        float back = half ? fastopt_from_f16(fastopt_to_f16(old[i] - p1f))
                          : fastopt_from_bf16(fastopt_to_bf16(old[i] - p1f));
        p[i] = p1;
        c[i] = half ? fastopt_to_f16(comp1f + back) : fastopt_to_bf16(comp1f + back);
    }
}

/* One loop per storage type, each called with a constant `half`: a loop that tested `half`
   per element computed both types' conversions and did not vectorise (10x slower). */
static void fastopt_store_kahan(const float* old, const float* new_, uint16_t* p, uint16_t* c,
                                Py_ssize_t n, int half) {
    if (half)
        fastopt_kahan_loop(old, new_, p, c, n, 1);
    else
        fastopt_kahan_loop(old, new_, p, c, n, 0);
}

/* ---------------------------------------------------------------- 8-bit block quantisation
   A block of up to 256 values is stored as one byte each, the index of the nearest of a
   sorted code of 256 values in [−1, 1] (the dynamic code: fastopt.rules.storage), and one
   float32 scale, the block's largest magnitude:
       x ≈ code[c] · absmax,    c = the code value nearest to x / absmax
   A block holding NaN or ±Inf gets a NaN scale, so all of it reads as NaN: state that has
   gone non-finite stays visibly so, as it would in float32.

   The nearest code value is found without a search: the code's midpoints split [−1, 1]; y's
   order-preserving integer key, shifted right by FASTOPT_BUCKET_SHIFT, picks a bucket;
   `lower` holds, per bucket, how many midpoints lie in the buckets below, and at most
   FASTOPT_BUCKET_DEPTH midpoints lie in any bucket (checked when the book is made), so that
   many compares with the midpoints from lower[bucket] on finish the count: c = the number of
   midpoints below y (ties go down).

   One exception to nearest: a positive value never takes the unsigned code's 0 (its index
   0), but its smallest positive value. A second moment read as 0 beside a first moment that
   is not makes the step m / (sqrt(0) + eps), tens of times float32's; the signed code has
   −1 at index 0, which no positive value is nearest to, so the rule is the same for both. */
#define FASTOPT_BUCKET_SHIFT 18
#define FASTOPT_BUCKET_DEPTH 3
#define FASTOPT_BUCKET_FIRST 4127u  /* key(−1) >> FASTOPT_BUCKET_SHIFT */
#define FASTOPT_BUCKETS 8130        /* key(+1) >> FASTOPT_BUCKET_SHIFT, less the first, + 1 */

typedef struct {
    float code[256];
    float mid[256 + FASTOPT_BUCKET_DEPTH];  /* midpoints, then +Inf: steps past them stop */
    int32_t lower[FASTOPT_BUCKETS];
    uint8_t zero;                           /* the index of 0 */
} fastopt_book;

/* The order-preserving key of a float: larger floats have larger keys. */
static inline uint32_t fastopt_key(float y) {
    uint32_t u = fastopt_bits(y);
    return (u >> 31) ? ~u : u | 0x80000000u;
}

/* Fill a book from its sorted code; 0 on success, −1 if some bucket holds too many
   midpoints (the code is then too fine for these buckets). */
static int fastopt_book_init(fastopt_book* book, const float* code) {
    int c, b, count[FASTOPT_BUCKETS];
    memset(count, 0, sizeof count);
    book->zero = 0;
    for (c = 0; c < 256; c++) {
        book->code[c] = code[c];
        if (code[c] == 0.0f) book->zero = (uint8_t)c;
    }
    for (c = 0; c < 255; c++) {
        float m = (code[c] + code[c + 1]) * 0.5f;
        book->mid[c] = m;
        b = (int)((fastopt_key(m) >> FASTOPT_BUCKET_SHIFT) - FASTOPT_BUCKET_FIRST);
        if (b < 0 || b >= FASTOPT_BUCKETS || ++count[b] > FASTOPT_BUCKET_DEPTH) return -1;
    }
    for (c = 255; c < 256 + FASTOPT_BUCKET_DEPTH; c++) book->mid[c] = INFINITY;
    book->lower[0] = 0;
    for (b = 1; b < FASTOPT_BUCKETS; b++) book->lower[b] = book->lower[b - 1] + count[b - 1];
    return 0;
}

static void fastopt_load_q8(const uint8_t* codes, float absmax, const fastopt_book* book,
                            float* dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = book->code[codes[i]] * absmax;
}

/* Quantise n values (one block) into codes; returns the block's scale. */
static float fastopt_store_q8(const float* src, Py_ssize_t n, const fastopt_book* book,
                              uint8_t* codes) {
    uint32_t top = 0;
    for (Py_ssize_t i = 0; i < n; i++) {  /* the largest magnitude, on the bits: NaN > Inf */
        uint32_t a = fastopt_bits(src[i]) & 0x7fffffffu;
        top = a > top ? a : top;
    }
    if (top == 0 || top >= 0x7f800000u) {
        memset(codes, book->zero, (size_t)n);
        return top == 0 ? 0.0f : NAN;
    }
    float absmax = fastopt_float(top);
    /* Each midpoint compare is independent of the others (the bucket's midpoints are
       consecutive, and those of later buckets lie above y), so the loop has no chain of
       dependent loads and vectorises with gathers: 4.6x faster than stepping c from
       compare to compare (Adam over 10^7, 8-bit moments, one thread: 37 ms against 170). */
#pragma omp simd
    for (Py_ssize_t i = 0; i < n; i++) {
        float y = src[i] / absmax;
        int32_t first = book->lower[(fastopt_key(y) >> FASTOPT_BUCKET_SHIFT) - FASTOPT_BUCKET_FIRST];
        int32_t c = first;
        for (int r = 0; r < FASTOPT_BUCKET_DEPTH; r++) c += y > book->mid[first + r];
        c += (c == 0) & (y > 0.0f);
        codes[i] = (uint8_t)c;
    }
    return absmax;
}

#endif
